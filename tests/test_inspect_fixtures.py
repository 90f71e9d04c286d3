"""Archives for the inspect/report/export tests, written through the real Archive write API.

`build_archive` writes what a finished run leaves: baselines and proposals in every status, evaluations
over seeds and a beta sweep (screen, full, reeval stages), LLM calls with tokens and cost, lineage.
With `validated=True` each valid loss goes through the real sandbox `validate()` first, as the loop does.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from discovery import library
from discovery.archive import Archive, db_path, schema
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.config import EvalConfig, RunConfig

HEAD = ("def {name}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
        "reference_rejected_logps, beta):\n")
MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")
CODES = {
    "smooth_hinge": "import torch.nn.functional as F\n\n\n" + HEAD.format(name="smooth_hinge") + MARGIN
    + "    return -F.logsigmoid(beta * margin) + 0.1 * F.relu(1 - beta * margin)\n",
    "log_cosh": "import torch\n\n\n" + HEAD.format(name="log_cosh") + MARGIN
    + "    z = torch.abs(beta * margin - 1.0)\n"  # log cosh z, finite at any margin
    + "    return z + torch.log1p(torch.exp(-2.0 * z)) - 0.6931471805599453 - 0.5 * torch.tanh(beta * margin)\n",
    "screened_out": "import torch.nn.functional as F\n\n\n" + HEAD.format(name="screened_out") + MARGIN
    + "    return F.softplus(-2.0 * beta * margin)\n",
    "diverges": "import torch\n\n\n" + HEAD.format(name="diverges") + MARGIN
    + "    return torch.exp(-beta * margin) * 10.0\n",
}
BETAS = [0.05, 0.1, 0.5]


class Call:
    """Shaped like the proposer's LLMCall."""

    def __init__(self, tokens: int, cost: float, verdict: str = "valid", reply: str = "```python ...```"):
        self.model, self.prompt_hash, self.prompt_tokens, self.completion_tokens = "gpt-test", "h", tokens, tokens // 4
        self.latency_s, self.cost_usd, self.verdict, self.reply = 1.5, cost, verdict, reply


def _metrics(fitness: float, beta: float) -> dict:
    return {"fitness": fitness, "kl": 2.0 / beta * (1 + fitness), "heldout_accuracy": 0.5 + fitness / 4}


def _evaluate(archive: Archive, cid: int, base: float, spread: list[float], fidelity: str = "full",
              betas: list[float | None] | None = None, seeds: range | None = None) -> None:
    for beta in betas or [None]:
        for i, seed in enumerate(seeds or range(len(spread))):
            value = base + spread[i] + (0.0 if beta is None else 0.05 * (beta - 0.1))
            archive.add_evaluation(cid, EvalResult(seed=seed, fitness=value, fidelity=fidelity, beta=beta,
                                                   metrics=_metrics(value, beta or 0.1), steps=10, seconds=1.0))


def _validated(c: Candidate, validated: bool) -> tuple[Candidate, list[float]]:
    if not validated:
        return replace(c, sympy=f"{c.name}(rho)", latex=rf"\mathrm{{{c.name}}}(\rho)", fingerprint=f"fp-{c.name}"), []
    from discovery.sandbox import validate

    report = validate(c.code, formula=True)  # as the loop's validator: the formula is archived too
    assert report.valid, report.summary()
    return c.with_validation(report), report.probe_values


