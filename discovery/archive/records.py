"""Typed records the archive returns (besides `Candidate` and `EvalResult` from discovery.candidate)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from discovery.candidate import Candidate, EvalResult, Fitness


@dataclass(frozen=True)
class RunInfo:
    """What the archive knows about the run that wrote it."""

    created_at: float
    config: dict[str, Any]
    versions: dict[str, str]  # python, torch, trl, transformers, discovery
    host: str
    git_revision: str | None
    task_name: str
    task_cache_key: str | None
    ended_at: float | None
    end_reason: str
    schema_version: int


@dataclass(frozen=True)
class Evaluation:
    """One stored evaluation: an `EvalResult` and the candidate it belongs to."""

    id: int
    candidate_id: int
    created_at: float
    result: EvalResult


@dataclass(frozen=True)
class LLMCallRecord:
    """One stored LLM call (the proposer's `LLMCall` plus where it landed)."""

    id: int
    candidate_id: int | None
    created_at: float
    model: str
    prompt_hash: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float
    verdict: str
    reply: str


@dataclass(frozen=True)
class Event:
    id: int
    t: float
    kind: str
    candidate_id: int | None
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class CandidateSummary:
    """A candidate with its fitness at the highest fidelity it reached (ranked by `discovery.ranking`)."""

    candidate: Candidate
    stage: str  # "" | "screen" | "full" | "reeval" | "done"
    fidelity: str | None  # the fidelity `fitness` is measured at ("full" beats "screen"); None = unscored
    fitness: Fitness | None
    n_failed: int = 0  # evaluations that did not produce a fitness

    @property
    def lcb(self) -> float:
        """Lower 95% confidence bound of the fitness (higher is better); -inf when unknown or n = 1."""
        if self.fitness is None or math.isnan(self.fitness.ci_low):
            return -math.inf
        return self.fitness.ci_low

    @property
    def id(self) -> int:
        assert self.candidate.id is not None
        return self.candidate.id

    @property
    def mean(self) -> float | None:
        return self.fitness.mean if self.fitness is not None else None

    @property
    def status(self) -> str:
        return str(self.candidate.status)

    @property
    def is_baseline(self) -> bool:
        return self.candidate.is_baseline


@dataclass(frozen=True)
class CandidateDetail:
    """Everything about one candidate: evaluations, LLM calls and lineage."""

    summary: CandidateSummary
    evaluations: list[Evaluation]
    llm_calls: list[LLMCallRecord]
    parents: list[Candidate]
    ancestors: list[Candidate]  # parents, their parents, ... (breadth-first, each once)
    children: list[Candidate]
    duplicates: list[Candidate]  # later proposals recorded as duplicates of this one
    events: list[Event] = field(default_factory=list)

    @property
    def candidate(self) -> Candidate:
        return self.summary.candidate


@dataclass(frozen=True)
class Usage:
    """LLM usage totals over the run."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
