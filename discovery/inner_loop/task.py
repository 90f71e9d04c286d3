"""The task interface: what every scorer of candidate losses implements.

A task is built from the run config, `prepare`s once (shared, cached state: data, SFT model,
reference log-probs), then `evaluate`s one candidate's code at one seed and fidelity. `evaluate`
runs candidate code, so callers run it inside the sandbox's isolated process (see executors).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str  # one paragraph for the proposer's system prompt
    fitness_description: str  # what the fitness number means
    beta: float
    cost_class: str  # "cheap" (seconds, CPU) | "moderate" (minutes) | "expensive" (GPU hours, paid judge)


ProgressFn = Callable[[str, float], None]  # (stage, fraction done 0..1)


class Task(ABC):
    """Base class of tasks. Subclasses are registered in TASKS by name."""

    name: str = ""

    def __init__(self, config: RunConfig):
        self.config = config

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
