"""The local executor: a pool of the sandbox's isolated workers on this machine."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.executors.base import EVALUATE_JOB, SETUP_JOB, PooledExecutor, Slot, result_of
from discovery.executors.layout import Layout


def train_limits(config: RunConfig):
    """Resource limits of one training job (wall clock from sandbox.train_timeout)."""
    from discovery.sandbox.isolation import Limits

    return Limits.from_config(config.sandbox, training=True)


def start_runner(config: RunConfig, threads: int, gpu: str | None):
    """A warm isolated worker with the task's shared state loaded once (setup), pinned to `gpu`.

    The server is bound to the calling thread's life (bubblewrap's --die-with-parent): call this from
    a thread that lives as long as the worker.
    """
    from discovery.sandbox.isolation import IsolatedRunner

    env = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}  # None: leave the environment as it is
    payload: dict[str, Any] = {"config": config.to_dict(), "threads": threads, "env": env}
    return IsolatedRunner(setup=SETUP_JOB, setup_payload=payload, limits=train_limits(config), threads=threads,
                          env=env)


class RunnerSlot(Slot):
    def __init__(self, config: RunConfig, threads: int, gpu: str | None):
        self.config = config
        self.runner = start_runner(config, threads, gpu)

    def evaluate(self, payload: dict[str, Any]) -> EvalResult:
        job = self.runner.run(EVALUATE_JOB, payload, limits=train_limits(self.config))
        return result_of(payload, job.ok, job.value, job.kind, job.error, job.seconds, tuple(job.isolation))

    def close(self) -> None:
        self.runner.close()


class LocalExecutor(PooledExecutor):
    """`executor.name = local`: `layout.workers` isolated workers with their threads and GPU."""

    def __init__(self, config: RunConfig, layout: Layout):
        # Start the workers side by side (each loads the task's shared state once), from threads that live
        # until close(): a worker's sandbox server dies with the thread that started it.
        self._starter = ThreadPoolExecutor(max_workers=layout.workers, thread_name_prefix="worker-start")
        slots = list(self._starter.map(lambda i: RunnerSlot(config, layout.threads_per_worker, layout.gpu_of(i)),
                                       range(layout.workers)))
        super().__init__(config, layout, slots)

    def close(self) -> None:
        super().close()
        self._starter.shutdown(wait=False)
