"""The loop's newer decisions, fast (in-process table executor, no training): racing verdicts, the held-out
confirmation gate, and the islands' migrant under the one rule for "best".

Runs resume an archive written directly (a confirmed champion, DPO's stored results), so which jobs the
loop runs and what it decides are exact. The racing-vs-incumbent stop is tests/test_loop_racing.py's.
"""

from __future__ import annotations

import pytest
from loop_support import TASK, ScriptedProposer, TableExecutor, fast_config, loss_code

from discovery import racing, ranking
from discovery.archive import Archive
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.islands import Islands, migrates
from discovery.loop import DiscoveryLoop
from discovery.selection import TopKRecent

DPO = [0.50, 0.53, 0.51, 0.55, 0.52, 0.50]  # seeds 0-3 full, 4-5 re-evaluation / held-out


def config(**overrides):
    return fast_config(**{"screen": False, "seeds": 4, "reeval_seeds": 2, "racing": "paired_t",
                          "racing_first_seeds": 2, "heldout_instances": (1,), **overrides})


def store(archive: Archive, name: str, values: dict[str, list[float]], stage: str, origin=Origin.LLM,
          generation: int = 0) -> int:
    """A finished candidate: `values[fidelity]` per seed (full: seeds 0.., heldout-1: the re-evaluation seeds)."""
    cid = archive.add_candidate(Candidate(name=name, code=loss_code(name), origin=origin, generation=generation,
                                          proposer="library" if origin == Origin.LIBRARY else "scripted"),
                                stage=stage)
    for fidelity, per_seed in values.items():
        first = 0 if fidelity == "full" else 4
        for i, v in enumerate(per_seed):
            archive.add_evaluation(cid, EvalResult(seed=first + i, fitness=v, fidelity=fidelity,
                                                   beta=None if fidelity == "full" else 0.1))
    archive.transition(cid, Status.EVALUATED, stage=stage)
    return cid


def with_champion(tmp_path, cfg, champion_by: float) -> dict[str, int]:
    """Session 1, as stored: DPO (full and held-out seeds) and a champion confirmed on instance 1."""
    with Archive.open(tmp_path) as archive:
        archive.start_run(cfg.to_dict(), "synthetic", "k")
        ids = {"dpo": store(archive, "dpo", {"full": DPO[:4], "heldout-1": DPO[4:]}, "baseline", Origin.LIBRARY),
               "champion": store(archive, "champion", {"full": [v + champion_by for v in DPO],
                                                       "heldout-1": [v + 0.01 for v in DPO[4:]]}, "heldout",
                                 generation=1)}
        assert archive.summary(ids["champion"]).fitness.n == 6
        return ids


def resume(tmp_path, cfg, table, names):
    executor = TableExecutor(table, workers=1)
    with Archive.open(tmp_path) as archive:
        result = DiscoveryLoop(cfg, archive, TASK, ScriptedProposer(names), executor, TopKRecent()).run()
        summaries = {s.candidate.name: s for s in archive.summaries()}
    return result, summaries, executor


def seeds_value(by: float, heldout_by: float = 0.0, late: float | None = None):
    """DPO's value + `by` per seed; `heldout_by` on instance 1; `late` instead of `by` on seeds 4-5."""
    def value(seed, fidelity):
        if fidelity.instance is not None:
            return DPO[seed] + heldout_by + 0.01 * (seed % 2)
        return DPO[seed] + (late if late is not None and seed >= 4 else by) + 0.004 * ((seed * 7) % 3 - 1)
    return value


# ---------------------------------------------------------------- racing verdicts


def test_racing_verdicts_more_done_stop_and_one_seed_never_stops():
    dpo = dict(enumerate(DPO[:4]))
    tie = {s: v + (0.02 if s % 2 else -0.02) for s, v in dpo.items()}
    loser = {s: v - 0.2 for s, v in dpo.items()}
    assert racing.decide({0: 0.1}, {0: 0.9}, None, 1, 4).action == racing.MORE  # n = 1: no interval, no stop
    assert racing.decide(dict(list(tie.items())[:2]), dpo, None, 2, 4).action == racing.MORE
    assert racing.decide(tie, dpo, None, 4, 4).action == racing.DONE  # every rung run, no reason to stop
    verdict = racing.decide({s: loser[s] + 0.001 * s for s in loser}, dpo, None, 4, 4)
    assert verdict.action == racing.STOP and "below DPO" in verdict.reason and verdict.versus.ci_high < 0
    assert racing.decide({s: loser[s] + 0.001 * s for s in loser}, dpo, None, 4, 4, test="permutation").action \
        in (racing.STOP, racing.DONE)  # sign-flip with 4 pairs: p >= 1/16, its own rule
    assert racing.decide(loser, {}, None, 4, 4).action == racing.DONE  # nothing to compare with: no stop


