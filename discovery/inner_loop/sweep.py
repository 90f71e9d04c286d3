"""Beta sweep summary (eval.betas): the reward-vs-KL frontier and a robustness score.

Robustness is the worst mean fitness over the swept betas, or None when any beta failed (NaN/Inf,
crash): a loss that collapses at small beta or diverges at large beta is not robust, whatever its peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from discovery.candidate import EvalResult, Fitness


@dataclass
class BetaPoint:
    beta: float
    fitness: Fitness | None  # None when a seed failed
    kl: float | None
    failures: list[str] = field(default_factory=list)


@dataclass
class SweepSummary:
    points: list[BetaPoint]

    @property
    def robustness(self) -> float | None:
        if not self.points or any(p.fitness is None for p in self.points):
            return None
        return min(p.fitness.mean for p in self.points)

    @property
    def failed_betas(self) -> list[float]:
        return [p.beta for p in self.points if p.fitness is None]

    @property
    def frontier(self) -> list[tuple[float, float, float]]:
        """(kl, fitness, beta) of the successful betas, sorted by KL."""
        rows = [(p.kl, p.fitness.mean, p.beta) for p in self.points if p.fitness is not None and p.kl is not None]
        return sorted(rows)

    def to_dict(self) -> dict:
        return {"robustness": self.robustness, "failed_betas": self.failed_betas,
                "frontier": [{"kl": k, "fitness": f, "beta": b} for k, f, b in self.frontier]}


def point(beta: float, results: list[EvalResult], fitness: Fitness | None) -> BetaPoint:
    kls = [r.metrics["kl"] for r in results if r.ok and "kl" in r.metrics]
    return BetaPoint(beta, fitness, sum(kls) / len(kls) if kls else None,
                     [f"seed {r.seed}: {r.reason}" for r in results if not r.ok])
