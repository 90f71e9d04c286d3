"""One rule for "best", end to end: where the mean and the lower confidence bound disagree, the closing table
and "best:" line of `discovery run`, `discovery archive list`, `discovery export --best`, the report's winner and
`discovery.open_run(...).best()` name the same candidate (no training: the archive is written directly, then
the real loop closes the run).
"""

from __future__ import annotations

import io
import json

import pytest
from loop_support import TASK, ScriptedProposer, TableExecutor, fast_config, loss_code
from rich.console import Console

import discovery
from discovery.archive import Archive
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.cli import main
from discovery.commands.run_progress import closing_lines, summary_table
from discovery.export.build import choose
from discovery.inspect.best import winner
from discovery.loop import DiscoveryLoop
from discovery.selection import TopKRecent

RUNS = {  # name: (origin, stage, fidelity, per-seed fitness)
    "dpo": (Origin.LIBRARY, "baseline", "full", [0.50, 0.52, 0.51]),
    "steady": (Origin.LLM, "reeval", "full", [0.60, 0.61, 0.59, 0.60, 0.61]),  # the best: highest bound, confirmed
    "lucky": (Origin.LLM, "reeval", "full", [0.95, 0.30, 0.80, 0.90, 0.85]),  # higher mean, lower bound
    "unconfirmed": (Origin.LLM, "full", "full", [0.700, 0.701, 0.699]),  # highest bound, never re-evaluated
    "screened": (Origin.LLM, "screen", "screen", [0.99]),  # highest value, screen fidelity only
}


def add(archive: Archive, name: str, origin, stage: str, fidelity: str, values) -> int:
    cid = archive.add_candidate(Candidate(name=name, code=loss_code(name, len(name)),
                                          origin=origin, proposer="library" if origin == Origin.LIBRARY else "llm"),
                                stage=stage)
    for seed, value in enumerate(values):
        archive.add_evaluation(cid, EvalResult(seed=seed, fitness=value, fidelity=fidelity))
    archive.transition(cid, Status.EVALUATED, stage=stage)
    return cid


@pytest.fixture
def closed_run(tmp_path):
    """The archive above, closed by the real loop (nothing left to run): its LoopResult and the run's table."""
    config = fast_config(screen=True, reeval_seeds=2, budget={"proposals": 10})
    with Archive.open(tmp_path) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        ids = {name: add(archive, name, *spec) for name, spec in RUNS.items()}
        summaries = {s.candidate.name: s for s in archive.summaries()}
        assert summaries["lucky"].mean > summaries["steady"].mean and summaries["lucky"].lcb < summaries["steady"].lcb
        assert summaries["unconfirmed"].lcb > summaries["steady"].lcb
        executor = TableExecutor({}, workers=1)
        result = DiscoveryLoop(config, archive, TASK, ScriptedProposer([]), executor, TopKRecent()).run()
        top = archive.leaderboard(k=10)  # what commands/run.py's execute() hands to the closing table
    assert executor.jobs == [] and result.stop_reason == "scripted proposals done"
    return tmp_path, ids, result, top


def test_every_view_names_the_same_best(closed_run, capsys):
    run_dir, ids, result, top = closed_run
    steady = ids["steady"]
    # `discovery run`: the closing table's first row and the "best:" line
    console = Console(file=io.StringIO(), width=200)
    console.print(summary_table(result, top))
    rows = [line for line in console.file.getvalue().splitlines() if any(f" {n} " in line for n in RUNS)]
    assert " steady " in rows[0], rows
    best_line = next(line for line in closing_lines(str(run_dir), result) if line.startswith("best:"))
    assert best_line.startswith(f"best: steady #{steady}:") and top[0].id == result.best.id == steady
    # `discovery archive list` (default order) and `discovery archive list --json`
    assert main(["archive", "list", str(run_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["id"] == steady and listed[-1]["id"] == ids["screened"]
    # `discovery export --best` (its choice; writing the module re-runs the sandbox checks: tests/test_export.py)
    with Archive.open(run_dir, readonly=True) as archive:
        exported, rule = choose(archive, None, best=True)
        assert exported.id == steady, rule
        # the report's winner and the Python API
        assert winner(archive).id == steady and archive.best()[0].id == steady
    assert [s.id for s in discovery.open_run(run_dir).best(k=3, include_baselines=True)] == [steady, ids["dpo"], ids["lucky"]]


def test_the_reports_best_so_far_and_named_proposals_follow_the_rule(closed_run):
    from discovery import ranking
    from discovery.inspect import figures
    from discovery.inspect.views import candidate_rows

    run_dir, ids, _, _ = closed_run
    with Archive.open(run_dir, readonly=True) as archive:
        rows, needs = [r for r in candidate_rows(archive) if not r.baseline], archive.needs_reeval()
    so_far = ranking.running_best(rows, needs)
    for i, best in enumerate(so_far):  # the best of each prefix, as the full rule says (not the highest mean)
        expected = ranking.best(rows[: i + 1], needs)
        assert best is (expected[0] if expected else None)
    assert so_far[-1].id == ids["steady"]
    named = figures._named(rows * 20, needs)  # past LABELLED (40) rows only the first ones in table order are named
    assert named[0].id == ids["steady"] and {r.id for r in named} == {ids["steady"], ids["lucky"]}  # confirmed first
