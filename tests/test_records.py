"""The records that cross stage boundaries: each built in one place, frozen where it is a fact, no import cycles."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import pytest

from discovery.candidate import Candidate, EvalResult, Fitness, Origin, Status
from discovery.paths import cache_root
from discovery.proposer.base import Attempt, LLMCall, Proposal, ProposalContext, candidate_from
from discovery.sandbox.validation import CheckError, ValidationReport
from discovery.stats import fitness_of, fitness_text

PACKAGE = Path(__file__).resolve().parents[1] / "discovery"


def test_eval_result_from_a_dict_drops_unknown_keys_and_makes_isolation_a_tuple():
    r = EvalResult.from_dict({"seed": 3, "fitness": 0.5, "fidelity": "screen", "isolation": ["seccomp"],
                              "from_a_newer_worker": 1})
    assert (r.seed, r.fitness, r.fidelity, r.isolation) == (3, 0.5, "screen", ("seccomp",))
    original = EvalResult(seed=1, fitness=None, ok=False, reason="nan", beta=0.5, metrics={"kl": 1.0})
    assert EvalResult.from_dict(dataclasses.asdict(original)) == original


@pytest.mark.parametrize("values, text", [([0.5, 0.6, 0.7], "0.6000 ± 0.2484 (n=3)"), ([0.5], "0.5000 (n=1, no CI)")])
def test_fitness_is_written_one_way(values, text):
    f = fitness_of(values)
    assert str(f) == text == fitness_text(f.mean, f.ci_low, f.ci_high, f.n)
    assert fitness_text(0.25, None, None, 0) == "0.2500 (n=0, no CI)"  # a JSON row without an interval


def _call(cost: float = 0.0) -> LLMCall:
    return LLMCall(model="m", prompt_hash="h", prompt_tokens=1, completion_tokens=2, latency_s=0.1, cost_usd=cost)


def test_every_record_that_crosses_a_boundary_is_frozen():
    candidate = Candidate(name="x", code="def x(): ...")
    attempt = Attempt(index=0, kind="propose", prompt_hash="h", reply="r", verdict="valid", edits=["added import"])
    records = [(_call(), "cost_usd"), (ValidationReport(valid=True, fingerprint="fp"), "valid"),
               (CheckError("static", "no"), "message"), (candidate, "status"), (candidate, "fitness"),
               (EvalResult(seed=0, fitness=0.5), "fitness"), (attempt, "reason"),
               (Proposal(candidate, calls=[_call()], attempts=[attempt]), "candidate"),
               (ProposalContext(task=None), "parents")]  # type: ignore[arg-type]
    for record, name in records:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, name, None)
    assert attempt.edits == ("added import",) and attempt.to_dict()["edits"] == ["added import"]


def test_a_proposal_keeps_what_its_proposer_built_even_if_the_proposer_goes_on_changing_its_lists():
    calls, attempts = [_call(0.01)], [Attempt(index=0, kind="propose", prompt_hash="h", reply="", verdict="valid")]
    proposal = Proposal(Candidate(name="x", code="c"), calls=calls, attempts=attempts)
    calls.append(_call(1.0))
    attempts.clear()
    assert proposal.calls == (_call(0.01),) and len(proposal.attempts) == 1


def test_each_change_of_a_candidate_is_a_new_record_and_the_old_one_is_unchanged():
    report = ValidationReport(valid=True, fingerprint="fp", sympy="a - b", latex="a-b", diagnostics={"g": [1.0]})
    proposed = Candidate(name="x", code="def x(): ...", status=Status.PROPOSED)
    validated = proposed.with_validation(report)
    assert (validated.fingerprint, validated.sympy, validated.latex, validated.diagnostics) == (
        "fp", "a - b", "a-b", {"g": [1.0]})
    assert validated.diagnostics is not report.diagnostics  # a copy: the report's mapping is the report's
    duplicate = validated.with_status(Status.DUPLICATE, "behaves like #1 dpo (same code)", duplicate_of=1)
    assert (duplicate.status, duplicate.duplicate_of, duplicate.reason) == (Status.DUPLICATE, 1,
                                                                            "behaves like #1 dpo (same code)")
    metrics = {"kl": 0.1}
    scored = duplicate.with_id(7).with_fitness(fitness_of([0.5, 0.6]), metrics)
    metrics["kl"] = 9.0
    assert scored.id == 7 and scored.fitness.n == 2 and scored.metrics == {"kl": 0.1}
    assert (proposed.status, proposed.fingerprint, proposed.id, proposed.fitness) == (Status.PROPOSED, None, None,
                                                                                     None)
    assert validated.status == Status.PROPOSED and duplicate.id is None and duplicate.fitness is None


def test_an_eval_result_gains_metrics_and_isolation_as_a_new_record():
    result = EvalResult(seed=0, fitness=0.5, metrics={"kl": 0.1}, isolation=["seccomp"])  # a worker's JSON list
    assert result.isolation == ("seccomp",)
    scored = result.with_metrics({"score/seconds": 1.5}).with_isolation(("bwrap", "seccomp"))
    assert scored.metrics == {"kl": 0.1, "score/seconds": 1.5} and scored.isolation == ("bwrap", "seccomp")
    assert result.metrics == {"kl": 0.1} and result.isolation == ("seccomp",)


def test_a_failed_run_is_built_one_way_and_keeps_where_it_ran():
    failed = EvalResult.failure(3, "screen", 0.05, "x" * 5000, seconds=1.5, steps=7)
    assert (failed.ok, failed.fitness, failed.seed, failed.fidelity, failed.beta) == (False, None, 3, "screen", 0.05)
    assert len(failed.reason) == 2000 and (failed.seconds, failed.steps) == (1.5, 7)
    package = Path(__file__).resolve().parents[1] / "discovery"
    built_elsewhere = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "EvalResult":
                failed = any(k.arg == "ok" and getattr(k.value, "value", None) is False for k in node.keywords)
                if failed and path.name != "candidate.py":
                    built_elsewhere.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not built_elsewhere, f"failed EvalResults built by hand (use EvalResult.failure): {built_elsewhere}"


def test_the_archive_stores_records_and_returns_new_ones(tmp_path):
    from discovery.archive import Archive

    c = Candidate(name="x", code="def x(a, b, c, d, beta):\n    return a - b\n", status=Status.QUEUED,
                  diagnostics={"grad": [1.0]}, parent_ids=(3,))
    with Archive.open(tmp_path) as archive:
        archive.start_run({"eval": {"fitness": "best_beta"}}, "synthetic", "k")
        cid = archive.add_candidate(c, calls=[_call(0.01)], probe_values=[0.1])
        assert c.id is None and archive.candidate(cid) == c.with_id(cid)  # stored as given, the record untouched
        archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.5, metrics={"kl": 0.2}))
        archive.add_evaluation(cid, EvalResult(seed=1, fitness=0.7, metrics={"kl": 0.4}))
        archive.transition(cid, Status.EVALUATED, stage="full")
        summary = archive.summary(cid)
        assert summary.candidate.fitness == summary.fitness and summary.candidate.metrics == {"kl": pytest.approx(0.3)}
        assert archive.candidate(cid).fitness is None and archive.candidate(cid).status == Status.EVALUATED
        assert c.status == Status.QUEUED


def test_the_archive_boundary_takes_typed_records_not_any():
    import inspect

    from discovery.archive import Archive

    for name in ("start_run", "end_run", "log_event", "add_candidate", "add_llm_calls", "transition",
                 "add_evaluation"):
        for param, annotation in inspect.get_annotations(getattr(Archive, name)).items():
            assert "Any" not in str(annotation), f"Archive.{name}({param}: {annotation})"


def test_the_loop_builds_new_records_and_leaves_the_proposers_unchanged(tmp_path):
    """A proposal the loop stores as queued or duplicate is a new record; the proposer's stays as it handed it."""
    from loop_support import TASK, TableExecutor, fast_config, loss_code

    from discovery.archive import Archive
    from discovery.loop import DiscoveryLoop
    from discovery.proposer.base import Proposer
    from discovery.selection import TopKRecent

    code = loss_code("same")
    handed = [Proposal(Candidate(name="same", code=code, origin=Origin.LLM, proposer="fixed"), calls=[_call(0.01)]),
              Proposal(Candidate(name="copy", code=code, origin=Origin.LLM, proposer="fixed"), calls=[_call(0.02)])]

    class Fixed(Proposer):
        name = "fixed"

        def __init__(self):
            self.left = list(handed)

        def propose(self, context):
            return self.left.pop(0)

        def stop_reason(self):
            return None if self.left else "done"

    def validator(source: str) -> ValidationReport:
        return ValidationReport(valid=True, fingerprint=f"fp-{len(source)}", sympy="f(rho)", latex="x",
                                diagnostics={"g": [1.0]}, probe_values=[0.5])

    config = fast_config(screen=False, reeval_seeds=0)
    with Archive.open(tmp_path) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        DiscoveryLoop(config, archive, TASK, Fixed(), TableExecutor({"dpo": 0.5, "same": 0.6}, workers=1),
                      TopKRecent(), validator=validator).run()
        dpo, same, copy = archive.candidates()
        # the baseline: fingerprint and formula from the validator, its LaTeX from the library, no diagnostics
        assert (dpo.fingerprint, dpo.sympy, dpo.diagnostics, dpo.status) == (validator(dpo.code).fingerprint,
                                                                             "f(rho)", {}, Status.EVALUATED)
        assert dpo.latex and dpo.latex != "x" and archive.probe_values(dpo.id) == [0.5]
        assert same.status == Status.EVALUATED and archive.stage(same.id) == "full"
        assert (copy.status, copy.duplicate_of, copy.reason) == (Status.DUPLICATE, same.id,
                                                                 f"behaves like #{same.id} same (same code)")
        assert archive.usage().cost_usd == pytest.approx(0.03)
    assert [p.candidate.status for p in handed] == [Status.PROPOSED, Status.PROPOSED]
    assert [p.candidate.id for p in handed] == [None, None]


