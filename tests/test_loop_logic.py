"""The loop's decisions, fast: promotion, re-evaluation gating, budgets, requeue on resume, stop reasons.

The loop, archive (SQLite) and selection are real; training is a table (`loop_support.TableExecutor`)
and proposals are scripted (`loop_support.ScriptedProposer`), so each test takes well under a second.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from loop_support import TASK, ScriptedProposer, TableExecutor, fast_config, loss_code

from discovery.archive import Archive
from discovery.archive.baseline_cache import BaselineCache
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.loop import DiscoveryLoop
from discovery.selection import TopKRecent


def run(tmp_path, config, table, names, workers=1, fail=()):
    executor = TableExecutor(table, workers=workers, fail=set(fail))
    proposer = ScriptedProposer(names)
    archive = Archive.open(tmp_path)
    archive.start_run(config.to_dict(), "synthetic", "k")
    result = DiscoveryLoop(config, archive, TASK, proposer, executor, TopKRecent()).run()
    return result, archive, executor, proposer


def by_name(archive: Archive) -> dict:
    return {s.candidate.name: s for s in archive.summaries()}


def test_screen_promotes_the_top_fraction_to_full_fidelity(tmp_path):
    config = fast_config(screen=True, promote_fraction=0.5, reeval_seeds=0)
    result, archive, ex, _ = run(tmp_path, config, {"dpo": 0.5, "good": 0.9, "bad": 0.1}, ["good", "bad"])
    with archive:
        s = by_name(archive)
        assert ex.seeds_of("good", "screen") == [0] and ex.seeds_of("good", "full") == [0, 1]
        assert ex.seeds_of("bad", "screen") == [0] and ex.seeds_of("bad", "full") == []
        assert s["bad"].stage == "screen" and s["bad"].candidate.status == Status.EVALUATED
        assert "not in the top fraction" in s["bad"].candidate.reason
        assert s["good"].stage == "full" and s["good"].fidelity == "full"
        assert result.best.candidate.name == "good"


def test_only_a_proposal_that_may_beat_the_best_is_re_evaluated_on_fresh_seeds(tmp_path):
    config = fast_config(screen=False, reeval_seeds=2)
    table = {"dpo": [0.50, 0.52], "better": [0.70, 0.71, 0.70, 0.72], "worse": [0.40, 0.41]}
    result, archive, ex, _ = run(tmp_path, config, table, ["better", "worse"])
    with archive:
        s = by_name(archive)
        assert ex.seeds_of("better") == [0, 1, 2, 3] and s["better"].stage == "reeval"  # seeds 2, 3 are new
        assert ex.seeds_of("worse") == [0, 1] and s["worse"].stage == "full"
        assert s["better"].fitness.n == 4
        assert result.best.candidate.name == "better" and archive.best()[0].candidate.name == "better"
        assert ex.seeds_of("dpo") == [0, 1]  # baselines: the full seeds, no re-evaluation


def test_proposals_wait_for_the_baselines(tmp_path):
    config = fast_config(screen=False, reeval_seeds=0)
    _, archive, _, proposer = run(tmp_path, config, {"dpo": 0.5, "a": 0.6}, ["a"])
    archive.close()
    (first,) = proposer.contexts
    assert [c.name for c in first.baselines] == ["dpo"] and first.baselines[0].fitness is not None


def test_proposal_budget_stops_new_proposals(tmp_path):
    config = fast_config(screen=False, reeval_seeds=0, budget={"proposals": 3})
    names = [f"p{i}" for i in range(10)]
    result, archive, _, proposer = run(tmp_path, config, dict.fromkeys(["dpo", *names], 0.5), names)
    with archive:
        assert archive.proposal_count() == 3 and len(proposer.proposed) == 3
        assert result.stop_reason == "proposal budget of 3 used" and archive.run_info().end_reason == result.stop_reason
        assert result.unfinished == []


@pytest.mark.parametrize("cap, field", [("max_cost_usd", 0.025), ("max_tokens", 250)])
def test_cost_and_token_caps_stop_after_the_proposal_that_crosses_them(tmp_path, cap, field):
    config = fast_config(screen=False, reeval_seeds=0, budget={"proposals": 10, cap: field})
    names = [f"p{i}" for i in range(10)]
    executor = TableExecutor(dict.fromkeys(["dpo", *names], 0.5), workers=1)
    proposer = ScriptedProposer(names, cost_usd=0.01, tokens=100)
    with Archive.open(tmp_path) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        result = DiscoveryLoop(config, archive, TASK, proposer, executor, TopKRecent()).run()
        assert archive.proposal_count() == 3  # 0.02 / 200 tokens are under the cap, 0.03 / 300 are not
        assert result.stop_reason.startswith("cost cap" if cap == "max_cost_usd" else "token cap")
        assert any(e.message == result.stop_reason for e in archive.events(kind="budget"))


def test_wall_time_stops_before_any_job(tmp_path):
    config = fast_config(screen=False, budget={"wall_time": 0.0})
    result, archive, ex, proposer = run(tmp_path, config, {"dpo": 0.5}, ["a"])
    archive.close()
    assert result.stop_reason == "wall time of 0s used" and ex.jobs == [] and proposer.proposed == []
    assert result.unfinished  # the baseline is left queued for a resumed run


def test_a_failing_seed_fails_the_candidate_with_its_reason(tmp_path):
    config = fast_config(screen=False, reeval_seeds=0)
    result, archive, _, _ = run(tmp_path, config, {"dpo": 0.5, "ok": 0.6}, ["nan", "ok"], fail={"nan"})
    with archive:
        s = by_name(archive)
        assert s["nan"].candidate.status == Status.FAILED and "loss is nan" in s["nan"].candidate.reason
        assert s["ok"].candidate.status == Status.EVALUATED
        assert result.stop_reason == "scripted proposals done" and result.error == ""


def test_a_proposer_error_stops_the_run_with_the_error(tmp_path):
    config = fast_config(screen=False, reeval_seeds=0)
    result, archive, _, _ = run(tmp_path, config, {"dpo": 0.5, "a": 0.6}, ["a", "raise_now", "b"])
    with archive:
        assert result.error == "proposer: endpoint gone (raise_now)" and result.stop_reason == result.error
        assert [c.name for c in archive.candidates(origin=Origin.LLM)] == ["a"]
        assert any(e.message == result.error for e in archive.events(kind="error"))


def test_resume_requeues_unfinished_candidates_and_runs_only_the_missing_jobs(tmp_path):
    config = fast_config(screen=False, reeval_seeds=0, budget={"proposals": 0})  # session 1: the baselines only
    run(tmp_path, config, {"dpo": 0.5}, [])[1].close()
    with Archive.open(tmp_path) as archive:  # as if session 1 had stopped while "half" was training
        cid = archive.add_candidate(Candidate(name="half", code=loss_code("half"), origin=Origin.LLM,
                                              status=Status.TRAINING), stage="full")
        archive.add_evaluation(cid, EvalResult(seed=0, fitness=0.4))
    config = replace(config, budget=replace(config.budget, proposals=2))
    executor, proposer = TableExecutor({"dpo": 0.5, "half": 0.4, "fresh": 0.45}, workers=1), ScriptedProposer(
        ["half", "fresh"])
    with Archive.open(tmp_path) as archive:
        result = DiscoveryLoop(config, archive, TASK, proposer, executor, TopKRecent()).run()
        s = by_name(archive)
        assert [c.name for c in proposer.resumed] == ["half"] and proposer.spent == (0.0, 0)
        assert executor.seeds_of("half") == [1] and executor.seeds_of("dpo") == []  # only what was missing
        assert proposer.proposed == ["half", "fresh"] and s["half"].candidate.status == Status.EVALUATED
        assert s["half"].fitness.n == 2 and result.unfinished == []


def test_a_second_run_takes_the_baselines_from_the_cache_without_training_them(tmp_path):
    config = fast_config(screen=True, reeval_seeds=0, budget={"proposals": 0})
    executors = []
    for name in ("run1", "run2"):
        cache = BaselineCache(tmp_path / "cache", "synthetic", "k", vars(config.train))
        executor = TableExecutor({"dpo": [0.5, 0.52]}, workers=1)
        with Archive.open(tmp_path / name) as archive:
            archive.start_run(config.to_dict(), "synthetic", "k")
            DiscoveryLoop(config, archive, TASK, ScriptedProposer([]), executor, TopKRecent(), cache).run()
            values = sorted((e.result.seed, e.result.fidelity, e.result.fitness) for e in archive.evaluations())
        cache.close()
        executors.append((executor, values))
    (first, v1), (second, v2) = executors
    assert first.seeds_of("dpo") == [0, 0, 1] and second.jobs == []  # screen seed 0, full seeds 0 and 1
    assert v1 == v2 and len(v2) == 3
