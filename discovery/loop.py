"""The discovery loop: wires selection -> proposer (with sandbox fix-up) -> dedup -> executor -> archive.

One thread owns the archive and all decisions; proposals run in daemon threads (LLM calls block, and a
Ctrl-C must not wait for one to return) and evaluations in the executor's isolated workers. Every
decision is written to the archive before the next one, so a resumed run (`Archive` + this loop on the same run dir) continues where it stopped:
stored proposals are not bought again, evaluations that were in flight are queued again, finished
ones are kept (the multi-fidelity plan is recomputed and only missing jobs run).

By job: this module drives the rounds, starts and stores proposals, seeds the baselines and re-queues on
resume; `loop_stages` plans, dispatches and collects each candidate's jobs and makes the promotion /
re-evaluation / confirmation decisions; `loop_budget` says why the run stops; `loop_progress` holds what
it reports (`Snapshot`, `LoopResult`). Who is best: `discovery.ranking`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace

from discovery import library, ranking
from discovery.archive import Archive, CandidateSummary
from discovery.archive.baseline_cache import BaselineCache
from discovery.candidate import Candidate, Origin, Status
from discovery.config import RunConfig
from discovery.executors import Executor
from discovery.executors.plan import first_stage
from discovery.inner_loop.task import TaskInfo
from discovery.loop_budget import budget_stop, charged_wall_time, drops_pending, proposal_budget_used
from discovery.loop_progress import LoopResult, Snapshot, duration, eta, phase
from discovery.loop_stages import BASELINE, Stages
from discovery.proposer.base import Proposal, Proposer, paid_calls
from discovery.proposer.novelty import KnownLoss, duplicate_of
from discovery.selection import SelectionStrategy

__all__ = ["DiscoveryLoop", "LoopResult", "Snapshot", "in_daemon_thread"]
log = logging.getLogger("discovery.loop")
ACTIVE = (Status.QUEUED, Status.TRAINING)


class DiscoveryLoop:
    def __init__(self, config: RunConfig, archive: Archive, task: TaskInfo, proposer: Proposer,
                 executor: Executor, selection: SelectionStrategy, cache: BaselineCache | None = None,
                 observer=None, validator: Callable | None = None, clock: Callable[[], float] = time.monotonic):
        self.config, self.archive, self.task, self.proposer = config, archive, task, proposer
        self.executor, self.selection, self.cache, self.observer = executor, selection, cache, observer
        self.validator = validator  # fingerprints the baselines, so near-copies of them count as duplicates
        self.stages = Stages(config, archive, executor, cache, best=self.best, log=self._log,
                             on_error=self._stop_with_error, clock=clock)
        self.proposing: dict[Future, int] = {}
        self.needs_confirmation = ranking.reeval_required(config.to_dict())  # what "may be called best" needs
        self.stop_reason = ""
        self.error = ""
        self.clock = clock
        self.started = clock()
        self._reference_ready = False

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
            self.stages.dispatch(drop_pending=drops_pending(self.stop_reason))
            if not (self.stages.busy() or self.proposing) and self._proposal_blocker() is not None:
                break
            self._wait()
            self._notify()
        reason = self.stop_reason or self._proposal_blocker() or "done"
        self.archive.end_run(reason)
        self._notify()
        return self._result(reason)

    def _wait(self) -> None:
        futures = [*self.stages.running, *self.proposing]
        if not futures:
            return
        done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
        for future in done:
            if future in self.stages.running:
                self.stages.collect(future)
            else:
                self.proposing.pop(future)
                self._proposal_done(future)

    def _check_budget(self) -> None:
        if self.stop_reason:
            return
        reason = budget_stop(self.config.budget, self.archive.usage(), self._charged())
        if reason:
            self.stop_reason = reason
            self.archive.log_event("budget", self.stop_reason)
            self._log(self.stop_reason)

    def _charged(self) -> float:
        """The wall time the budget counts: the baselines' share is not charged (`loop_budget.charged_wall_time`)."""
        return charged_wall_time(self.clock() - self.started, self.stages.baseline_clock.share(self.executor.workers))

    def _stop_with_error(self, error: str) -> None:
        self.error = error
        self.stop_reason = self.stop_reason or self.error
        self.archive.log_event("error", self.error)
        self._log(self.error)

    # ---------------------------------------------------------------- baselines and resume

    def _seed_baselines(self) -> None:
        stored = {c.name: c for c in self.archive.candidates(origin=Origin.LIBRARY)}
        for name in self.config.eval.baselines:
            library.get(name)  # a name the library lacks is an error, on resume too
            if name in stored:
                cid = stored[name].id
            else:
                baseline, probes = self._baseline(name)
                cid = self.archive.add_candidate(baseline, probe_values=probes, stage=BASELINE)
            self.stages.baseline_ids.add(cid)
            if self.archive.candidate(cid).status in ACTIVE:
                self.stages.enter(cid, BASELINE)

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
            if c.status in ACTIVE and c.id not in self.stages.remaining and c.origin != Origin.LIBRARY:
                self.stages.enter(c.id, self.archive.stage(c.id) or first_stage(self.config))
                self._log(f"resume: re-queued #{c.id} {c.name} at stage {self.archive.stage(c.id)}")

    # ---------------------------------------------------------------- proposals

    def _proposal_blocker(self) -> str | None:
        """Why no new proposal may start (`discovery.loop_budget`); None when one may."""
        return (self.stop_reason or self.proposer.stop_reason()
                or proposal_budget_used(self.archive.proposal_count() + len(self.proposing), self.config.budget))

    def _start_proposals(self) -> None:
        if self.stages.reference_busy():
            return  # the first context needs DPO's fitness; the other baselines train behind the proposals
        self._announce_reference()
        free = self.executor.workers - len(self.stages.running)
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
            self._stop_with_error(f"proposer: {exc}")
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
            self.stages.enter(cid, stage)

    def _known_losses(self) -> list[KnownLoss]:
        """Every stored loss a new proposal must differ from (valid, not a duplicate), with its probes."""
        probes = self.archive.all_probe_values()
        return [KnownLoss(c.id, c.name, c.fingerprint, c.code_hash, tuple(probes.get(c.id, ())))
                for c in self.archive.candidates() if c.status not in (Status.DUPLICATE, Status.INVALID)]

    def _announce_reference(self) -> None:
        if not self._reference_ready and self.stages.baseline_ids:
            self._reference_ready = True
            b = self.stages.baseline_progress()
            rest = "; the other baselines train when a worker is free" if b.done < b.total else ""
            self._log(f"baselines: reference ready after {duration(self.clock() - self.started)}: {b.text()}; "
                      f"proposals start{rest}")

    # ---------------------------------------------------------------- who is best, progress

    def best(self) -> CandidateSummary | None:
        """The best of those that may be called best (`discovery.ranking`): baselines and confirmed proposals."""
        found = ranking.best(self.archive.summaries(status=Status.EVALUATED), self.needs_confirmation)
        return found[0] if found else None

    def _log(self, message: str) -> None:
        log.info(message)
        if self.observer is not None:
            self.observer.log(message)

    def snapshot(self) -> Snapshot:
        base_done, base_total = self.stages.baselines_done(), len(self.stages.baseline_ids)
        elapsed, done, jobs = self.clock() - self.started, self.archive.proposal_count(), self.stages.baseline_progress()
        left = eta(self._charged(), done, self.config.budget.proposals, self.config.budget.wall_time)
        return Snapshot(
            phase=phase(self.stages.reference_busy(), self.stop_reason), elapsed=elapsed,
            eta=None if left is None or jobs.left is None else left + jobs.left,
            baselines_done=base_done, baselines_total=base_total, generation=done,
            proposing=len(self.proposing), in_flight=self.stages.in_flight(), best=self.best(),
            dpo=self.archive.baseline("dpo"), counts=self.archive.status_counts(), usage=self.archive.usage(),
            stop_reason=self.stop_reason, baseline_jobs=jobs)

    def _notify(self) -> None:
        if self.observer is not None:
            self.observer.update(self.snapshot())

    def _result(self, reason: str) -> LoopResult:
        unfinished = [c.id for c in self.archive.candidates() if c.status in ACTIVE]
        return LoopResult(stop_reason=reason, best=self.best(), dpo=self.archive.baseline("dpo"),
                          counts=self.archive.status_counts(), usage=self.archive.usage(),
                          elapsed=self.clock() - self.started, unfinished=unfinished, error=self.error,
                          baseline_jobs=self.stages.baseline_progress())


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
