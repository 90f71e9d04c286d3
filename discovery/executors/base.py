"""The executor interface and the pooled implementation shared by the local and Ray executors.

An executor evaluates (candidate, seed, fidelity) jobs on isolated workers and hands back futures.
A pool of `slots` (one isolated worker each) is fed by as many threads; a slot serves one job at a time.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.executors.layout import Layout
from discovery.inner_loop.task import Fidelity

EVALUATE_JOB = "discovery.inner_loop.worker:evaluate_job"
SETUP_JOB = "discovery.inner_loop.worker:setup"


class Executor(ABC):
    """Evaluates candidate code on isolated workers."""

    layout: Layout

    @abstractmethod
    def submit(self, candidate_id: int, code: str, seed: int, fidelity: Fidelity) -> Future[EvalResult]:
        """Queue one evaluation; the future never raises for a bad candidate (it yields ok=False)."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    def workers(self) -> int:
        return self.layout.workers

    def describe(self) -> str:
        return f"{type(self).__name__.removesuffix('Executor').lower()}: {self.layout.describe()}"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Slot(ABC):
    """One isolated worker that evaluates one job at a time."""

    @abstractmethod
    def evaluate(self, payload: dict[str, Any]) -> EvalResult: ...

    @abstractmethod
    def close(self) -> None: ...


def job_payload(config: RunConfig, code: str, seed: int, fidelity: Fidelity) -> dict[str, Any]:
    return {"config": config.to_dict(), "code": code, "seed": int(seed), "fidelity": dataclasses.asdict(fidelity)}


def result_of(payload: dict[str, Any], ok: bool, value: Any, kind: str, error: str,
              seconds: float, isolation: tuple[str, ...] = ()) -> EvalResult:
    """An EvalResult from a worker's reply; a crash, timeout or exception becomes ok=False with a reason."""
    fidelity = payload["fidelity"]
    if ok and isinstance(value, dict):
        result = EvalResult.from_dict(value)
        return result if result.isolation else result.with_isolation(isolation)
    reason = f"{kind}: {error}".strip(": ") if error else kind
    return EvalResult.failure(payload["seed"], fidelity["name"], fidelity.get("beta"), reason, seconds=seconds,
                              isolation=tuple(isolation))


class PooledExecutor(Executor):
    """Runs jobs on a fixed set of slots, one thread per slot."""

    def __init__(self, config: RunConfig, layout: Layout, slots: list[Slot]):
        self.config = config
        self.layout = layout
        self._slots: queue.Queue[Slot] = queue.Queue()
        self._all = list(slots)
        for slot in slots:
            self._slots.put(slot)
        self._threads = ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="eval")
        self._closed = threading.Event()

    def submit(self, candidate_id: int, code: str, seed: int, fidelity: Fidelity) -> Future[EvalResult]:
        payload = job_payload(self.config, code, seed, fidelity)
        payload["candidate_id"] = candidate_id
        return self._threads.submit(self._run, payload)

    def _run(self, payload: dict[str, Any]) -> EvalResult:
        slot = self._slots.get()
        try:
            return slot.evaluate(payload)
        finally:
            self._slots.put(slot)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._threads.shutdown(wait=False, cancel_futures=True)
        for slot in self._all:
            slot.close()
