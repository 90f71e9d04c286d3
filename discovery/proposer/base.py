"""The proposer interface and the frozen records it hands back: Proposal, Attempt, LLMCall."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from discovery.candidate import Candidate, Status
from discovery.errors import DiscoveryError
from discovery.inner_loop.task import TaskInfo
from discovery.proposer.bandit import Outcome
from discovery.proposer.novelty import KnownLoss


class ValidationReportLike(Protocol):
    """What the proposer and the loop read from `discovery.sandbox.ValidationReport`."""

    @property
    def valid(self) -> bool: ...
    @property
    def fingerprint(self) -> str | None: ...
    @property
    def probe_values(self) -> list[float]: ...
    @property
    def sympy(self) -> str | None: ...
    @property
    def latex(self) -> str | None: ...
    @property
    def diagnostics(self) -> Mapping[str, Any]: ...

    def summary(self) -> str: ...


Validator = Callable[[str], ValidationReportLike]


class ProposerError(DiscoveryError):
    """The proposer cannot go on (endpoint unreachable after retries, no model, ...)."""


def attach_paid_calls(exc: BaseException, calls: list[LLMCall]) -> None:
    """Mark a failed `propose` with the calls it had already paid for, so the caller can store them."""
    exc.paid_calls = tuple(calls)  # type: ignore[attr-defined]


def paid_calls(exc: BaseException) -> list[LLMCall]:
    """The LLM calls a failed `propose` had already paid for (empty when it bought none)."""
    return list(getattr(exc, "paid_calls", ()))


@dataclass(frozen=True)
class ProposalContext:
    """What the archive knows, already ranked and bounded by the caller (see proposer.context); frozen (the loop
    adds what it knows with `dataclasses.replace`)."""

    task: TaskInfo
    top: list[Candidate] = field(default_factory=list)
    recent: list[Candidate] = field(default_factory=list)
    failures: list[Candidate] = field(default_factory=list)
    baselines: list[Candidate] = field(default_factory=list)
    generation: int = 0
    parents: list[Candidate] = field(default_factory=list)
    # every stored loss a proposal must differ from (see proposer.novelty); empty = no novelty check
    known_losses: list[KnownLoss] = field(default_factory=list)
    duplicate_distance: float = 0.0
    # what each stored LLM proposal earned, for the bandit over proposer.models (see proposer.bandit)
    outcomes: tuple[Outcome, ...] = ()
    # candidate id -> [(beta, mean fitness, mean KL)] where a beta sweep was measured (parents, DPO)
    frontiers: dict[int, list[tuple[float, float, float | None]]] = field(default_factory=dict)

    def known(self) -> list[Candidate]:
        return [*self.top, *self.recent, *self.failures, *self.baselines, *self.parents]


@dataclass(frozen=True)
class LLMCall:
    """One completed chat-completion request, for accounting and the archive (frozen: a paid call is a fact)."""

    model: str
    prompt_hash: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float
    verdict: str = ""  # "valid" | "invalid" | "duplicate" | "unparseable" | "truncated"
    reply: str = ""
    finish_reason: str = ""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Attempt:
    """One try at producing a valid loss: the first proposal or a fix-up (frozen)."""

    index: int  # 0 = proposal, 1.. = fix attempts
    kind: str  # "propose" | "fix" | "replay" | "symbolic"
    prompt_hash: str
    reply: str
    verdict: str  # "valid" | "invalid" | "duplicate" | "unparseable" | "truncated"
    reason: str = ""
    name: str = ""
    code: str = ""
    thought: str = ""
    call: LLMCall | None = None
    fingerprint: str | None = None
    edits: tuple[str, ...] = ()  # mechanical repairs applied before validation

    def __post_init__(self) -> None:
        object.__setattr__(self, "edits", tuple(self.edits))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "edits": list(self.edits)}


@dataclass(frozen=True)
class Proposal:
    """What a proposer hands back (frozen): the candidate (status PROPOSED when it passed the validator, INVALID
    with a reason otherwise), the calls that bought it, every attempt, and the validator's report."""

    candidate: Candidate
    calls: tuple[LLMCall, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    report: ValidationReportLike | None = None  # the validator's report of the final code, when there was code

    def __post_init__(self) -> None:  # a proposer may pass the lists it built
        object.__setattr__(self, "calls", tuple(self.calls))
        object.__setattr__(self, "attempts", tuple(self.attempts))

    @property
    def probe_values(self) -> list[float]:
        return list(self.report.probe_values or ()) if self.report is not None else []

    @property
    def valid(self) -> bool:
        return self.report is not None and bool(self.report.valid)


# The Candidate fields a proposer owns: the proposal and its verdict (PROPOSED or INVALID, and why). The
# validation facts come from the report; id, duplicate_of, later statuses, fitness and metrics belong to the
# loop and the archive (docs/architecture.md, "Records").
PROPOSAL_FIELDS = frozenset({"name", "code", "thought", "origin", "parent_ids", "generation", "proposer", "model",
                             "status", "reason"})


def candidate_from(report: ValidationReportLike | None, **fields: Any) -> Candidate:
    """The one way a proposal becomes a `Candidate`: its fields plus what the validator learnt about the code
    (fingerprint, formula, LaTeX, diagnostics: `Candidate.with_validation`); nothing learnt when there was no
    code to check. A field the proposer does not own is refused."""
    if foreign := sorted(set(fields) - PROPOSAL_FIELDS):
        raise TypeError(f"a proposal does not set {foreign}: the validator, the loop or the archive does")
    if fields.get("status", Status.PROPOSED) not in (Status.PROPOSED, Status.INVALID):
        raise ValueError(f"a proposal is proposed or invalid, not {fields['status']}")
    candidate = Candidate(**fields)
    return candidate.with_validation(report) if report is not None else candidate


def prompt_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


class Proposer(ABC):
    """Turns a ProposalContext into one validated (or rejected-with-reason) candidate."""

    name: str = ""

    @abstractmethod
    def propose(self, context: ProposalContext) -> Proposal: ...

    def stop_reason(self) -> str | None:
        """Why no new proposal should be started (budget cap reached, replay list done), or None."""
        return None

    def count_spent(self, cost_usd: float, tokens: int) -> None:
        """A resumed run tells the proposer what earlier sessions spent, so its budget caps stay exact."""
        return None

    def resume(self, stored: list[Candidate]) -> None:
        """A resumed run tells the proposer what the archive already holds from it (before any propose).

        Stateless proposers (the LLM's context comes from the archive) need nothing; a list-driven one
        (replay) continues after what was stored instead of proposing it again.
        """
        return None

    def close(self) -> None:
        """Release resources (the embedded llama.cpp server)."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
