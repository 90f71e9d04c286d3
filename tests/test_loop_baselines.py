"""The baselines' schedule, fast (no training): tiers, racing, the wall-time rule, the cache key, the progress line.

A run's `budget.wall_time` is for discovery: the library baselines are a cached reference, so the first proposal
starts once DPO's first rung is in (not every baseline), the other baselines train behind the proposals and are
raced against DPO, and their share of the machine is not charged (`discovery.loop_baselines`).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from loop_support import TASK, ScriptedProposer, TableExecutor, fast_config
from rich.console import Console

from discovery.archive import Archive, Usage
from discovery.archive.baseline_cache import BaselineCache
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.commands.run_progress import closing_lines, render
from discovery.executors.plan import FULL
from discovery.inner_loop.task import Fidelity
from discovery.library import get
from discovery.loop import DiscoveryLoop
from discovery.loop_baselines import BaselineClock
from discovery.loop_budget import charged_wall_time
from discovery.loop_progress import BaselineProgress, Snapshot
from discovery.loop_stages import BASELINE, Stages
from discovery.selection import TopKRecent

DPO = [0.50, 0.53, 0.51, 0.55, 0.52, 0.50, 0.54, 0.51, 0.53]


def near_dpo(by: float):
    return [v + by + 0.004 * ((i * 7) % 3 - 1) for i, v in enumerate(DPO)]


def racing(**overrides):
    return fast_config(**{"screen": False, "seeds": 9, "racing": "paired_t", "racing_first_seeds": 3,
                          "reeval_seeds": 0, **overrides})


class HeldExecutor(TableExecutor):
    """Jobs stay running until the test releases them (`release`), so the dispatch order can be read."""

    def __init__(self, table, workers=1):
        super().__init__(table, workers=workers)
        self.held: list[tuple[Future, EvalResult]] = []

    def submit(self, candidate_id, code, seed, fidelity):
        done = super().submit(candidate_id, code, seed, fidelity)
        future: Future = Future()
        self.held.append((future, done.result()))
        return future

    def release(self, stages: Stages) -> None:
        future, result = self.held.pop(0)
        future.set_result(result)
        stages.collect(future)


def stages_with(tmp_path, config, executor, names):
    archive = Archive.open(tmp_path)
    archive.start_run(config.to_dict(), "synthetic", "k")
    stages = Stages(config, archive, executor, None, best=lambda: None, log=lambda _m: None,
                    on_error=lambda _m: None)
    for name in names:
        cid = archive.add_candidate(Candidate(name=name, code=get(name).code, origin=Origin.LIBRARY,
                                              status=Status.QUEUED), stage=BASELINE)
        stages.baseline_ids.add(cid)
        stages.enter(cid, BASELINE)
    return archive, stages


def test_dpos_first_rung_goes_first_and_a_proposal_jumps_ahead_of_the_other_baselines(tmp_path):
    config = racing(screen=True)
    ex = HeldExecutor({"dpo": DPO, "slic": near_dpo(0.0), "a": near_dpo(0.0)})
    archive, stages = stages_with(tmp_path, config, ex, ["dpo", "slic"])
    order = []
    while stages.reference_busy():
        stages.dispatch()
        order.append(ex.jobs[-1][:2])
        ex.release(stages)
    assert order == [("dpo", 0), ("dpo", 0), ("dpo", 1), ("dpo", 2), ("slic", 0)]  # the screens, DPO's rung 1
    assert [f for n, _, f in ex.jobs] == ["screen", "full", "full", "full", "screen"]
    cid = archive.add_candidate(Candidate(name="a", code=get("dpo").code.replace("def dpo", "def a"),
                                          origin=Origin.LLM, status=Status.QUEUED), stage=FULL)
    stages.enter(cid, FULL)
    while stages.busy():
        stages.dispatch()
        ex.release(stages)
    later = [(n, s) for n, s, f in ex.jobs[5:]]
    assert later[:6] == [("dpo", s) for s in range(3, 9)]  # DPO gets every seed, before the proposal's
    assert later[6:15] == [("a", s) for s in range(9)]  # every rung of the proposal before the background
    assert {n for n, _ in later[15:]} == {"slic"} and len(later) == 6 + 9 + 9
    archive.close()


def test_the_first_proposal_does_not_wait_for_the_other_baselines(tmp_path):
    gate = threading.Event()
    seen = []  # for each slic result: had the first proposal started?

    class Gated(TableExecutor):
        def submit(self, candidate_id, code, seed, fidelity):
            done = super().submit(candidate_id, code, seed, fidelity)
            if not code.count("def slic"):
                return done
            future: Future = Future()
            threading.Thread(target=lambda: (gate.wait(5), seen.append(gate.is_set()),
                                             future.set_result(done.result())), daemon=True).start()
            return future

    class Proposer(ScriptedProposer):
        def propose(self, context):
            gate.set()
            return super().propose(context)

    config = racing(baselines=("dpo", "slic"))
    proposer = Proposer(["a"])
    with Archive.open(tmp_path) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        DiscoveryLoop(config, archive, TASK, proposer, Gated({"dpo": DPO, "slic": DPO, "a": DPO}, workers=2),
                      TopKRecent()).run()
    assert seen and all(seen)  # slic trained while (after) the first proposal was made, not before it
    dpo = next(c for c in proposer.contexts[0].baselines if c.name == "dpo")
    assert dpo.fitness is not None and dpo.fitness.n < 9  # the prompt shows DPO's first rung(s)


def test_a_baseline_clearly_worse_than_dpo_is_raced_out_and_dpo_gets_every_seed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="discovery.loop")
    config = racing(baselines=("dpo", "slic", "ipo"), budget={"proposals": 0})
    ex = TableExecutor({"dpo": DPO, "slic": near_dpo(-0.2), "ipo": near_dpo(0.001)}, workers=1)
    with Archive.open(tmp_path) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        result = DiscoveryLoop(config, archive, TASK, ScriptedProposer([]), ex, TopKRecent()).run()
        slic = archive.baseline("slic")
        assert ex.seeds_of("dpo") == list(range(9)) and ex.seeds_of("ipo") == list(range(9))
        assert ex.seeds_of("slic") == [0, 1, 2] and slic.candidate.status == Status.EVALUATED
        assert "raced out after 3 of 9 seeds: below DPO" in slic.candidate.reason
    assert (result.baseline_jobs.done, result.baseline_jobs.total, result.baseline_jobs.trained) == (21, 21, 21)
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"#{slic.id} slic: raced out after 3 of 9 seeds") for m in logged)
    assert logged.count("baselines: every one evaluated: 21/21 candidate-seeds") == 1
    assert logged[0].startswith("baselines: reference ready after 0m00s: 3/27 candidate-seeds")  # DPO: 3 of 9


class Clock:
    def __init__(self):
        self.now = 0.0


class TimedExecutor(TableExecutor):
    """Each job advances a fake clock by its cost in seconds (one worker: submit to collect = the cost)."""

    def __init__(self, table, clock: Clock, seconds: dict[str, float]):
        super().__init__(table, workers=1)
        self.clock, self.seconds = clock, seconds

    def submit(self, candidate_id, code, seed, fidelity):
        future = super().submit(candidate_id, code, seed, fidelity)
        self.clock.now += self.seconds.get(self.jobs[-1][0], 100.0)
        return future


def test_the_baselines_time_is_not_charged_to_the_wall_time_budget(tmp_path):
    two = BaselineClock(worker_seconds=200.0)  # 200 worker-seconds of baselines on 2 workers: 100 s of wall time
    assert charged_wall_time(100.0, two.share(2)) == 0.0 and charged_wall_time(150.0, two.share(2)) == 50.0
    clock = Clock()
    config = fast_config(screen=False, reeval_seeds=0, budget={"proposals": 10, "wall_time": 450.0})
    names = [f"p{i}" for i in range(10)]
    ex = TimedExecutor(dict.fromkeys(["dpo", *names], 0.5), clock, {"dpo": 300.0})  # 2 seeds: 600 s > 450 s
    with Archive.open(tmp_path) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        loop = DiscoveryLoop(config, archive, TASK, ScriptedProposer(names), ex, TopKRecent(),
                             clock=lambda: clock.now)
        result = loop.run()
        evaluated = [c for c in archive.candidates(origin=Origin.LLM) if c.status == Status.EVALUATED]
    assert result.stop_reason == "wall time of 450s used"
    assert len(evaluated) >= 2  # each proposal: 2 jobs x 100 s; charged 0 s for DPO's 600 s
    assert result.baseline_jobs.seconds == 600.0 and result.discovery_elapsed == result.elapsed - 600.0
    assert result.discovery_elapsed >= 450.0
    line = next(x for x in closing_lines("runs/x", result) if x.startswith("time: "))
    assert "baselines 10m00s (2 candidate-seeds trained, 0 from the cache)" in line


def test_the_cache_key_changes_with_everything_that_changes_a_result_and_survives_runs(tmp_path):
    def cache(task_key="k", train=None):
        return BaselineCache(tmp_path, "synthetic", task_key, train or {"max_steps": 60})

    code, screen = get("dpo").code, Fidelity(name="screen", steps_fraction=0.5)
    key = cache().key(code, 0, screen, 0.1)
    assert key == cache().key(code, 0, Fidelity(name="screen", steps_fraction=0.5), 0.1)
    others = [cache("k2").key(code, 0, screen, 0.1),  # another task build or options
              cache(train={"max_steps": 120}).key(code, 0, screen, 0.1),  # training config (and the scorer)
              cache().key(get("slic").code, 0, screen, 0.1), cache().key(code, 1, screen, 0.1),
              cache().key(code, 0, Fidelity(name="screen", steps_fraction=0.25), 0.1),  # was reused before
              cache().key(code, 0, Fidelity(name="full"), 0.1), cache().key(code, 0, screen, 0.2),
              cache().key(code, 0, Fidelity(name="full", instance=3), 0.1)]  # a held-out task instance
    assert len({key, *others}) == len(others) + 1
    first = cache()
    first.put(code, EvalResult(seed=0, fitness=0.7, fidelity="screen", beta=0.1), screen, 0.1)
    first.close()
    again = cache()  # another run, another process: the same file beside the task data
    assert again.get(code, 0, screen, 0.1).fitness == 0.7 and again.get(code, 0, screen, 0.2) is None
    assert cache("k2").get(code, 0, screen, 0.1) is None


def test_the_progress_line_counts_candidate_seeds_and_estimates_the_time_left(tmp_path):
    clock = BaselineClock()
    assert BaselineProgress(done=0, total=112).text() == "0/112 candidate-seeds, time left: after the first"
    for _ in range(12):
        clock.add(10.0)
    left = clock.seconds_left(100, workers=2)
    assert left == 500.0 and clock.share(2) == 60.0
    line = BaselineProgress(done=15, total=112, cached=3, trained=12, seconds=60.0, left=left).text()
    assert line == "15/112 candidate-seeds (3 from the cache), ~8m20s left"
    assert BaselineProgress(done=112, total=112).text() == "112/112 candidate-seeds"
    config = racing(screen=True, baselines=("dpo", "slic"))
    ex = HeldExecutor({"dpo": DPO, "slic": DPO})
    archive, stages = stages_with(tmp_path, config, ex, ["dpo", "slic"])
    stages.dispatch()
    ex.release(stages)
    progress = stages.baseline_progress()
    assert (progress.done, progress.total, progress.trained) == (1, 20, 1)  # 2 x (1 screen + 9 full)
    archive.close()
    snapshot = Snapshot(phase="baselines", elapsed=1.0, eta=None, baselines_done=0, baselines_total=2,
                        generation=0, proposing=0, in_flight=[], best=None, dpo=None, counts={},
                        usage=Usage(0, 0, 0, 0.0), baseline_jobs=progress)
    console = Console(width=160, record=True)
    console.print(render(snapshot))
    assert "1/20 candidate-seeds" in console.export_text()
