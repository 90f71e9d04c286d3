"""The records that cross stage boundaries: each built in one place, frozen where it is a fact, no import cycles."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import pytest

from discovery.candidate import EvalResult, Fitness, Origin, Status
from discovery.paths import cache_root
from discovery.proposer.base import LLMCall, candidate_from
from discovery.sandbox.validation import ValidationReport
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


def test_llm_calls_and_validation_reports_are_frozen():
    call = LLMCall(model="m", prompt_hash="h", prompt_tokens=1, completion_tokens=2, latency_s=0.1, cost_usd=0.0)
    report = ValidationReport(valid=True, fingerprint="fp")
    for record, name in ((call, "cost_usd"), (report, "valid")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, name, None)


def test_a_candidate_takes_what_the_validator_learnt_from_its_report():
    report = ValidationReport(valid=True, fingerprint="fp", sympy="a - b", latex="a-b", diagnostics={"g": [1.0]},
                              probe_values=[0.1])
    c = candidate_from(report, name="x", code="def x(): ...", origin=Origin.LLM, status=Status.PROPOSED)
    assert (c.fingerprint, c.sympy, c.latex, c.diagnostics) == ("fp", "a - b", "a-b", {"g": [1.0]})
    bare = candidate_from(None, name="y", code="", status=Status.INVALID)
    assert bare.fingerprint is None and bare.diagnostics == {}


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
    return found & modules


def test_no_module_level_import_cycles():
    files = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {m: _module_level_imports(p, set(files)) for m, p in files.items()}
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
