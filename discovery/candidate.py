"""The one small typed record that flows proposer -> sandbox -> inner_loop -> archive -> proposer."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from discovery.stats import Fitness  # noqa: F401  (re-exported: the record lives with its statistics)


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        """The one conversion from a dict (a worker's reply, the baseline cache, JSON): unknown keys are
        dropped, `isolation` becomes a tuple."""
        known = {f.name for f in fields(cls)}
        result = cls(**{k: v for k, v in data.items() if k in known})
        result.isolation = tuple(result.isolation or ())
        return result
