"""The task interface: what every scorer of candidate losses implements.

A task is built from the run config, `prepare`s once (shared, cached state: data, SFT model,
reference log-probs), then evaluates one candidate's code at one seed and fidelity in two halves:

- `train_checkpoint(code, seed, fidelity, out_dir) -> TrainedCheckpoint` runs candidate code: callers run it
  inside the sandbox's isolated workers (no secrets, no network, writes only under `out_dir`);
- `score_checkpoint(checkpoint, code, fidelity) -> EvalResult` runs no candidate code. When the task's
  `scores_trusted` is true (MT-Bench with a keyed judge, a reward model, the held-out screen on a saved
  checkpoint) it runs in the trusted process, which holds the judge's key and network and reads the checkpoint.

`evaluate` (both halves in one process) is what tasks with `scores_trusted = False` run in the worker: their
scoring is pure computation on the task's own in-memory model (the synthetic task).
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.errors import DiscoveryError


@dataclass(frozen=True)
class Fidelity:
    """How hard to look at a candidate: a cheap screen or the full evaluation."""

    name: str = "full"  # "screen" | "full"
    steps_fraction: float = 1.0  # fraction of train.max_steps
    beta: float | None = None  # None = the task's train.beta
    instance: int | None = None  # another task instance (task.options.seed) for held-out confirmation; None = the run's


CHECKPOINT_NAME = "checkpoint"  # the folder under a training job's out_dir that holds the trained weights


@dataclass(frozen=True)
class TrainedCheckpoint:
    """What an isolated training run leaves for the trusted scorer: weights on disk and training metrics."""

    seed: int
    fidelity: str
    beta: float | None
    path: str | None = None  # folder with full weights or a LoRA adapter (None when training failed)
    kind: str = "full"  # "full" | "lora"
    steps: int = 0
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)
    ok: bool = True
    reason: str = ""


@dataclass(frozen=True)
class TrainResources:
    """Limits of one training job, chosen by the task (validation keeps the sandbox's tight limits)."""

    wall_seconds: float
    memory_mb: int  # address space; <= 0: no cap (CUDA maps far more virtual memory than it uses)
    file_mb: int  # largest file the job may write (a checkpoint shard)
    open_files: int


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str  # one paragraph for the proposer's system prompt
    fitness_description: str  # what the fitness number means
    beta: float
    cost_class: str  # "cheap" (seconds, CPU) | "moderate" (minutes) | "expensive" (GPU hours, paid judge)
    betas: tuple[float, ...] = ()  # eval.betas: the grid a loss trains on, scored at its best (empty: beta only)


ProgressFn = Callable[[str, float], None]  # (stage, fraction done 0..1)


class Task(ABC):
    """Base class of tasks. Subclasses are registered in TASKS by name."""

    name: str = ""
    scores_trusted: bool = False  # True: the worker only trains; score_checkpoint runs in the trusted process
    score_device: str | None = None  # where score_checkpoint puts the model (None: CUDA when present, else CPU)

    def __init__(self, config: RunConfig):
        self.config = config

    def train_resources(self) -> TrainResources:
        """This task's training limits: `sandbox.train_*` where set, else the task's defaults."""
        return train_resources(self.config, TrainResources(600.0, self.config.sandbox.memory_mb,
                                                           self.config.sandbox.max_file_mb,
                                                           self.config.sandbox.max_open_files))

    def score_key(self) -> dict:
        """What determines a score beyond cache_key and train.* (judge, questions): cached baselines match it too."""
        return {}

    def train_checkpoint(self, code: str, seed: int, fidelity: Fidelity, out_dir: str) -> TrainedCheckpoint:
        """Train one candidate and save it under `out_dir`. Runs candidate code (isolated worker only)."""
        raise NotImplementedError(f"task {self.name} trains and scores in one step (evaluate)")

    def score_checkpoint(self, checkpoint: TrainedCheckpoint, code: str, fidelity: Fidelity) -> EvalResult:
        """Score a saved checkpoint. Runs no candidate code; reads the task's caches and, maybe, a judge."""
        raise NotImplementedError(f"task {self.name} trains and scores in one step (evaluate)")

    @abstractmethod
    def info(self) -> TaskInfo: ...

    @abstractmethod
    def cache_key(self) -> str:
        """Identifies everything `prepare` builds; baselines evaluated under one key are reusable."""

    @abstractmethod
    def prepare(self, progress: ProgressFn | None = None) -> None:
        """Build and cache what every candidate shares. Idempotent and cheap when cached."""

    @abstractmethod
    def evaluate(self, code: str, seed: int, fidelity: Fidelity = Fidelity()) -> EvalResult:
        """Train one candidate from the shared starting point and score it. Runs candidate code."""


def train_resources(config: RunConfig, default: TrainResources) -> TrainResources:
    """`default` with the `sandbox.train_*` settings that are set on top."""
    s = config.sandbox
    pick = {"wall_seconds": s.train_timeout, "memory_mb": s.train_memory_mb, "file_mb": s.train_file_mb,
            "open_files": s.train_open_files}
    return dataclasses.replace(default, **{k: v for k, v in pick.items() if v is not None})


# name -> "module:Class"; imported lazily so that `discovery --help` stays fast.
TASKS: dict[str, str] = {
    "synthetic": "discovery.inner_loop.synthetic:SyntheticTask",
    "hf_dpo": "discovery.inner_loop.hf_dpo:HFDPOTask",
    "imdb": "discovery.inner_loop.imdb:ImdbTask",
}


@contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """Hold a task cache folder's cross-process lock: runs preparing the same cache wait instead of colliding."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        yield


def get_task(config: RunConfig) -> Task:
    name = config.task.name
    if name not in TASKS:
        raise DiscoveryError(f"unknown task '{name}'; available: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)(config)


def evaluate_library_loss(task: Task, name: str | None, seed: int, beta: float) -> EvalResult:
    """A library loss (None: the untrained reference) trained and scored at `beta`, in this process: library
    code is ours (trusted), so it runs here rather than in the sandbox's isolated child (tests, bench/)."""
    from discovery import library
    from discovery.sandbox.loader import load_loss

    fidelity = Fidelity(beta=beta)  # this beta instead of train.beta (the config is frozen)
    if name is None:
        return task.evaluate_reference(seed, fidelity)
    return task.evaluate_fn(load_loss(library.get(name).code), seed, fidelity)
