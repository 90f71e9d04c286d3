"""Racing over seeds and held-out confirmation in the loop, fast (in-process table executor, no training).

A proposal's full evaluation runs in rungs of seeds (`eval.racing`); a clear loser against DPO (paired by seed,
95% t interval below 0) stops early, a promising one gets every rung, and it may be called best only after
re-evaluation on fresh seeds and beating or tying DPO on each held-out task instance (`eval.heldout_instances`).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from loop_support import TASK, ScriptedProposer, TableExecutor, fast_config

from discovery import racing, ranking
from discovery.archive import Archive
from discovery.candidate import Status
from discovery.config import from_dict
from discovery.errors import ConfigError
from discovery.loop import DiscoveryLoop
from discovery.selection import TopKRecent

DPO = [0.50, 0.53, 0.51, 0.55, 0.52, 0.50, 0.54, 0.51, 0.53, 0.52, 0.50, 0.51]


def shifted(by: float, heldout_by: float | None = None, wobble: float = 0.004):
    """DPO's per-seed value + `by` (+ a small per-seed wobble); `heldout_by` on the held-out instance."""
    def value(seed, fidelity):
        shift = heldout_by if fidelity.instance is not None and heldout_by is not None else by
        return DPO[seed % len(DPO)] + shift + wobble * ((seed * 7) % 3 - 1)
    return value


def dpo_value(seed, fidelity):
    return DPO[seed % len(DPO)]


def run(tmp_path, config, table, names):
    executor = TableExecutor(table, workers=1)
    archive = Archive.open(tmp_path)
    archive.start_run(config.to_dict(), "synthetic", "k")
    result = DiscoveryLoop(config, archive, TASK, ScriptedProposer(names), executor, TopKRecent()).run()
    return result, archive, executor


def racing_config(**overrides):
    return fast_config(**{"screen": False, "seeds": 8, "reeval_seeds": 2, "racing": "paired_t",
                          "racing_first_seeds": 2, **overrides})


def test_rungs_double_up_to_the_cap():
    assert racing.rungs(2, 8) == [2, 4, 8] and racing.rungs(2, 10) == [2, 4, 8, 10] and racing.rungs(3, 3) == [3]
    assert racing.next_rung(0, 2, 10) == 2 and racing.next_rung(2, 2, 10) == 4 and racing.next_rung(10, 2, 10) == 10


def test_a_clear_loser_stops_after_the_first_rung_and_a_promising_one_gets_every_seed(tmp_path):
    config = racing_config(heldout_instances=[])
    table = {"dpo": dpo_value, "loser": shifted(-0.2), "good": shifted(+0.1)}
    result, archive, ex = run(tmp_path, config, table, ["loser", "good"])
    with archive:
        s = {x.candidate.name: x for x in archive.summaries()}
        assert ex.seeds_of("loser") == [0, 1]  # 2 of 8 seeds: stopped, no re-evaluation
        assert s["loser"].stage == "full" and s["loser"].candidate.status == Status.EVALUATED
        assert "raced out after 2 of 8 seeds: below DPO" in s["loser"].candidate.reason
        assert ex.seeds_of("good") == [*range(8), 8, 9]  # rungs 2, 4, 8, then 2 fresh seeds
        assert s["good"].stage == "reeval" and result.best.candidate.name == "good"
        assert ex.seeds_of("dpo") == list(range(8))


def test_a_candidate_within_noise_of_dpo_is_not_stopped(tmp_path):
    config = racing_config(heldout_instances=[])
    table = {"dpo": dpo_value, "tie": shifted(0.0, wobble=0.03)}
    _, archive, ex = run(tmp_path, config, table, ["tie"])
    with archive:
        assert sorted(set(ex.seeds_of("tie", "full"))) == list(range(8))
        assert "raced out" not in archive.summaries()[-1].candidate.reason


def test_racing_off_runs_every_seed_at_once(tmp_path):
    config = racing_config(heldout_instances=[], racing="off")
    _, archive, ex = run(tmp_path, config, {"dpo": dpo_value, "loser": shifted(-0.2)}, ["loser"])
    archive.close()
    assert ex.seeds_of("loser") == list(range(8))


def test_never_called_best_before_fresh_seeds_and_the_held_out_instance(tmp_path):
    """Ahead on every seed of the run's instance, behind DPO on held-out instance 1: not the best."""
    config = racing_config(heldout_instances=[1])
    table = {"dpo": dpo_value, "overfit": shifted(+0.2, heldout_by=-0.1)}
    result, archive, ex = run(tmp_path, config, table, ["overfit"])
    with archive:
        s = archive.summaries()[-1]
        assert ex.seeds_of("overfit", "heldout-1") == [8, 9] and ex.seeds_of("dpo", "heldout-1") == [8, 9]
        assert s.stage == "reeval" and "held-out instance 1" in s.candidate.reason and "below DPO" in s.candidate.reason
        assert not ranking.may_be_called_best(s, archive.needs_reeval())
        assert result.best.candidate.name == "dpo" and archive.best()[0].candidate.name == "dpo"


def test_a_winner_that_ties_dpo_on_the_held_out_instance_is_called_best(tmp_path):
    config = racing_config(heldout_instances=[1])
    table = {"dpo": dpo_value, "general": shifted(+0.2, heldout_by=0.0, wobble=0.02)}
    result, archive, ex = run(tmp_path, config, table, ["general"])
    with archive:
        s = archive.summaries()[-1]
        assert s.stage == "heldout" and "beats or ties DPO" in s.candidate.reason
        assert result.best.candidate.name == "general" and archive.best()[0].candidate.name == "general"
        assert s.fitness.n == 10  # the held-out results do not enter the run's fitness


