"""Beta-sweep summary: frontier sorted by KL, robustness = worst mean fitness, None when a beta failed."""

from __future__ import annotations

from discovery.candidate import EvalResult
from discovery.inner_loop.sweep import SweepSummary, point
from discovery.stats import fitness_of


def _results(values, kl):
    return [EvalResult(seed=i, fitness=v, metrics={"kl": kl}) for i, v in enumerate(values)]


def test_frontier_and_robustness():
    points = [point(b, _results(v, kl), fitness_of(v))
              for b, v, kl in ((0.5, [0.1, 0.3], 1.0), (0.05, [0.4, 0.6], 5.0), (0.1, [0.5, 0.7], 3.0))]
    summary = SweepSummary(points)
    assert [row[2] for row in summary.frontier] == [0.5, 0.1, 0.05]  # sorted by KL
    assert abs(summary.robustness - 0.2) < 1e-12 and summary.failed_betas == []
    assert summary.to_dict()["frontier"][0] == {"kl": 1.0, "fitness": summary.frontier[0][1], "beta": 0.5}


def test_a_failed_beta_has_no_robustness():
    failed = [EvalResult(seed=0, fitness=None, ok=False, reason="non-finite loss (nan) at step 3")]
    summary = SweepSummary([point(0.01, failed, None), point(0.1, _results([0.5, 0.6], 2.0), fitness_of([0.5, 0.6]))])
    assert summary.robustness is None and summary.failed_betas == [0.01]
    assert summary.points[0].failures == ["seed 0: non-finite loss (nan) at step 3"]
    assert [row[2] for row in summary.frontier] == [0.1]
