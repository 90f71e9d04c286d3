"""Small statistics helpers: mean with a Student-t confidence interval, lower confidence bounds, and paired
comparisons on common seeds with a small-sample test (paired t with n-1 df, or a sign-flip permutation test)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as _st


def stderr(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return float("inf") if n == 0 else 0.0
    m = sum(values) / n
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: int) -> float:
    """Student t quantile, cached: a view of 10,000 candidates asks for the same few (q, df) pairs."""
    return float(_st.t.ppf(q, df))


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with a Student-t interval; a single value has an infinite interval."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_ci needs at least one value")
    n = len(values)
    m = sum(values) / n
    if n == 1:
        return m, -math.inf, math.inf
    half = t_quantile(0.5 + level / 2, n - 1) * stderr(values)
    return m, m - half, m + half


def fitness_text(mean: float, ci_low: float | None, ci_high: float | None, n: int) -> str:
    """The one way fitness is written: `0.6123 ± 0.0145 (n=3)`, or `0.6123 (n=1, no CI)` without an interval."""
    half = (ci_high - ci_low) / 2 if ci_low is not None and ci_high is not None else math.nan
    if not math.isfinite(half):
        return f"{mean:.4f} (n={n}, no CI)"
    return f"{mean:.4f} ± {half:.4f} (n={n})"


@dataclass
class Fitness:
    """A fitness estimate: mean with a 95% confidence interval over n seeds (also `discovery.candidate.Fitness`)."""

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
        return stderr(self.values)

    def __str__(self) -> str:
        return fitness_text(self.mean, self.ci_low, self.ci_high, self.n)


def fitness_of(values: Sequence[float], level: float = 0.95) -> Fitness:
    m, lo, hi = mean_ci(values, level)
    return Fitness(mean=m, ci_low=lo, ci_high=hi, n=len(values), values=tuple(float(v) for v in values))


# ---------------------------------------------------------------- paired comparisons (common seeds)

PAIRED_T, PERMUTATION = "paired t (n-1 df)", "sign-flip permutation"


@dataclass(frozen=True)
class Paired:
    """`a` vs `b` paired by seed: the mean per-seed difference, its standard error and a small-sample test.

    A seed fixes the data order and the sampled completions, so both losses see the same luck and it cancels
    in the differences. `p_value` is two-sided; `ci_low`/`ci_high` is the 95% Student-t interval (n-1 df) of
    the mean difference. `beats` = that interval lies above 0 (one-sided level 2.5%).
    """

    diff: float
    se: float
    n: int
    p_value: float
    ci_low: float
    ci_high: float
    test: str

    @property
    def t(self) -> float:
        """diff / se: the paired t statistic (the number of paired standard errors)."""
        if self.se > 0:
            return self.diff / self.se
        return math.copysign(math.inf, self.diff) if self.diff else 0.0

    @property
    def beats(self) -> bool:
        return self.n > 1 and self.ci_low > 0

    def to_dict(self) -> dict:
        return {"diff": self.diff, "se": self.se, "n": self.n, "t": self.t, "p_value": self.p_value,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "test": self.test, "beats": self.beats}


def paired_diffs(a: Mapping[int, float], b: Mapping[int, float]) -> list[float]:
    """a[seed] - b[seed] on the seeds both have, in seed order."""
    return [float(a[s]) - float(b[s]) for s in sorted(set(a) & set(b))]


def paired(a: Mapping[int, float], b: Mapping[int, float], test: str = PAIRED_T, level: float = 0.95) -> Paired:
    """Compare `a` with `b` ({seed: value}) on their common seeds: a paired t-test with n-1 degrees of
    freedom (scipy.stats.ttest_rel) or an exact sign-flip permutation test of the mean difference
    (scipy.stats.permutation_test; exact for n <= 16). n < 2 gives p = nan and an infinite interval."""
    diffs = paired_diffs(a, b)
    n = len(diffs)
    if n == 0:
        return Paired(math.nan, math.inf, 0, math.nan, -math.inf, math.inf, test)
    mean = sum(diffs) / n
    se = stderr(diffs)
    if n < 2:
        return Paired(mean, math.inf, n, math.nan, -math.inf, math.inf, test)
    if se == 0:  # identical differences: no doubt about the sign (or exactly zero)
        p = 1.0 if mean == 0 else 0.0
        return Paired(mean, 0.0, n, p, mean, mean, test)
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * se
    if test == PAIRED_T:
        seeds = sorted(set(a) & set(b))
        p = float(_st.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    elif test == PERMUTATION:
        import numpy as np

        res = _st.permutation_test((np.asarray(diffs),), np.mean, permutation_type="samples",
                                   n_resamples=math.inf if n <= 16 else 20_000, alternative="two-sided",
                                   rng=np.random.default_rng(0))
        p = float(res.pvalue)
    else:
        raise ValueError(f"unknown paired test {test!r}; use {PAIRED_T!r} or {PERMUTATION!r}")
    return Paired(mean, se, n, p, mean - half, mean + half, test)
