"""The one small typed record that flows proposer -> sandbox -> inner_loop -> archive -> proposer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PROPOSED = "proposed"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    QUEUED = "queued"
    TRAINING = "training"
    EVALUATED = "evaluated"
    FAILED = "failed"


class Origin(StrEnum):
    LIBRARY = "library"  # a reference loss from discovery.library (baseline or published discovery)
    LLM = "llm"
    REPLAY = "replay"
    SYMBOLIC = "symbolic"
    USER = "user"


def code_hash(code: str) -> str:
    """Hash of the source with trailing whitespace normalised (exact-duplicate detection)."""
    norm = "\n".join(line.rstrip() for line in code.strip().splitlines())
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


@dataclass
class Fitness:
    """A fitness estimate: mean with a 95% confidence interval over n seeds."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    values: tuple[float, ...] = ()

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    @property
    def stderr(self) -> float:
        from discovery.stats import stderr

        return stderr(self.values)

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.half_width:.4f} (n={self.n})"


@dataclass
class Candidate:
    """A candidate loss and everything learnt about it so far."""

    name: str
    code: str
    thought: str = ""
    origin: Origin = Origin.LLM
    id: int | None = None
    parent_ids: tuple[int, ...] = ()
    generation: int = 0
    proposer: str = ""
    model: str = ""
    status: Status = Status.PROPOSED
    reason: str = ""
    fingerprint: str | None = None
    duplicate_of: int | None = None
    sympy: str | None = None
    latex: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    fitness: Fitness | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def code_hash(self) -> str:
        return code_hash(self.code)

    @property
    def is_baseline(self) -> bool:
        return self.origin == Origin.LIBRARY


@dataclass
class EvalResult:
    """One training-and-scoring run of one candidate at one seed, fidelity and beta."""

    seed: int
    fitness: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    fidelity: str = "full"
    beta: float | None = None
    ok: bool = True
    reason: str = ""
    isolation: tuple[str, ...] = ()