def build_archive(run_dir: Path, validated: bool = False, finish: bool = True) -> dict[str, int]:
    """A finished run (names -> ids); `finish=False` leaves it as a live run would (no end record)."""
    config = RunConfig(eval=EvalConfig(betas=tuple(BETAS)))
    ids: dict[str, int] = {}
    with Archive.open(run_dir) as archive:
        archive.start_run(config.to_dict(), "synthetic", "key")
        for name, base in (("dpo", 0.40), ("ipo", 0.30)):
            loss = library.get(name)
            c, probes = _validated(Candidate(name=name, code=loss.code, origin=Origin.LIBRARY,
                                             status=Status.QUEUED), validated)
            ids[name] = archive.add_candidate(c, probe_values=probes, stage="baseline")
            _evaluate(archive, ids[name], base, [0.0, 0.02, -0.02], betas=BETAS)
            archive.transition(ids[name], Status.EVALUATED, stage="full")
        # the winner: screened, full over the sweep, re-evaluated on fresh seeds
        c, probes = _validated(Candidate(name="smooth_hinge", code=CODES["smooth_hinge"], generation=1,
                                         thought="Add a hinge so confident pairs keep a gradient.",
                                         proposer="openai", model="gpt-test", status=Status.QUEUED), validated)
        ids["smooth_hinge"] = archive.add_candidate(c, calls=[Call(1200, 0.012)], probe_values=probes, stage="screen")
        _evaluate(archive, ids["smooth_hinge"], 0.52, [0.0], fidelity="screen")
        _evaluate(archive, ids["smooth_hinge"], 0.52, [0.0, 0.01, -0.01], betas=BETAS)
        _evaluate(archive, ids["smooth_hinge"], 0.52, [0.005, -0.005], seeds=range(3, 5))
        archive.transition(ids["smooth_hinge"], Status.EVALUATED, stage="reeval")
        # a child of the winner with a higher mean but a wide interval, never re-evaluated
        c, probes = _validated(Candidate(name="log_cosh", code=CODES["log_cosh"], generation=2,
                                         parent_ids=(ids["smooth_hinge"],), proposer="openai", model="gpt-test",
                                         thought="Smooth the hinge with log-cosh.", status=Status.QUEUED), validated)
        ids["log_cosh"] = archive.add_candidate(c, calls=[Call(900, 0.01, "invalid"), Call(950, 0.011)],
                                                probe_values=probes, stage="full")
        _evaluate(archive, ids["log_cosh"], 0.55, [0.2, -0.2, 0.15], betas=BETAS)
        archive.transition(ids["log_cosh"], Status.EVALUATED, stage="full")
        c, probes = _validated(Candidate(name="screened_out", code=CODES["screened_out"], generation=1,
                                         proposer="openai", model="gpt-test", status=Status.QUEUED), validated)
        ids["screened_out"] = archive.add_candidate(c, calls=[Call(1000, 0.01)], probe_values=probes, stage="screen")
        _evaluate(archive, ids["screened_out"], 0.2, [0.0], fidelity="screen")
        archive.transition(ids["screened_out"], Status.EVALUATED, "screened; not in the top fraction")
        ids["diverges"] = archive.add_candidate(Candidate(
            name="diverges", code=CODES["diverges"], generation=2, parent_ids=(ids["smooth_hinge"],),
            proposer="openai", model="gpt-test", status=Status.QUEUED), calls=[Call(800, 0.008)], stage="screen")
        archive.add_evaluation(ids["diverges"], EvalResult(seed=0, fitness=None, ok=False, fidelity="screen",
                                                           reason="non-finite loss at step 2"))
        archive.transition(ids["diverges"], Status.FAILED, "screen seed 0: non-finite loss at step 2")
        ids["uses_os"] = archive.add_candidate(Candidate(
            name="uses_os", code="import os\n\n\n" + HEAD.format(name="uses_os") + "    return os.getcwd()\n",
            generation=2, proposer="openai", model="gpt-test", status=Status.INVALID,
            reason="line 1: importing `os` is not allowed"), calls=[Call(700, 0.007, "invalid")])
        ids["copy"] = archive.add_candidate(Candidate(
            name="copy", code=CODES["smooth_hinge"].replace("smooth_hinge", "copy"), generation=3,
            parent_ids=(ids["log_cosh"],), proposer="openai", model="gpt-test", status=Status.DUPLICATE,
            duplicate_of=ids["smooth_hinge"], reason="behaves like #3"), calls=[Call(600, 0.006)])
        if finish:
            archive.end_run("proposal budget used")
    return ids


def write_v1_archive(run_dir: Path) -> None:
    """An archive as schema version 1 wrote it (no stage, probe values, replies or run end)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(db_path(run_dir), isolation_level=None)
    schema.migrate(db, upto=1)
    db.execute("INSERT INTO run (id, created_at, config_json, versions_json, host, task_name) "
               "VALUES (1, 0, '{\"train\": {\"beta\": 0.1}}', '{\"trl\": \"1.16.0\"}', 'h', 'synthetic')")
    for i, (name, fitness) in enumerate((("old_a", 0.25), ("old_b", 0.35)), 1):
        db.execute("INSERT INTO candidates (created_at, updated_at, name, code, code_hash, origin, status) "
                   "VALUES (?, ?, ?, ?, ?, 'llm', 'evaluated')",
                   (i, i, name, CODES["smooth_hinge"].replace("smooth_hinge", name), f"hash{i}"))
        for seed in range(2):
            db.execute("INSERT INTO evaluations (candidate_id, created_at, seed, fidelity, ok, fitness, metrics_json) "
                       "VALUES (?, 0, ?, 'full', 1, ?, '{\"kl\": 1.5}')", (i, seed, fitness + 0.01 * seed))
        db.execute("INSERT INTO llm_calls (candidate_id, created_at, model, prompt_hash, prompt_tokens, cost_usd) "
                   "VALUES (?, ?, 'm', 'h', 100, 0.001)", (i, i))
    db.close()