def test_held_out_verdict_needs_two_common_seeds_and_not_below_dpo():
    dpo = {4: 0.52, 5: 0.50}
    assert racing.heldout_verdict({4: 0.9}, dpo, 1).action == racing.STOP  # fewer than 2 common seeds
    assert "fewer than 2" in racing.heldout_verdict({4: 0.9}, dpo, 1).reason
    assert racing.heldout_verdict({4: 0.30, 5: 0.29}, dpo, 1).action == racing.STOP
    assert racing.heldout_verdict({4: 0.53, 5: 0.49}, dpo, 1).action == racing.DONE  # ties DPO


# ---------------------------------------------------------------- the held-out gate in the loop


def test_a_new_winner_is_confirmed_on_the_held_out_instance_against_dpos_stored_results(tmp_path):
    cfg = config()
    ids = with_champion(tmp_path, cfg, champion_by=0.10)
    table = {"dpo": lambda s, f: pytest.fail("DPO's results are stored: no DPO job may run"),
             "better": seeds_value(+0.20, heldout_by=0.0)}
    result, s, ex = resume(tmp_path, cfg, table, ["champion", "better"])
    assert ex.seeds_of("better", "full") == [0, 1, 2, 3, 4, 5] and ex.seeds_of("better", "heldout-1") == [4, 5]
    assert ex.seeds_of("dpo") == []  # DPO's held-out seeds came from the archive, not from another job
    assert s["better"].stage == "heldout" and "beats or ties DPO" in s["better"].candidate.reason
    assert result.best.id == s["better"].id != ids["champion"]


def test_a_proposal_whose_mean_falls_on_fresh_seeds_does_not_reach_the_held_out_instance(tmp_path):
    cfg = config()
    ids = with_champion(tmp_path, cfg, champion_by=0.15)
    table = {"dpo": DPO, "fader": seeds_value(+0.20, late=-0.40)}  # ahead on seeds 0-3, far behind on 4-5
    result, s, ex = resume(tmp_path, cfg, table, ["champion", "fader"])
    assert ex.seeds_of("fader", "full") == [0, 1, 2, 3, 4, 5]  # worth confirming after the full stage
    assert ex.seeds_of("fader", "heldout-1") == [] and ex.seeds_of("dpo") == []
    assert s["fader"].stage == "reeval" and s["fader"].mean < s["champion"].mean
    assert not ranking.may_be_called_best(s["fader"], ranking.HELDOUT) and result.best.id == ids["champion"]


def test_a_proposal_that_does_not_beat_the_best_is_neither_re_evaluated_nor_held_out(tmp_path):
    cfg = config()
    ids = with_champion(tmp_path, cfg, champion_by=0.15)
    result, s, ex = resume(tmp_path, cfg, {"dpo": DPO, "modest": seeds_value(+0.05)}, ["champion", "modest"])
    assert ex.seeds_of("modest") == [0, 1, 2, 3] and s["modest"].stage == "full"  # racing ran both rungs
    assert result.best.id == ids["champion"]


# ---------------------------------------------------------------- islands: the migrant is the run's best


def test_the_migrant_is_the_confirmed_best_not_the_highest_mean_or_bound(tmp_path):
    cfg = config(reeval_seeds=2, heldout_instances=())
    with Archive.open(tmp_path) as archive:
        archive.start_run(cfg.to_dict(), "synthetic", "k")
        store(archive, "dpo", {"full": DPO[:4]}, "baseline", Origin.LIBRARY)
        home = store(archive, "home", {"full": [0.55, 0.56, 0.55, 0.56]}, "full", generation=1)  # island 0
        steady = store(archive, "steady", {"full": [0.60, 0.61, 0.59, 0.60, 0.61, 0.60]}, "reeval", generation=2)
        store(archive, "lucky", {"full": [0.99, 0.30, 0.95, 0.90, 0.85, 0.97]}, "reeval", generation=4)
        store(archive, "unconfirmed", {"full": [0.70, 0.701, 0.699, 0.70]}, "full", generation=6)
        islands = Islands(TopKRecent(), islands=2, migrate_every=1)
        assert migrates(3, 2, 1) and not migrates(1, 2, 1)
        assert islands.members(archive, 1) == {home}  # round 0: its own proposals only
        assert islands.members(archive, 3) == {home, steady}  # island 0 in a migration round: + the run's best
        context = islands.select(archive, TASK, 3)
    assert [c.name for c in context.top][:1] == ["steady"] and "lucky" not in {c.name for c in context.known()}