def test_a_stored_reeval_stage_is_not_confirmed_when_the_run_has_held_out_instances():
    heldout = {"eval": {"reeval_seeds": 5, "heldout_instances": [1]}, "task": {"name": "synthetic"}}
    assert ranking.reeval_required(heldout) == ranking.HELDOUT
    assert ranking.reeval_required({"eval": {"reeval_seeds": 5}}) is True  # an older run: fresh seeds only
    assert ranking.reeval_required({**heldout, "task": {"name": "hf_dpo"}}) is True  # no instances there


@pytest.mark.parametrize("overrides, message", [
    ({"eval": {"racing": "paired"}}, "did you mean 'paired_t'"),
    ({"eval": {"racing_first_seeds": 1}}, "racing_first_seeds must be at least 2"),
    ({"eval": {"heldout_instances": [0]}}, "must not hold the run's own task instance"),
])
def test_racing_and_held_out_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(overrides)


@pytest.mark.slow
def test_a_held_out_job_trains_on_the_other_instance_in_the_real_worker():
    """The warm worker preloads the held-out instance; a job naming it trains there (another fitness)."""
    from discovery import library
    from discovery.config import load_config
    from discovery.executors import make_executor
    from discovery.executors.plan import heldout_instances, instance_config
    from discovery.inner_loop.task import Fidelity, get_task

    config = load_config(None, ["executor.workers=1", "train.max_steps=8", "eval.heldout_instances=[1]"])
    for c in [config, *(from_dict(instance_config(config.to_dict(), k)) for k in heldout_instances(config))]:
        get_task(c).prepare(None)
    code = library.get("dpo").code
    with make_executor(config) as executor:
        own = executor.submit(0, code, 0, Fidelity(name="full", beta=0.1)).result()
        other = executor.submit(0, code, 0, Fidelity(name="heldout-1", beta=0.1, instance=1)).result()
        again = executor.submit(0, code, 0, Fidelity(name="full", beta=0.1)).result()
    assert own.ok and other.ok and other.fidelity == "heldout-1"
    assert own.fitness == again.fitness != other.fitness  # same seed, same instance: the same; instance 1: not



def at_best_beta(by: float, best: float | None, wobble: float = 0.004):
    """`shifted(by)` at beta `best`, 0.1 lower at every other beta of the grid (its temperature, not its shape)."""
    inner = shifted(by, wobble=wobble)
    return lambda seed, fidelity: inner(seed, fidelity) - (0.0 if fidelity.beta == best else 0.1)


@pytest.mark.parametrize("betas", [(), (0.05, 0.1, 0.2)])
def test_racing_stops_a_proposal_clearly_worse_than_the_incumbent_and_lets_a_better_one_through(tmp_path, betas):
    """Session 1 confirms `good` (the incumbent). Session 2: `middling` beats DPO on every seed but is clearly
    below `good`: stopped after the first rung ("below the incumbent"); `better` beats `good`: every rung, fresh
    seeds, called best. On a beta grid each loss is scored at its own best beta (a different one for each)."""
    config = racing_config(heldout_instances=[], betas=betas, budget={"proposals": 1})
    grid = betas or (None,)
    table = {"dpo": at_best_beta(0.0, grid[1 % len(grid)]), "good": at_best_beta(+0.2, grid[0]),
             "middling": at_best_beta(+0.05, grid[-1]), "better": at_best_beta(+0.4, grid[-1])}
    first, archive, _ = run(tmp_path, config, table, ["good"])
    archive.close()
    assert first.best.candidate.name == "good"
    config = replace(config, budget=replace(config.budget, proposals=3))
    executor = TableExecutor(table, workers=1)
    with Archive.open(tmp_path) as archive:
        result = DiscoveryLoop(config, archive, TASK, ScriptedProposer(["good", "middling", "better"]), executor,
                               TopKRecent()).run()
        s = {x.candidate.name: x for x in archive.summaries()}
        assert sorted(executor.seeds_of("middling")) == sorted([0, 1] * len(grid))  # the first rung, every beta
        assert s["middling"].stage == "full"
        assert "raced out after 2 of 8 seeds: below the incumbent" in s["middling"].candidate.reason
        assert sorted(set(executor.seeds_of("better"))) == list(range(10))  # rungs 2, 4, 8, then 2 fresh seeds
        assert len([x for x in executor.seeds_of("better") if x < 8]) == 8 * len(grid)  # re-evaluation: its best beta
        assert s["better"].stage == "reeval" and result.best.candidate.name == "better"


def test_held_out_confirmation_trains_the_winner_and_dpo_each_at_its_own_best_beta_only(tmp_path):
    config = racing_config(heldout_instances=[1], betas=(0.05, 0.1, 0.2))
    table = {"dpo": at_best_beta(0.0, 0.1), "general": at_best_beta(+0.2, 0.05, wobble=0.02)}
    result, archive, _ = run(tmp_path, config, table, ["general"])
    with archive:
        s = {x.candidate.name: x for x in archive.summaries()}
        held = {name: {(e.result.seed, e.result.beta) for e in archive.evaluations(s[name].candidate.id, "heldout-1")}
                for name in ("general", "dpo")}
        assert held == {"general": {(8, 0.05), (9, 0.05)}, "dpo": {(8, 0.1), (9, 0.1)}}
        assert s["general"].stage == "heldout" and result.best.candidate.name == "general"
