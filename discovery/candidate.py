"""The frozen records that flow proposer -> sandbox -> inner_loop -> archive -> proposer.

`Candidate` (a loss and what is known about it) and `EvalResult` (one training-and-scoring run) are
frozen: nothing changes a record after it is built; a change of status, validation facts or fitness is a
new record made by one `with_*` method (see docs/architecture.md, "Records").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from discovery.stats import Fitness

if TYPE_CHECKING:  # the validator's report, for the type only (the proposer imports this module)
    from discovery.proposer.base import ValidationReportLike

# What a metrics or diagnostics mapping holds: JSON values (numbers, text, lists and objects of them).
JSONValue = float | int | str | bool | None | list[Any] | dict[str, Any]
Metrics = Mapping[str, JSONValue]


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


@dataclass(frozen=True)
class Candidate:
    """A candidate loss and everything learnt about it so far (frozen: a change is a new record).

    Built in one place per stage: a proposer's `proposer.base.candidate_from` (the proposal and what the
    validator learnt), the loop's `with_status` (queued or duplicate), the archive's `rows.candidate_of`
    (on read) and `with_fitness` (its summaries).
    """

    # the proposal: what a proposer hands back
    name: str
    code: str
    thought: str = ""
    origin: Origin = Origin.LLM
    id: int | None = None
    parent_ids: tuple[int, ...] = ()
    generation: int = 0
    proposer: str = ""
    model: str = ""
    # the lifecycle: where the loop has put it (and, for a duplicate, the original it behaves like)
    status: Status = Status.PROPOSED
    reason: str = ""
    # what the validator learnt about the code
    fingerprint: str | None = None
    duplicate_of: int | None = None
    sympy: str | None = None
    latex: str | None = None
    diagnostics: Metrics = field(default_factory=dict)
    # aggregates the archive computes on read (summaries): fitness at the highest fidelity, mean metrics there
    fitness: Fitness | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def code_hash(self) -> str:
        return code_hash(self.code)

    @property
    def is_baseline(self) -> bool:
        return self.origin == Origin.LIBRARY

    def with_validation(self, report: ValidationReportLike) -> Candidate:
        """This candidate with what the validator learnt about its code (fingerprint, formula, LaTeX,
        diagnostics)."""
        return replace(self, fingerprint=report.fingerprint, sympy=report.sympy, latex=report.latex,
                       diagnostics=dict(report.diagnostics or {}))

    def with_status(self, status: Status, reason: str = "", duplicate_of: int | None = None) -> Candidate:
        """This candidate moved to `status` (with why, and the original it duplicates)."""
        return replace(self, status=status, reason=reason, duplicate_of=duplicate_of)

    def with_fitness(self, fitness: Fitness | None, metrics: Mapping[str, float]) -> Candidate:
        """This candidate with its fitness and mean metrics (the archive's summaries)."""
        return replace(self, fitness=fitness, metrics=dict(metrics))

    def with_id(self, candidate_id: int) -> Candidate:
        """This candidate as stored under `candidate_id`."""
        return replace(self, id=candidate_id)


@dataclass(frozen=True)
class EvalResult:
    """One training-and-scoring run of one candidate at one seed, fidelity and beta (frozen)."""

    seed: int
    fitness: float | None
    metrics: Metrics = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    fidelity: str = "full"
    beta: float | None = None
    ok: bool = True
    reason: str = ""
    isolation: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "isolation", tuple(self.isolation or ()))  # a worker's JSON list, too

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        """The one conversion from a dict (a worker's reply, the baseline cache, JSON): unknown keys are
        dropped, `isolation` becomes a tuple."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def failure(cls, seed: int, fidelity: str, beta: float | None, reason: str, **known: Any) -> EvalResult:
        """The one way a run that did not finish is recorded: no fitness, ok=False, why (at most 2000 chars)."""
        return cls(seed=seed, fitness=None, fidelity=fidelity, beta=beta, ok=False, reason=reason[:2000], **known)

    def with_metrics(self, extra: Metrics) -> EvalResult:
        """This result with more metrics (e.g. where the checkpoint was kept, how long scoring took)."""
        return replace(self, metrics={**self.metrics, **extra})

    def with_isolation(self, isolation: tuple[str, ...]) -> EvalResult:
        """This result with the isolation layers the job ran under."""
        return replace(self, isolation=tuple(isolation))
