"""The evaluation stages of the loop: each candidate's jobs planned, dispatched and collected, and what follows
each stage (the promotion / re-evaluation / confirmation decisions).

    baseline --(not DPO: racing rungs against DPO: more | stop)--> evaluated
    screen --(top eval.promote_fraction)--> full --(racing rungs: more | stop)--> (may be the best?) reeval
      --(eval.heldout_instances, may be the best?)--> heldout --(beats or ties DPO)--> evaluated, stage heldout
                                                               (else: evaluated, back to stage reeval)

A stage's jobs are the plan's (`executors.plan`) minus what the archive already holds (and, for baselines,
what the baseline cache holds), so a resumed run only runs what is missing. A failed seed fails the candidate;
when every baseline failed the harness is broken and `on_error` stops the run. `best` is the loop's
`DiscoveryLoop.best` (`discovery.ranking`): who a proposal has to beat to be worth confirming or racing.
Which pending job runs first (the baselines' tiers) and what the baselines cost: `discovery.loop_baselines`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

from discovery import racing, ranking
from discovery.archive import Archive, CandidateSummary
from discovery.archive.baseline_cache import BaselineCache
from discovery.candidate import EvalResult, Status
from discovery.config import RunConfig
from discovery.executors import Executor
from discovery.executors.plan import (
    FULL,
    HELDOUT,
    REEVAL,
    SCREEN,
    Job,
    baseline_jobs,
    heldout_instances,
    stage_jobs,
)
from discovery.inner_loop.sweep import sweep_fitness
from discovery.loop_baselines import REFERENCE, REFERENCE_NAME, BaselineClock, tier
from discovery.loop_budget import every_baseline_failed
from discovery.loop_progress import BaselineProgress

BASELINE = "baseline"


class Stages:
    """Owns the jobs (pending, running, what each candidate's stage still waits for) and the stage decisions."""

    def __init__(self, config: RunConfig, archive: Archive, executor: Executor | None, cache: BaselineCache | None,
                 best: Callable[[], CandidateSummary | None], log: Callable[[str], None],
                 on_error: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self.config, self.archive, self.executor, self.cache = config, archive, executor, cache
        self.best, self.log, self.on_error, self.clock = best, log, on_error, clock
        self.pending: deque[Job] = deque()
        self.running: dict[Future, Job] = {}
        self.submitted: dict[Future, float] = {}  # when each running job was submitted (`clock`)
        self.baseline_clock = BaselineClock()
        self._dpo: int | None = None
        self._baselines_logged = False
        self.stage_total: dict[int, int] = {}  # jobs of the stage a candidate is in
        self.remaining: dict[int, set] = {}  # job keys the candidate's stage still waits for
        self.baseline_ids: set[int] = set()
        self.rung: dict[int, int] = {}  # racing: the full seeds a proposal has been given so far

    # ---------------------------------------------------------------- what the loop asks

    def busy(self) -> bool:
        return bool(self.running or self.pending)

    def reference_busy(self) -> bool:
        """The REFERENCE tier (baseline screens, DPO's first rung) still trains: no proposal may start yet."""
        return any(self._tier(j) == REFERENCE for j in [*self.pending, *self.running.values()])

    def baselines_done(self) -> int:
        return sum(1 for b in self.baseline_ids if b not in self.remaining)

    def baseline_progress(self) -> BaselineProgress:
        """The baselines' candidate-seeds stored / planned, what they cost this session and an estimate of the rest."""
        done = total = 0
        for cid in self.baseline_ids:
            planned = {self._job_key(j) for j in baseline_jobs(self.config, cid)}
            stored = {(cid, *self._key(e.result.seed, e.result.fidelity, e.result.beta))
                      for e in self.archive.evaluations(cid)}
            have = len(planned & stored)
            done += have
            total += len(planned) if cid in self.remaining else have  # finished: raced out or failed ran fewer
        clock, workers = self.baseline_clock, self.executor.workers
        return BaselineProgress(done=done, total=total, cached=clock.cached, trained=clock.trained,
                                seconds=clock.share(workers), left=clock.seconds_left(total - done, workers))

    def in_flight(self) -> list[tuple[int, str, str, int, int]]:
        """(id, name, stage, jobs done, jobs of the stage) of every candidate with a stage in progress."""
        rows = []
        for cid, left in self.remaining.items():
            total = self.stage_total.get(cid, 0)
            rows.append((cid, self.archive.candidate(cid).name, self.archive.stage(cid), total - len(left), total))
        return rows

    # ---------------------------------------------------------------- jobs

    def enter(self, cid: int, stage: str) -> None:
        """Start `stage` for candidate `cid`: queue its missing jobs (finish it at once when none are)."""
        jobs = self._plan(cid, stage)
        have = {(c, *self._key(e.result.seed, e.result.fidelity, e.result.beta))
                for c in {j.candidate_id for j in jobs} for e in self.archive.evaluations(c)}
        missing = [j for j in jobs if self._job_key(j) not in have]
        if self.cache is not None:
            for job in [j for j in missing if j.candidate_id in self.baseline_ids]:
                hit = self.cache.get(self._code(job.candidate_id), job.seed, job.fidelity, self._beta(job))
                if hit is not None:
                    self.archive.add_evaluation(job.candidate_id, hit)
                    self.baseline_clock.cached += 1
                    missing.remove(job)
        if self.archive.stage(cid) != stage:
            self.archive.transition(cid, self.archive.candidate(cid).status, stage=stage)
        self.stage_total[cid] = len(jobs)
        self.remaining[cid] = {self._job_key(j) for j in missing}
        if not missing:
            self._finish(cid, stage)
        else:
            self.pending.extend(missing)

    def dispatch(self, drop_pending: bool = False) -> None:
        """Submit pending jobs while workers are free, the most urgent tier first (`loop_baselines.tier`; first in,
        first out within a tier); `drop_pending` (wall time used) drops them instead."""
        if drop_pending:
            self.pending.clear()
        while self.pending and len(self.running) < self.executor.workers:
            job = min(self.pending, key=self._tier)  # (min keeps the first of equals)
            self.pending.remove(job)
            if self.archive.candidate(job.candidate_id).status == Status.QUEUED:
                self.archive.transition(job.candidate_id, Status.TRAINING)
            started = self.clock()
            future = self.executor.submit(job.candidate_id, self._code(job.candidate_id), job.seed, job.fidelity)
            self.running[future] = job
            self.submitted[future] = started

    def collect(self, future: Future) -> None:
        """A submitted job came back: store its result; finish the owner's stage when it was the last job."""
        job = self.running.pop(future)
        started = self.submitted.pop(future, None)
        if job.candidate_id in self.baseline_ids and started is not None:
            self.baseline_clock.add(self.clock() - started)
        try:
            result: EvalResult = future.result()
        except Exception as exc:  # the executor itself failed (not the candidate): retry on resume
            self.log(f"evaluation of #{job.candidate_id} seed {job.seed} lost: {exc}")
            return
        cid = job.candidate_id
        if not self.archive.add_evaluation(cid, result):
            self.archive.log_event("repeated", f"seed {job.seed} {job.fidelity.name} was already stored", cid)
        if cid in self.baseline_ids and self.cache is not None:
            self.cache.put(self._code(cid), result, job.fidelity, self._beta(job))
        owner = cid if job.owner is None else job.owner
        self.remaining[owner].discard(self._job_key(job))
        if not self.remaining[owner]:
            self._finish(owner, self.archive.stage(owner))

    def _plan(self, cid: int, stage: str) -> list[Job]:
        """The stage's jobs: racing gives a proposal's full stage its current rung of seeds; the held-out stage
        adds DPO's jobs on the same seeds and instances (run once, then stored and cached)."""
        if stage == BASELINE and self._races(cid):  # its screen jobs, then the full seeds rung by rung
            return [*stage_jobs(self.config, cid, SCREEN), *self._rung_jobs(cid)] if self.config.eval.screen \
                else self._rung_jobs(cid)
        if stage == BASELINE:
            return baseline_jobs(self.config, cid)
        if stage == FULL and self._races(cid):
            return self._rung_jobs(cid)
        jobs = stage_jobs(self.config, cid, stage, self._sweep_beta(cid) if stage in (REEVAL, HELDOUT) else None)
        dpo = self.dpo_id()
        if stage == HELDOUT and dpo is not None:  # DPO at its own best beta of the full stage, as the winner
            jobs += [replace(j, candidate_id=dpo, owner=cid)
                     for j in stage_jobs(self.config, dpo, HELDOUT, self._sweep_beta(dpo))]
        return jobs

    def _rung_jobs(self, cid: int) -> list[Job]:
        """Racing: the full stage's jobs up to the candidate's current rung of seeds."""
        done = {e.result.seed for e in self.archive.evaluations(cid, FULL)
                if e.result.seed < self.config.seed + self.config.eval.seeds}
        n = racing.next_rung(max(0, len(done) - 1), self.config.eval.racing_first_seeds, self.config.eval.seeds)
        self.rung[cid] = max(n, self.rung.get(cid, 0))
        return stage_jobs(self.config, cid, FULL, seeds=self.rung[cid])

    # ---------------------------------------------------------------- decisions after a stage

    def _finish(self, cid: int, stage: str) -> None:
        self._decide(cid, stage)
        seeded = len(self.baseline_ids) >= len(self.config.eval.baselines)  # (they are stored one by one)
        if cid in self.baseline_ids and seeded and not self._baselines_logged \
                and not self.remaining.keys() & self.baseline_ids:
            self._baselines_logged = True
            self.log(f"baselines: every one evaluated: {self.baseline_progress().text()}")

    def _decide(self, cid: int, stage: str) -> None:
        """What follows the end of `stage` for candidate `cid` (the module docstring's diagram)."""
        self.remaining.pop(cid, None)
        failed = [e.result for e in self.archive.evaluations(cid) if not e.result.ok]
        if failed:
            reason = f"{failed[0].fidelity} seed {failed[0].seed}: {failed[0].reason or 'no fitness'}"
            self.archive.transition(cid, Status.FAILED, reason, stage=stage)
            if cid in self.baseline_ids:
                self._check_baselines()
            return
        if stage in (FULL, BASELINE) and self._races(cid) and self._next_rung(cid, stage):
            return
        if stage == SCREEN and not self._promoted(cid):
            self.archive.transition(cid, Status.EVALUATED, "screened; not in the top fraction", stage=stage)
        elif stage == SCREEN:
            self.enter(cid, FULL)
        elif stage == FULL and self.config.eval.reeval_seeds > 0 and self._may_be_best(cid):
            self.enter(cid, REEVAL)
        elif stage == REEVAL and heldout_instances(self.config) and self._may_be_best(cid):
            self.enter(cid, HELDOUT)
        elif stage == HELDOUT:
            self._finish_heldout(cid)
        else:
            self.archive.transition(cid, Status.EVALUATED, stage=stage)

    def _next_rung(self, cid: int, stage: str) -> bool:
        """Racing after a rung of full seeds: True when it decided (stopped the candidate or queued the next
        rung); False when every rung is done and the usual decisions follow (`discovery.racing`). A baseline
        races against DPO only."""
        best = None if cid in self.baseline_ids else self.best()
        n = self.rung.get(cid, self.config.eval.seeds)
        verdict = racing.race(self.archive, self.config, cid, n, self.dpo_id(), best.id if best else None)
        if verdict.action == racing.STOP:
            self.archive.transition(cid, Status.EVALUATED, verdict.reason, stage=stage)
            self.log(f"#{cid} {self.archive.candidate(cid).name}: {verdict.reason}")
        elif verdict.action == racing.MORE:
            self.rung[cid] = racing.next_rung(n, self.config.eval.racing_first_seeds, self.config.eval.seeds)
            self.enter(cid, stage)
        return verdict.action != racing.DONE

    def _finish_heldout(self, cid: int) -> None:
        """Called best only after beating or tying DPO on every held-out instance; else back to `reeval`."""
        verdict = racing.heldout(self.archive, self.config, cid, self.dpo_id(), heldout_instances(self.config))
        stage = HELDOUT if verdict.action == racing.DONE else REEVAL
        self.archive.transition(cid, Status.EVALUATED, verdict.reason, stage=stage)
        self.log(f"#{cid} {verdict.reason}")

    def _check_baselines(self) -> None:
        """Every baseline failed: the harness is broken (judge, data, limits), not the losses; stop with an error."""
        message = every_baseline_failed([self.archive.candidate(b) for b in sorted(self.baseline_ids)])
        if message:
            self.pending.clear()
            self.on_error(message)

    def _promoted(self, cid: int) -> bool:
        """In the top `eval.promote_fraction` of everything screened so far (baselines included)."""
        by_cand: dict[int, list[float]] = {}
        for e in self.archive.evaluations(fidelity=SCREEN):
            if e.result.ok and e.result.fitness is not None:
                by_cand.setdefault(e.candidate_id, []).append(e.result.fitness)
        means = {k: sum(v) / len(v) for k, v in by_cand.items()}
        return ranking.in_top_fraction(means, cid, self.config.eval.promote_fraction)

    def _may_be_best(self, cid: int) -> bool:
        return ranking.worth_confirming(self.archive.summary(cid), self.best())

    # ---------------------------------------------------------------- helpers

    def _races(self, cid: int) -> bool:
        """Proposals and the baselines other than DPO (which gets every seed: every comparison pairs with it)."""
        return self.config.eval.racing != "off" and cid != self.dpo_id()

    def dpo_id(self) -> int | None:
        if self._dpo is None:  # (looked up until found: the baselines are stored one by one)
            dpo = self.archive.baseline(REFERENCE_NAME)
            self._dpo = dpo.id if dpo is not None and dpo.id in self.baseline_ids else None
        return self._dpo

    def _tier(self, job: Job) -> int:
        """The job's tier; without DPO in the run the first baseline is the reference."""
        reference = self.dpo_id() if self.dpo_id() is not None else min(self.baseline_ids, default=None)
        return tier(job, self.config, self.baseline_ids, reference)

    def _sweep_beta(self, cid: int) -> float | None:
        """With a beta sweep, the beta of the full stage's seeds that `eval.fitness` scores at (best_beta):
        re-evaluation confirms the candidate there, on fresh seeds. None = train.beta."""
        if len(self.config.eval.betas) < 2:
            return None
        full_seeds = range(self.config.seed, self.config.seed + self.config.eval.seeds)
        results = [e.result for e in self.archive.evaluations(cid, FULL) if e.result.seed in full_seeds]
        return sweep_fitness(results, "best_beta", self.config.train.beta).beta

    def _beta(self, job: Job) -> float:
        return self.config.train.beta if job.fidelity.beta is None else job.fidelity.beta

    def _job_key(self, job: Job) -> tuple:
        return (job.candidate_id, *self._key(job.seed, job.fidelity.name, self._beta(job)))

    def _key(self, seed: int, fidelity: str, beta: float | None) -> tuple:
        beta = self.config.train.beta if beta is None else beta
        return (int(seed), fidelity, round(float(beta), 9))

    def _code(self, cid: int) -> str:
        return self.archive.candidate(cid).code
