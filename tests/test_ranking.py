"""One rule for "best": the loop, the archive, the run summary, inspect, export and selection agree."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from discovery import ranking
from discovery.archive import Archive
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.commands.run_progress import closing_lines, summary_table
from discovery.config import EvalConfig, RunConfig
from discovery.inner_loop.task import TaskInfo
from discovery.inspect.best import winner
from discovery.inspect.views import candidate_rows, sort_rows
from discovery.loop import DiscoveryLoop, LoopResult
from discovery.selection import TopKRecent

TASK = TaskInfo("synthetic", "a toy preference task", "held-out preference accuracy", 0.1, "cheap")


def add(archive: Archive, name: str, values, *, stage: str, status=Status.EVALUATED, fidelity="full",
        origin=Origin.LLM, reason="") -> int:
    cid = archive.add_candidate(Candidate(name=name, code=f"def {name}(a, b, c, d, beta):\n    return a - b\n",
                                          origin=origin), stage=stage)
    for seed, value in enumerate(values):
        archive.add_evaluation(cid, EvalResult(seed=seed, fitness=value, fidelity=fidelity))
    archive.transition(cid, status, reason, stage=stage)
    return cid


def open_run(tmp_path, reeval_seeds: int = 2) -> tuple[Archive, RunConfig]:
    config = RunConfig(eval=EvalConfig(reeval_seeds=reeval_seeds, heldout_instances=[]))  # fresh seeds only
    archive = Archive.open(tmp_path)
    archive.start_run(config.to_dict(), "synthetic", "k")
    return archive, config


@pytest.fixture
def split_run(tmp_path):
    """A steady proposal never re-evaluated (its mean did not beat the best's) and a noisy confirmed one.

    The steady one has the higher lower confidence bound; only the confirmed one may be called best.
    """
    archive, config = open_run(tmp_path)
    ids = {
        "dpo": add(archive, "dpo", [0.50, 0.52, 0.51], stage="baseline", origin=Origin.LIBRARY),
        "noisy": add(archive, "noisy", [0.58, 0.66, 0.62, 0.60, 0.64], stage="reeval"),
        "steady": add(archive, "steady", [0.600, 0.601, 0.599], stage="full"),
        "screened": add(archive, "screened", [0.99], stage="screen", fidelity="screen"),
    }
    yield archive, config, ids
    archive.close()


def test_run_summary_table_and_best_line_name_the_same_candidate(split_run):
    archive, config, ids = split_run
    loop = DiscoveryLoop(config, archive, TASK, None, None, None)
    best = loop.best()
    assert best is not None and best.id == ids["noisy"]
    # the table `discovery run` prints (commands/run.py) and Archive.best (HEAD ranked `steady` first there)
    top = archive.leaderboard(k=10)
    assert top[0].id == best.id and archive.best(k=10)[0].id == best.id
    assert [s.id for s in archive.best(k=10)] == [ids["noisy"], ids["dpo"]]  # steady is not confirmed
    result = LoopResult("done", best, archive.baseline("dpo"), {}, archive.usage(), 1.0)
    console = Console(file=io.StringIO(), width=200)
    console.print(summary_table(result, top))
    rows = [line for line in console.file.getvalue().splitlines() if any(n in line for n in ids)]
    best_line = next(line for line in closing_lines("run", result) if line.startswith("best:"))
    assert "noisy" in rows[0] and best_line.startswith(f"best: noisy #{ids['noisy']}:")
    # the unconfirmed steady one is still listed, after the confirmed ones
    assert [s.id for s in top][:3] == [ids["noisy"], ids["dpo"], ids["steady"]]


def test_inspect_export_and_archive_list_agree_with_the_loop(split_run):
    archive, config, ids = split_run
    found = winner(archive)  # what `discovery export --best` and the report use (proposals only)
    assert found is not None and found.id == ids["noisy"] and found.reevaluated
    rows = sort_rows(candidate_rows(archive), "fitness", archive.needs_reeval())
    assert [r.id for r in rows] == [s.id for s in archive.leaderboard()]
    assert rows[-1].id == ids["screened"]  # screen-only after every full-fidelity one, whatever its value


def test_without_reevaluation_full_fidelity_is_confirmation(tmp_path):
    archive, config = open_run(tmp_path, reeval_seeds=0)
    with archive:
        steady = add(archive, "steady", [0.600, 0.601, 0.599], stage="full")
        add(archive, "noisy", [0.40, 0.90, 0.62], stage="full")
        assert DiscoveryLoop(config, archive, TASK, None, None, None).best().id == steady
        assert winner(archive).id == steady and not winner(archive).reevaluated


@pytest.mark.parametrize("status, stage, fidelity, reason", [
    (Status.FAILED, "reeval", "full", "a seed failed"),
    (Status.DUPLICATE, "reeval", "full", "a duplicate"),
    (Status.TRAINING, "reeval", "full", "still training"),
    (Status.EVALUATED, "screen", "screen", "screen fidelity only"),
    (Status.EVALUATED, "full", "full", "not re-evaluated"),
])
def test_what_may_not_be_called_best(tmp_path, status, stage, fidelity, reason):
    archive, config = open_run(tmp_path)
    with archive:
        cid = add(archive, "x", [0.9, 0.91, 0.92], stage=stage, status=status, fidelity=fidelity)
        assert not ranking.may_be_called_best(archive.summary(cid), needs_reeval=True), reason
        assert archive.best() == [] and DiscoveryLoop(config, archive, TASK, None, None, None).best() is None


def test_score_key_is_the_lower_confidence_bound_then_the_mean(tmp_path):
    archive, _ = open_run(tmp_path)
    with archive:
        steady = archive.summary(add(archive, "steady", [0.60, 0.61, 0.59], stage="reeval"))
        lucky = archive.summary(add(archive, "lucky", [0.95, 0.30, 0.80], stage="reeval"))
        single = archive.summary(add(archive, "single", [0.99], stage="reeval"))
        assert lucky.mean > steady.mean and ranking.score_key(steady) > ranking.score_key(lucky)
        assert ranking.score_key(single) < ranking.score_key(lucky)  # n = 1: no bound, ranks below any bound
        assert [s.id for s in ranking.best([lucky, single, steady], True)] == [steady.id, lucky.id, single.id]


def test_worth_confirming_is_optimistic_by_the_mean(tmp_path):
    archive, _ = open_run(tmp_path)
    with archive:
        best = archive.summary(add(archive, "best", [0.60, 0.61, 0.59], stage="reeval"))
        wide = archive.summary(add(archive, "wide", [0.95, 0.30, 0.80], stage="full"))  # higher mean, low bound
        worse = archive.summary(add(archive, "worse", [0.50, 0.51, 0.49], stage="full"))
        assert ranking.worth_confirming(wide, best) and not ranking.worth_confirming(worse, best)
        assert ranking.worth_confirming(worse, None)


def test_topk_recent_context_top_recent_failures_baselines_and_parents(tmp_path):
    archive, _ = open_run(tmp_path)
    with archive:
        base = [add(archive, name, [v, v + 0.01, v - 0.01], stage="baseline", origin=Origin.LIBRARY)
                for name, v in (("dpo", 0.50), ("ipo", 0.55))]
        confirmed = add(archive, "confirmed", [0.40, 0.90, 0.62, 0.55, 0.63], stage="reeval")
        full = [add(archive, f"full_{i}", [0.6 + i / 100, 0.6 + i / 100 + 0.001, 0.6 + i / 100 - 0.001],
                    stage="full") for i in range(4)]
        broken = [add(archive, f"broken_{i}", [], stage="", status=Status.INVALID, reason=f"bad {i}")
                  for i in range(3)]
        failed = add(archive, "failed", [], stage="full", status=Status.FAILED, reason="nan loss")
        screened = add(archive, "screened", [0.99], stage="screen", fidelity="screen")
        context = TopKRecent(top_k=3, recent=2, failures=3, parents=2).select(archive, TASK, generation=7)
    # confirmed first, then full fidelity by lower bound, never the screen-only one while better exist
    assert [c.id for c in context.top] == [confirmed, full[3], full[2]]
    assert [c.id for c in context.parents] == [confirmed, full[3]]
    assert [c.id for c in context.recent] == [screened, full[1]]  # newest evaluated first, not in top
    assert [c.id for c in context.failures] == [failed, broken[2], broken[1]]
    assert [c.reason for c in context.failures] == ["nan loss", "bad 2", "bad 1"]
    assert [c.id for c in context.baselines] == [base[1], base[0]] and context.generation == 7
    assert all(c.fitness is not None for c in context.top)


def test_run_summary_writes_a_one_seed_fitness_without_an_infinite_interval(tmp_path):
    archive, config = open_run(tmp_path)
    add(archive, "dpo", [0.5], stage="baseline", fidelity="full")
    top = archive.leaderboard(k=10)
    assert top and top[0].fitness.n == 1
    result = LoopResult("done", top[0], top[0], {}, archive.usage(), 1.0)
    console = Console(file=io.StringIO(), width=200)
    console.print(summary_table(result, top))
    text = console.file.getvalue()
    assert "0.5000 (no CI)" in text and "inf" not in text
    archive.close()
