"""Small statistics helpers: mean with a Student-t confidence interval, lower confidence bounds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats as _st


def stderr(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return float("inf") if n == 0 else 0.0
    m = sum(values) / n
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with a Student-t interval; a single value has an infinite interval."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_ci needs at least one value")
    n = len(values)
    m = sum(values) / n
    if n == 1:
        return m, -math.inf, math.inf
    half = _st.t.ppf(0.5 + level / 2, n - 1) * stderr(values)
    return m, m - half, m + half


def fitness_of(values: Sequence[float], level: float = 0.95):
    from discovery.candidate import Fitness

    m, lo, hi = mean_ci(values, level)
    return Fitness(mean=m, ci_low=lo, ci_high=hi, n=len(values), values=tuple(float(v) for v in values))
