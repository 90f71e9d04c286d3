"""Flat, JSON-ready views of an archive: one row per candidate, per-beta results, metric lookups.

Everything here reads the archive's typed API (never SQL) and returns plain data that the table,
the JSONL export, `archive show/diff` and the HTML report share.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from discovery import ranking
from discovery.archive import Archive, CandidateSummary, Evaluation, LLMCallRecord
from discovery.stats import fitness_of, fitness_text

# Metric names differ per task; the first present wins.
KL_KEYS = ("kl", "eval/kl", "kl_to_reference")
HELDOUT_KEYS = ("heldout_accuracy", "heldout/accuracy")


@dataclass
class CandidateRow:
    """One candidate as a flat record (the archive table, one JSONL line, one report table row)."""

    id: int
    name: str
    generation: int
    status: str
    reason: str
    origin: str
    baseline: bool
    stage: str
    fidelity: str | None
    fitness: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    lcb: float | None
    kl: float | None
    heldout_accuracy: float | None
    parents: list[int]
    duplicate_of: int | None
    proposer: str
    model: str
    llm_calls: int
    tokens: int
    cost_usd: float
    fingerprint: str | None
    sympy: str | None
    n_failed: int

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}

    @property
    def mean(self) -> float | None:  # what `discovery.ranking` reads
        return self.fitness

    @property
    def is_baseline(self) -> bool:
        return self.baseline


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def jsonable(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy / torch scalars
        value = value.item()
    return _finite_or_none(value)


def metric(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def calls_by_candidate(calls: list[LLMCallRecord]) -> dict[int, list[LLMCallRecord]]:
    out: dict[int, list[LLMCallRecord]] = defaultdict(list)
    for call in calls:
        if call.candidate_id is not None:
            out[call.candidate_id].append(call)
    return out


def row_of(summary: CandidateSummary, calls: list[LLMCallRecord]) -> CandidateRow:
    c, f = summary.candidate, summary.fitness
    return CandidateRow(
        id=summary.id, name=c.name, generation=c.generation, status=str(c.status), reason=c.reason,
        origin=str(c.origin), baseline=c.is_baseline, stage=summary.stage, fidelity=summary.fidelity,
        fitness=f.mean if f else None, ci_low=f.ci_low if f else None, ci_high=f.ci_high if f else None,
        n=f.n if f else 0, lcb=summary.lcb if f else None,
        kl=metric(c.metrics, KL_KEYS), heldout_accuracy=metric(c.metrics, HELDOUT_KEYS),
        parents=list(c.parent_ids), duplicate_of=c.duplicate_of, proposer=c.proposer, model=c.model,
        llm_calls=len(calls), tokens=sum(x.prompt_tokens + x.completion_tokens for x in calls),
        cost_usd=sum(x.cost_usd for x in calls), fingerprint=c.fingerprint, sympy=c.sympy,
        n_failed=summary.n_failed,
    )


def candidate_rows(archive: Archive, summaries: list[CandidateSummary] | None = None) -> list[CandidateRow]:
    """All candidates in proposal (id) order (`summaries`: `archive.summaries()`, if already read)."""
    calls = calls_by_candidate(archive.llm_calls())
    return [row_of(s, calls.get(s.id, [])) for s in (archive.summaries() if summaries is None else summaries)]


def sort_rows(rows: list[CandidateRow], key: str, needs_reeval: bool = True) -> list[CandidateRow]:
    """`fitness`: `ranking.order` (those that may be called best first, then by fidelity and lower
    confidence bound; unscored last); `time`: proposal order."""
    if key == "time":
        return sorted(rows, key=lambda r: r.id)
    return ranking.order(rows, needs_reeval)


@dataclass
class GroupResult:
    """Fitness of one (fidelity, beta) group of a candidate's evaluations, with mean metrics."""

    fidelity: str
    beta: float | None
    seeds: list[int]
    fitness: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    failed: int
    kl: float | None
    heldout_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}


def per_beta(evaluations: list[Evaluation], default_beta: float | None = None) -> list[GroupResult]:
    """Evaluations grouped by fidelity and beta (a missing beta is the run's train beta)."""
    groups: dict[tuple[str, float | None], list[Evaluation]] = defaultdict(list)
    for e in evaluations:
        beta = e.result.beta if e.result.beta is not None else default_beta
        groups[(e.result.fidelity, beta)].append(e)
    out = []
    for (fidelity, beta), evals in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        ok = [e for e in evals if e.result.ok and e.result.fitness is not None and math.isfinite(e.result.fitness)]
        fit = fitness_of([e.result.fitness for e in ok]) if ok else None
        out.append(GroupResult(
            fidelity=fidelity, beta=beta, seeds=[e.result.seed for e in evals],
            fitness=fit.mean if fit else None, ci_low=fit.ci_low if fit else None,
            ci_high=fit.ci_high if fit else None, n=len(ok), failed=len(evals) - len(ok),
            kl=_mean(metric(e.result.metrics, KL_KEYS) for e in ok),
            heldout_accuracy=_mean(metric(e.result.metrics, HELDOUT_KEYS) for e in ok)))
    return out


def _mean(values) -> float | None:
    found = [v for v in values if v is not None and math.isfinite(v)]
    return sum(found) / len(found) if found else None


def train_beta(config: dict[str, Any]) -> float:
    """The run's training beta from its stored config (0.1, TRL's default, when absent)."""
    try:
        return float(config.get("train", {}).get("beta", 0.1))
    except (TypeError, ValueError, AttributeError):
        return 0.1


def format_fitness(row_or_group) -> str:
    if row_or_group.fitness is None:
        return "-"
    return fitness_text(row_or_group.fitness, row_or_group.ci_low, row_or_group.ci_high, row_or_group.n)


def format_number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
