"""The local executor: a pool of the sandbox's isolated workers on this machine."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.executors.base import PooledExecutor, Slot
from discovery.executors.checkpoints import CheckpointKeeper
from discovery.executors.isolated import IsolatedEvaluator, checkpoint_root
from discovery.executors.layout import Layout


class RunnerSlot(Slot):
    """One warm isolated worker pinned to `gpu` (its ranks' CUDA_VISIBLE_DEVICES, e.g. "0,1"), with its scorer.

    The server is bound to the calling thread's life (bubblewrap's --die-with-parent): create it from a thread
    that lives as long as the worker.
    """

    def __init__(self, config: RunConfig, threads: int, gpu: str | None, keeper: CheckpointKeeper | None = None):
        self.config = config
        self.evaluator = IsolatedEvaluator(config, threads, gpu, keeper=keeper)
        self.runner = self.evaluator.runner

    def evaluate(self, payload: dict[str, Any]) -> EvalResult:
        return self.evaluator.evaluate(payload)

    def close(self) -> None:
        self.evaluator.close()


class LocalExecutor(PooledExecutor):
    """`executor.name = local`: `layout.workers` isolated workers with their threads and GPU."""

    def __init__(self, config: RunConfig, layout: Layout):
        # Start the workers side by side (each loads the task's shared state once), from threads that live
        # until close(): a worker's sandbox server dies with the thread that started it.
        self._starter = ThreadPoolExecutor(max_workers=layout.workers, thread_name_prefix="worker-start")
        keeper = CheckpointKeeper(checkpoint_root(config), config.executor.keep_checkpoints)  # one for all workers
        slots = list(self._starter.map(
            lambda i: RunnerSlot(config, layout.threads_per_worker, layout.gpu_of(i), keeper), range(layout.workers)))
        super().__init__(config, layout, slots)

    def close(self) -> None:
        super().close()
        self._starter.shutdown(wait=False)
