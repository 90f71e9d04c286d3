"""The discovery loop: wires selection -> proposer (with sandbox fix-up) -> dedup -> executor -> archive.

One thread owns the archive and all decisions; proposals run in daemon threads (LLM calls block, and a
Ctrl-C must not wait for one to return) and evaluations in the executor's isolated workers. Every
decision is written to the archive before the next one, so a resumed run (`Archive` + this loop on the same run dir) continues where it stopped:
stored proposals are not bought again, evaluations that were in flight are queued again, finished
ones are kept (the multi-fidelity plan is recomputed and only missing jobs run).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace

from discovery import library, racing, ranking
from discovery.archive import Archive, CandidateSummary, Usage
from discovery.archive.baseline_cache import BaselineCache
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.config import RunConfig
from discovery.executors import Executor
from discovery.executors.plan import (
    FULL,
    HELDOUT,
    REEVAL,
    SCREEN,
    Job,
    baseline_jobs,
    first_stage,
    heldout_instances,
    stage_jobs,
)
from discovery.inner_loop.sweep import sweep_fitness
from discovery.inner_loop.task import TaskInfo
from discovery.proposer.base import Proposal, Proposer, paid_calls
from discovery.proposer.novelty import KnownLoss, duplicate_of
from discovery.selection import SelectionStrategy

log = logging.getLogger("discovery.loop")
ACTIVE = (Status.QUEUED, Status.TRAINING)


@dataclass
class Snapshot:
    """What the live progress display shows."""

    phase: str
    elapsed: float
    eta: float | None
    baselines_done: int
    baselines_total: int
    generation: int
    proposing: int
    in_flight: list[tuple[int, str, str, int, int]]  # (id, name, stage, jobs done, jobs of the stage)
    best: CandidateSummary | None
    dpo: CandidateSummary | None
    counts: dict[str, int]
    usage: Usage
    stop_reason: str = ""


@dataclass
class LoopResult:
    stop_reason: str
    best: CandidateSummary | None
    dpo: CandidateSummary | None
    counts: dict[str, int]
    usage: Usage
    elapsed: float
    unfinished: list[int] = field(default_factory=list)
    error: str = ""


class DiscoveryLoop:
    def __init__(self, config: RunConfig, archive: Archive, task: TaskInfo, proposer: Proposer,
                 executor: Executor, selection: SelectionStrategy, cache: BaselineCache | None = None,
                 observer=None, validator: Callable | None = None):
        self.config, self.archive, self.task, self.proposer = config, archive, task, proposer
        self.executor, self.selection, self.cache, self.observer = executor, selection, cache, observer
        self.validator = validator  # fingerprints the baselines, so near-copies of them count as duplicates
        self.pending: deque[Job] = deque()
        self.running: dict[Future, Job] = {}
        self.proposing: dict[Future, int] = {}
        self.stage_total: dict[int, int] = {}
        self.remaining: dict[int, set] = {}
        self.baseline_ids: set[int] = set()
        self.rung: dict[int, int] = {}  # racing: the full seeds a proposal has been given so far
        self.needs_confirmation = ranking.reeval_required(config.to_dict())  # what "may be called best" needs
        self.stop_reason = ""
        self.error = ""
        self.started = time.monotonic()

    # ---------------------------------------------------------------- driving

    def run(self) -> LoopResult:
        self._seed_baselines()
        self._requeue_unfinished()
        self.proposer.resume([c for c in self.archive.candidates() if c.origin != Origin.LIBRARY])
        spent = self.archive.usage()
        self.proposer.count_spent(spent.cost_usd, spent.tokens)  # earlier sessions count toward the caps
        while True:
            self._check_budget()
            self._start_proposals()
            self._dispatch_jobs()
            if not (self.running or self.proposing or self.pending) and self._cannot_propose():
                break
            self._wait()
            self._notify()
        reason = self.stop_reason or self._proposal_blocker() or "done"
        self.archive.end_run(reason)
        self._notify()
        return self._result(reason)

    def _wait(self) -> None:
        futures = [*self.running, *self.proposing]
        if not futures:
            return
        done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            if future in self.running:
                self._job_done(self.running.pop(future), future)
            else:
                self.proposing.pop(future)
                self._proposal_done(future)

    # ---------------------------------------------------------------- baselines

    def _seed_baselines(self) -> None:
        stored = {c.name: c for c in self.archive.candidates(origin=Origin.LIBRARY)}
        for name in self.config.eval.baselines:
            library.get(name)  # a name the library lacks is an error, on resume too
            if name in stored:
                cid = stored[name].id
            else:
                baseline, probes = self._baseline(name)
                cid = self.archive.add_candidate(baseline, probe_values=probes, stage="baseline")
            self.baseline_ids.add(cid)
            if self.archive.candidate(cid).status in ACTIVE:
                self._enter_stage(cid, "baseline")

    def _baseline(self, name: str) -> tuple[Candidate, list[float]]:
        """The library loss `name` as a queued candidate, fingerprinted (with its probe values) when there is a
        validator."""
        loss = library.get(name)
        report = self.validator(loss.code) if self.validator is not None else None
        baseline = Candidate(name=name, code=loss.code, thought=loss.description, origin=Origin.LIBRARY,
                             proposer="library", status=Status.QUEUED, latex=loss.latex,
                             fingerprint=report.fingerprint if report else None, sympy=report.sympy if report else None)
        return baseline, list(report.probe_values or []) if report else []

    def _requeue_unfinished(self) -> None:
        for c in self.archive.candidates():
            if c.status in ACTIVE and c.id not in self.remaining and c.origin != Origin.LIBRARY:
                self._enter_stage(c.id, self.archive.stage(c.id) or first_stage(self.config))
                self._log(f"resume: re-queued #{c.id} {c.name} at stage {self.archive.stage(c.id)}")

    # ---------------------------------------------------------------- proposals

    def _cannot_propose(self) -> bool:
        return self._proposal_blocker() is not None

    def _proposal_blocker(self) -> str | None:
        if self.stop_reason:
            return self.stop_reason
        reason = self.proposer.stop_reason()
        if reason:
            return reason
        if self.archive.proposal_count() + len(self.proposing) >= self.config.budget.proposals:
            return f"proposal budget of {self.config.budget.proposals} used"
        return None

    def _start_proposals(self) -> None:
        if any(j.candidate_id in self.baseline_ids for j in [*self.pending, *self.running.values()]):
            return  # the first context needs the baselines' fitness
        free = self.executor.workers - len(self.running)
        while len(self.proposing) < max(1, free) and self._proposal_blocker() is None:
            generation = self.archive.proposal_count() + len(self.proposing) + 1
            context = replace(self.selection.select(self.archive, self.task, generation),
                              known_losses=self._known_losses(),
                              duplicate_distance=self.config.eval.duplicate_distance)
            self.proposing[in_daemon_thread(self.proposer.propose, context)] = generation
            self._log(f"proposing #{generation}")

    def _proposal_done(self, future: Future) -> None:
        try:
            proposal: Proposal = future.result()
        except Exception as exc:  # the proposer cannot go on (endpoint down, budget cap, ...)
            self.archive.add_llm_calls(paid_calls(exc))  # what it bought before failing still counts
            self.error = f"proposer: {exc}"
            self.stop_reason = self.stop_reason or self.error
            self.archive.log_event("error", self.error)
            self._log(self.error)
            return
        self._store_proposal(proposal)

    def _store_proposal(self, proposal: Proposal) -> None:
        c = proposal.candidate
        probes = proposal.probe_values
        if c.status != Status.INVALID:
            original, why = duplicate_of(self._known_losses(), c.fingerprint, c.code_hash, probes,
                                         self.config.eval.duplicate_distance)
            if original is not None:
                c = c.with_status(Status.DUPLICATE, f"behaves like #{original.id} {original.name} ({why})",
                                  duplicate_of=original.id)
            else:
                c = c.with_status(Status.QUEUED, c.reason)
        stage = first_stage(self.config) if c.status == Status.QUEUED else ""
        cid = self.archive.add_candidate(c, calls=proposal.calls, probe_values=probes, stage=stage)
        self._log(f"stored #{cid} {c.name}: {c.status}" + (f" ({c.reason})" if c.reason else ""))
        if c.status == Status.QUEUED:
            self._enter_stage(cid, stage)

    def _known_losses(self) -> list[KnownLoss]:
        """Every stored loss a new proposal must differ from (valid, not a duplicate), with its probes."""
        probes = self.archive.all_probe_values()
        return [KnownLoss(c.id, c.name, c.fingerprint, c.code_hash, tuple(probes.get(c.id, ())))
                for c in self.archive.candidates() if c.status not in (Status.DUPLICATE, Status.INVALID)]

    # ---------------------------------------------------------------- evaluation stages

    def _enter_stage(self, cid: int, stage: str) -> None:
        jobs = self._stage_plan(cid, stage)
        have = {(c, *self._key(e.result.seed, e.result.fidelity, e.result.beta))
                for c in {j.candidate_id for j in jobs} for e in self.archive.evaluations(c)}
        missing = [j for j in jobs if self._job_key(j) not in have]
        if self.cache is not None:
            for job in [j for j in missing if j.candidate_id in self.baseline_ids]:
                hit = self.cache.get(self._code(job.candidate_id), job.seed, job.fidelity.name, self._beta(job))
                if hit is not None:
                    self.archive.add_evaluation(job.candidate_id, hit)
                    missing.remove(job)
        if self.archive.stage(cid) != stage:
            self.archive.transition(cid, self.archive.candidate(cid).status, stage=stage)
        self.stage_total[cid] = len(jobs)
        self.remaining[cid] = {self._job_key(j) for j in missing}
        if not missing:
            self._finish_stage(cid, stage)
        else:
            self.pending.extend(missing)

    def _stage_plan(self, cid: int, stage: str) -> list[Job]:
        """The stage's jobs: racing gives a proposal's full stage its current rung of seeds; the held-out stage
        adds DPO's jobs on the same seeds and instances (run once, then stored and cached)."""
        if stage == "baseline":
            return baseline_jobs(self.config, cid)
        if stage == FULL and self._races(cid):
            done = {e.result.seed for e in self.archive.evaluations(cid, FULL)
                    if e.result.seed < self.config.seed + self.config.eval.seeds}
            n = racing.next_rung(max(0, len(done) - 1), self.config.eval.racing_first_seeds, self.config.eval.seeds)
            self.rung[cid] = max(n, self.rung.get(cid, 0))
            return stage_jobs(self.config, cid, FULL, seeds=self.rung[cid])
        jobs = stage_jobs(self.config, cid, stage, self._sweep_beta(cid) if stage == REEVAL else None)
        dpo = self._dpo_id()
        if stage == HELDOUT and dpo is not None:
            jobs += [replace(j, candidate_id=dpo, owner=cid) for j in stage_jobs(self.config, dpo, HELDOUT)]
        return jobs

    def _races(self, cid: int) -> bool:
        return self.config.eval.racing != "off" and cid not in self.baseline_ids

    def _dpo_id(self) -> int | None:
        dpo = self.archive.baseline("dpo")
        return dpo.id if dpo is not None and dpo.id in self.baseline_ids else None

    def _sweep_beta(self, cid: int) -> float | None:
        """With a beta sweep, the beta of the full stage's seeds that `eval.fitness` scores at (best_beta):
        re-evaluation confirms the candidate there, on fresh seeds. None = train.beta."""
        if len(self.config.eval.betas) < 2:
            return None
        full_seeds = range(self.config.seed, self.config.seed + self.config.eval.seeds)
        results = [e.result for e in self.archive.evaluations(cid, FULL) if e.result.seed in full_seeds]
        return sweep_fitness(results, "best_beta", self.config.train.beta).beta

    def _dispatch_jobs(self) -> None:
        if self.stop_reason.startswith("wall time"):
            self.pending.clear()
        while self.pending and len(self.running) < self.executor.workers:
            job = self.pending.popleft()
            if self.archive.candidate(job.candidate_id).status == Status.QUEUED:
                self.archive.transition(job.candidate_id, Status.TRAINING)
            future = self.executor.submit(job.candidate_id, self._code(job.candidate_id), job.seed, job.fidelity)
            self.running[future] = job

    def _job_done(self, job: Job, future: Future) -> None:
        try:
            result: EvalResult = future.result()
        except Exception as exc:  # the executor itself failed (not the candidate): retry on resume
            self._log(f"evaluation of #{job.candidate_id} seed {job.seed} lost: {exc}")
            return
        cid = job.candidate_id
        if not self.archive.add_evaluation(cid, result):
            self.archive.log_event("repeated", f"seed {job.seed} {job.fidelity.name} was already stored", cid)
        if cid in self.baseline_ids and self.cache is not None:
            self.cache.put(self._code(cid), result, self._beta(job))
        owner = cid if job.owner is None else job.owner
        self.remaining[owner].discard(self._job_key(job))
        if not self.remaining[owner]:
            self._finish_stage(owner, self.archive.stage(owner))

    def _finish_stage(self, cid: int, stage: str) -> None:
        self.remaining.pop(cid, None)
        failed = [e.result for e in self.archive.evaluations(cid) if not e.result.ok]
        if failed:
            reason = f"{failed[0].fidelity} seed {failed[0].seed}: {failed[0].reason or 'no fitness'}"
            self.archive.transition(cid, Status.FAILED, reason, stage=stage)
            if cid in self.baseline_ids:
                self._check_baselines()
            return
        if stage == FULL and self._races(cid) and self._next_rung(cid):
            return
        if stage == SCREEN and not self._promoted(cid):
            self.archive.transition(cid, Status.EVALUATED, "screened; not in the top fraction", stage=stage)
        elif stage == SCREEN:
            self._enter_stage(cid, FULL)
        elif stage == FULL and self.config.eval.reeval_seeds > 0 and self._may_be_best(cid):
            self._enter_stage(cid, REEVAL)
        elif stage == REEVAL and heldout_instances(self.config) and self._may_be_best(cid):
            self._enter_stage(cid, HELDOUT)
        elif stage == HELDOUT:
            self._finish_heldout(cid)
        else:
            self.archive.transition(cid, Status.EVALUATED, stage=stage)

    def _next_rung(self, cid: int) -> bool:
        """Racing after a rung of full seeds: True when it decided (stopped the proposal or queued the next
        rung); False when every rung is done and the usual decisions follow (`discovery.racing`)."""
        best = self.best()
        n = self.rung.get(cid, self.config.eval.seeds)
        verdict = racing.race(self.archive, self.config, cid, n, self._dpo_id(), best.id if best else None)
        if verdict.action == racing.STOP:
            self.archive.transition(cid, Status.EVALUATED, verdict.reason, stage=FULL)
            self._log(f"#{cid} {verdict.reason}")
        elif verdict.action == racing.MORE:
            self.rung[cid] = racing.next_rung(n, self.config.eval.racing_first_seeds, self.config.eval.seeds)
            self._enter_stage(cid, FULL)
        return verdict.action != racing.DONE

    def _finish_heldout(self, cid: int) -> None:
        """Called best only after beating or tying DPO on every held-out instance; else back to `reeval`."""
        verdict = racing.heldout(self.archive, self.config, cid, self._dpo_id(), heldout_instances(self.config))
        stage = HELDOUT if verdict.action == racing.DONE else REEVAL
        self.archive.transition(cid, Status.EVALUATED, verdict.reason, stage=stage)
        self._log(f"#{cid} {verdict.reason}")

    def _check_baselines(self) -> None:
        """Every baseline failed: the harness is broken (judge, data, limits), not the losses; stop with an error."""
        baselines = [self.archive.candidate(b) for b in sorted(self.baseline_ids)]
        if not baselines or any(b.status != Status.FAILED for b in baselines):
            return
        first = baselines[0]
        reason = " ".join((first.reason or "no fitness").split())[:300]
        self.error = f"every baseline failed ({len(baselines)}); first: {first.name}: {reason}"
        self.stop_reason = self.stop_reason or self.error
        self.pending.clear()
        self.archive.log_event("error", self.error)
        self._log(self.error)

    def _promoted(self, cid: int) -> bool:
        """In the top `eval.promote_fraction` of everything screened so far (baselines included)."""
        by_cand: dict[int, list[float]] = {}
        for e in self.archive.evaluations(fidelity=SCREEN):
            if e.result.ok and e.result.fitness is not None:
                by_cand.setdefault(e.candidate_id, []).append(e.result.fitness)
        means = {k: sum(v) / len(v) for k, v in by_cand.items()}
        if cid not in means:
            return False
        rank = sorted(means.values(), reverse=True).index(means[cid])
        return rank < max(1, math.ceil(self.config.eval.promote_fraction * len(means)))

    def _may_be_best(self, cid: int) -> bool:
        return ranking.worth_confirming(self.archive.summary(cid), self.best())

    def best(self) -> CandidateSummary | None:
        """The best of those that may be called best (`discovery.ranking`): baselines and confirmed proposals."""
        found = ranking.best(self.archive.summaries(status=Status.EVALUATED), self.needs_confirmation)
        return found[0] if found else None

    # ---------------------------------------------------------------- budget, helpers, progress

    def _check_budget(self) -> None:
        if self.stop_reason:
            return
        b = self.config.budget
        usage = self.archive.usage()
        if b.wall_time is not None and time.monotonic() - self.started >= b.wall_time:
            self.stop_reason = f"wall time of {b.wall_time:.0f}s used"
        elif b.max_cost_usd is not None and usage.cost_usd >= b.max_cost_usd:
            self.stop_reason = f"cost cap of ${b.max_cost_usd:.2f} reached"
        elif b.max_tokens is not None and usage.tokens >= b.max_tokens:
            self.stop_reason = f"token cap of {b.max_tokens} reached"
        if self.stop_reason:
            self.archive.log_event("budget", self.stop_reason)
            self._log(self.stop_reason)

    def _beta(self, job: Job) -> float:
        return self.config.train.beta if job.fidelity.beta is None else job.fidelity.beta

    def _job_key(self, job: Job) -> tuple:
        return (job.candidate_id, *self._key(job.seed, job.fidelity.name, self._beta(job)))

    def _key(self, seed: int, fidelity: str, beta: float | None) -> tuple:
        beta = self.config.train.beta if beta is None else beta
        return (int(seed), fidelity, round(float(beta), 9))

    def _code(self, cid: int) -> str:
        return self.archive.candidate(cid).code

    def _log(self, message: str) -> None:
        log.info(message)
        if self.observer is not None:
            self.observer.log(message)

    def snapshot(self) -> Snapshot:
        in_flight = []
        for cid, left in self.remaining.items():
            c = self.archive.candidate(cid)
            total = self.stage_total.get(cid, 0)
            in_flight.append((cid, c.name, self.archive.stage(cid), total - len(left), total))
        base_done = sum(1 for b in self.baseline_ids if b not in self.remaining)
        return Snapshot(
            phase="baselines" if base_done < len(self.baseline_ids) else ("stopping" if self.stop_reason
                                                                            else "discovery"),
            elapsed=time.monotonic() - self.started, eta=self._eta(), baselines_done=base_done,
            baselines_total=len(self.baseline_ids), generation=self.archive.proposal_count(),
            proposing=len(self.proposing), in_flight=in_flight, best=self.best(),
            dpo=self.archive.baseline("dpo"), counts=self.archive.status_counts(), usage=self.archive.usage(),
            stop_reason=self.stop_reason)

    def _eta(self) -> float | None:
        elapsed = time.monotonic() - self.started
        wall = self.config.budget.wall_time
        left_wall = max(0.0, wall - elapsed) if wall is not None else None
        done = self.archive.proposal_count()
        if done:
            per = elapsed / done
            left = per * max(0, self.config.budget.proposals - done)
            return left if left_wall is None else min(left, left_wall)
        return left_wall

    def _notify(self) -> None:
        if self.observer is not None:
            self.observer.update(self.snapshot())

    def _result(self, reason: str) -> LoopResult:
        unfinished = [c.id for c in self.archive.candidates() if c.status in ACTIVE]
        return LoopResult(stop_reason=reason, best=self.best(), dpo=self.archive.baseline("dpo"),
                          counts=self.archive.status_counts(), usage=self.archive.usage(),
                          elapsed=time.monotonic() - self.started, unfinished=unfinished, error=self.error)


def in_daemon_thread(fn: Callable, *args) -> Future:
    """Run fn(*args) in a daemon thread: an interrupted run exits at once instead of waiting for an LLM reply."""
    future: Future = Future()

    def target() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name="propose", daemon=True).start()
    return future
