"""How many evaluation workers, with how many threads and which GPU each: the executor's layout."""

from __future__ import annotations

import os
from dataclasses import dataclass

from discovery.config import ExecutorConfig
from discovery.errors import ConfigError

MAX_DEFAULT_WORKERS = 8  # beyond this the shared task state in memory costs more than it buys


@dataclass(frozen=True)
class Layout:
    workers: int
    threads_per_worker: int
    gpus: tuple[str, ...] = ()  # per worker, its CUDA_VISIBLE_DEVICES ("0", or "0,1" for 2 ranks); () on CPU

    def gpu_of(self, worker: int) -> str | None:
        return self.gpus[worker] if worker < len(self.gpus) else None

    def describe(self) -> str:
        gpu = f", GPUs {','.join(self.gpus)}" if self.gpus else ""
        return f"{self.workers} worker(s) x {self.threads_per_worker} thread(s){gpu}"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def visible_gpus() -> tuple[str, ...]:
    """CUDA device ids this process may use (honours CUDA_VISIBLE_DEVICES); () without CUDA."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return tuple(d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1")
    try:
        import torch

        return tuple(str(i) for i in range(torch.cuda.device_count())) if torch.cuda.is_available() else ()
    except Exception:
        return ()


def plan_layout(config: ExecutorConfig, cpus: int | None = None, gpus: tuple[str, ...] | None = None) -> Layout:
    """The configured layout, with unset parts filled by the best layout for this machine.

    On CPU the best layout is one single-threaded worker per core: small-model training scales
    better across processes than across threads (bench/executor_throughput.py measures it).
    With GPUs it is one worker per `executor.processes_per_candidate` GPUs (one rank per GPU), the cores
    split between them.
    """
    cpus = cpus or cpu_count()
    gpus = visible_gpus() if gpus is None else gpus
    if config.workers is not None and config.workers < 1:
        raise ConfigError(f"executor.workers must be at least 1, got {config.workers}")
    if config.threads_per_worker is not None and config.threads_per_worker < 1:
        raise ConfigError(f"executor.threads_per_worker must be at least 1, got {config.threads_per_worker}")
    ranks = config.processes_per_candidate
    if ranks < 1:
        raise ConfigError(f"executor.processes_per_candidate must be at least 1, got {ranks}")
    if gpus and ranks > len(gpus):
        raise ConfigError(f"executor.processes_per_candidate={ranks} needs as many GPUs; {len(gpus)} visible")
    if gpus:
        workers = config.workers or max(1, len(gpus) // ranks)
        assigned = tuple(",".join(gpus[(i * ranks + j) % len(gpus)] for j in range(ranks)) for i in range(workers))
    else:
        if config.workers is None and config.threads_per_worker is not None:
            workers = max(1, cpus // config.threads_per_worker)
        else:
            workers = config.workers or max(1, min(cpus, MAX_DEFAULT_WORKERS))
        assigned = ()
    threads = config.threads_per_worker or max(1, cpus // workers)
    return Layout(workers=workers, threads_per_worker=threads, gpus=assigned)
