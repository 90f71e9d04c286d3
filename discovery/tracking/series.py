"""What the trackers record: run-level series from the loop's `Snapshot`, one row per candidate."""

from __future__ import annotations

import math
from typing import Any

from discovery.archive import Archive, CandidateSummary
from discovery.inspect.views import HELDOUT_KEYS, KL_KEYS, metric

CANDIDATE_COLUMNS = ["id", "name", "status", "reason", "origin", "fitness", "ci_low", "ci_high", "n", "kl",
                     "heldout_accuracy", "parents", "code", "thought"]


def _fitness(prefix: str, s: CandidateSummary | None) -> dict[str, float]:
    if s is None or s.fitness is None:
        return {}
    f = s.fitness
    return {f"{prefix}/fitness": f.mean, f"{prefix}/ci_low": f.ci_low, f"{prefix}/ci_high": f.ci_high,
            f"{prefix}/n": float(f.n)}


def snapshot_scalars(snapshot) -> dict[str, float]:
    """Best so far (by the loop's rule: baselines and confirmed proposals) and DPO with their 95% CI,
    proposals by status, LLM calls / tokens / cost, wall time; non-finite values (a CI at n = 1) left out."""
    values: dict[str, float] = {**_fitness("best", snapshot.best), **_fitness("dpo", snapshot.dpo)}
    for status, n in sorted(snapshot.counts.items()):
        values[f"proposals/{status}"] = float(n)
    values["proposals/stored"] = float(snapshot.generation)
    u = snapshot.usage
    values.update({"llm/calls": float(u.calls), "llm/tokens": float(u.tokens), "llm/cost_usd": float(u.cost_usd),
                   "time/elapsed_s": float(snapshot.elapsed)})
    return {k: v for k, v in values.items() if math.isfinite(v)}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def candidate_table(archive: Archive) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows): every candidate with status, fitness ± CI, KL, accuracy, code, thought, parents."""
    rows = []
    for s in archive.summaries():
        c, f = s.candidate, s.fitness
        rows.append([s.id, c.name, str(c.status), c.reason, str(c.origin), _finite(f.mean) if f else None,
                     _finite(f.ci_low) if f else None, _finite(f.ci_high) if f else None, f.n if f else 0,
                     metric(c.metrics, KL_KEYS), metric(c.metrics, HELDOUT_KEYS),
                     " ".join(str(p) for p in c.parent_ids), c.code, c.thought])
    return list(CANDIDATE_COLUMNS), rows
