"""Beta sweep (eval.betas): the reward-vs-KL frontier, a robustness score, and THE fitness of a swept loss.

Robustness is the worst mean fitness over the swept betas, or None when any beta failed (NaN/Inf,
crash): a loss that collapses at small beta or diverges at large beta is not robust, whatever its peak.

`sweep_fitness` turns one candidate's results at several betas into one fitness (`eval.fitness`):

- `best_beta` (default): the mean over seeds at the beta of the grid where that mean is highest. A loss is
  scored at its own best temperature, so a loss that is DPO at another beta (-log sigma(c beta rho)) scores
  like DPO when the grid covers both; what is left is the loss's shape. Picking the best of k betas is
  biased upward a little (the same for every loss on the same grid); re-evaluation on fresh seeds at the
  chosen beta (`REEVAL`) is unbiased.
- `matched_kl`: the reward at a given KL to the reference (per seed, linear interpolation along that seed's
  frontier, clamped at its ends), the way the DPO and DiscoPOP IMDb plots compare losses. The target KL is
  DPO's KL at `train.beta` (`target_kl`); without one it falls back to `best_beta`.
- `pooled`: the mean over every (beta, seed) result (the behaviour before there was a rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from discovery.candidate import EvalResult, Fitness
from discovery.stats import fitness_of

FITNESS_MODES = ("best_beta", "matched_kl", "pooled")


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


@dataclass(frozen=True)
class SweepFitness:
    """One fitness for results at one or more betas, with where it came from."""

    fitness: Fitness | None  # None when no beta has a successful result on every seed
    mode: str
    beta: float | None  # the beta it is measured at (best_beta, or the only one); None for pooled/matched_kl
    by_seed: dict[int, float]  # the per-seed values behind `fitness` (for paired comparisons)
    per_beta: dict[float, Fitness | None]
    kl: float | None = None  # mean KL at `beta` (or the target KL for matched_kl)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "beta": self.beta, "kl": self.kl,
                "fitness": None if self.fitness is None else {
                    "mean": self.fitness.mean, "ci_low": self.fitness.ci_low, "ci_high": self.fitness.ci_high,
                    "n": self.fitness.n},
                "by_seed": {str(k): v for k, v in sorted(self.by_seed.items())},
                "per_beta": [{"beta": b, "mean": None if f is None else f.mean, "n": 0 if f is None else f.n}
                             for b, f in sorted(self.per_beta.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]}


def _ok(r: EvalResult) -> bool:
    return r.ok and r.fitness is not None and math.isfinite(r.fitness)


def group_by_beta(results: Sequence[EvalResult], default_beta: float | None = None) -> dict:
    """Results by the beta they trained at (a result without a beta trained at `default_beta`; None = unknown)."""
    out: dict[float | None, list[EvalResult]] = {}
    for r in results:
        beta = r.beta if r.beta is not None else default_beta
        out.setdefault(round(float(beta), 9) if beta is not None else None, []).append(r)
    return out


def _per_beta(groups: dict[float, list[EvalResult]]) -> dict[float, Fitness | None]:
    return {b: fitness_of([r.fitness for r in rs]) if rs and all(_ok(r) for r in rs) else None
            for b, rs in groups.items()}


def _mean_kl(results: Sequence[EvalResult]) -> float | None:
    kls = [r.metrics["kl"] for r in results if _ok(r) and "kl" in r.metrics]
    return sum(kls) / len(kls) if kls else None


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float:
    """y at x on the piecewise-linear curve through (x, y) points (sorted by x here), clamped at its ends."""
    pts = sorted(points)
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def sweep_fitness(results: Sequence[EvalResult], mode: str = "best_beta", default_beta: float | None = None,
                  target_kl: float | None = None) -> SweepFitness:
    """THE fitness of one candidate from its results at one or more betas (see the module docstring)."""
    if mode not in FITNESS_MODES:
        raise ValueError(f"unknown fitness mode {mode!r}; use one of {', '.join(FITNESS_MODES)}")
    groups = group_by_beta(results, default_beta)
    per_beta = _per_beta(groups)
    if mode == "pooled":
        ok = [r for r in results if _ok(r)]
        seeds: dict[int, list[float]] = {}
        for r in ok:
            seeds.setdefault(r.seed, []).append(float(r.fitness))
        by_seed = {s: sum(v) / len(v) for s, v in seeds.items()}
        fit = fitness_of([r.fitness for r in ok]) if ok else None
        return SweepFitness(fit, mode, None, by_seed, per_beta, _mean_kl(ok))
    if mode == "matched_kl" and target_kl is not None and len(groups) > 1:
        return _matched(groups, per_beta, target_kl)
    usable = {b: f for b, f in per_beta.items() if f is not None}
    if not usable:
        return SweepFitness(None, "best_beta", None, {}, per_beta)
    beta = max(usable, key=lambda b: (usable[b].mean, -(b or 0.0)))
    by_seed = {r.seed: float(r.fitness) for r in groups[beta]}
    return SweepFitness(usable[beta], "best_beta", beta, by_seed, per_beta, _mean_kl(groups[beta]))


def _matched(groups: dict[float, list[EvalResult]], per_beta: dict[float, Fitness | None],
             target_kl: float) -> SweepFitness:
    frontier: dict[int, list[tuple[float, float]]] = {}
    for b, rs in groups.items():
        if per_beta.get(b) is None:
            continue  # a beta that failed on some seed is not on the frontier
        for r in rs:
            if "kl" in r.metrics and math.isfinite(r.metrics["kl"]):
                frontier.setdefault(r.seed, []).append((float(r.metrics["kl"]), float(r.fitness)))
    by_seed = {s: interpolate(pts, target_kl) for s, pts in frontier.items() if pts}
    fit = fitness_of(list(by_seed.values())) if by_seed else None
    return SweepFitness(fit, "matched_kl", None, by_seed, per_beta, target_kl)