def test_a_candidate_takes_what_the_validator_learnt_from_its_report():
    report = ValidationReport(valid=True, fingerprint="fp", sympy="a - b", latex="a-b", diagnostics={"g": [1.0]},
                              probe_values=[0.1])
    c = candidate_from(report, name="x", code="def x(): ...", origin=Origin.LLM, status=Status.PROPOSED)
    assert (c.fingerprint, c.sympy, c.latex, c.diagnostics) == ("fp", "a - b", "a-b", {"g": [1.0]})
    bare = candidate_from(None, name="y", code="", status=Status.INVALID)
    assert bare.fingerprint is None and bare.diagnostics == {}


@pytest.mark.parametrize("field, value", [("fitness", None), ("metrics", {}), ("id", 3), ("duplicate_of", 1),
                                          ("fingerprint", "fp"), ("status", Status.EVALUATED)])
def test_a_proposal_sets_only_what_a_proposer_owns(field, value):
    """Aggregates, ids, later statuses and validation facts come from the archive, the loop and the report."""
    with pytest.raises((TypeError, ValueError), match="a proposal"):
        candidate_from(None, name="x", code="", **{field: value})


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DISCOVERY_CACHE", str(tmp_path / "env"))
    assert cache_root(str(tmp_path / "given")) == tmp_path / "given" and cache_root() == tmp_path / "env"
    monkeypatch.delenv("DISCOVERY_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "discovery" and cache_root("~/c") == tmp_path / "c"


def _module_level_imports(path: Path, modules: set[str]) -> set[str]:
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        for n in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").startswith("discovery"):
                found |= {f"{n.module}.{a.name}" if f"{n.module}.{a.name}" in modules else n.module for a in n.names}
            elif isinstance(n, ast.Import):
                found |= {a.name for a in n.names if a.name.startswith("discovery")}
    # importing discovery.a.b runs discovery/a/__init__.py first: that package is a dependency too
    found |= {".".join(m.split(".")[:i]) for m in found for i in range(2, m.count(".") + 1)}
    return found & modules


def test_no_module_level_import_cycles():
    files = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {m: {d for d in _module_level_imports(p, set(files)) if not f"{m}.".startswith(f"{d}.")}  # own package
             for m, p in files.items()}
    assert {m.split(".")[1] for m in files if "." in m} >= {"proposer", "sandbox", "inner_loop", "archive", "loop"}
    state: dict[str, int] = {}

    def cycle_from(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep] if dep in path else [m, dep]
            if dep not in state and (found := cycle_from(dep, [*path, dep])):
                return found
        state[m] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert (found := cycle_from(module, [module])) is None, " -> ".join(found)
    stats = ast.parse(files["discovery.stats"].read_text())
    lazy = [n.module for n in ast.walk(stats) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("discovery")]
    assert lazy == [], "discovery.stats must not import discovery, not even inside a function (candidate imports it)"
    assert math.isinf(Fitness(1.0, -math.inf, math.inf, 1).half_width)
