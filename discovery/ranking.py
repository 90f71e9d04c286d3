"""Ranking and eligibility: the one rule for who is best, the order of every table, the prompt's parents.

Everything that ranks candidates goes through this module: the loop (which candidates are worth
re-evaluating, `DiscoveryLoop.best()`), `Archive.best` / `Archive.leaderboard`, the selection strategy
(top-k and parents), `discovery archive list`, the report (its table, winner and figures), `discovery export --best`, the
islands' migrant, the live view, and the table and "best:" line that close `discovery run`.

- `score_key` is THE ranking key (higher is better): today the lower 95% confidence bound of the fitness,
  then the mean. Change what "better" means here and every table, prompt and winner follows.
- `may_be_called_best`: evaluated (status `evaluated`, so every planned seed finished and none failed), scored
  at full fidelity, not a duplicate or invalid, and confirmed: a proposal must have completed re-evaluation
  on fresh seeds when the run re-evaluates (`eval.reeval_seeds > 0`), and when the run has held-out task
  instances (`eval.heldout_instances`, synthetic task) also have beaten or tied DPO on each of them (stage
  `heldout`; a proposal that lost there goes back to stage `reeval` with the reason); a library baseline is
  confirmed by its full evaluation. `needs_reeval` is False, True, or `HELDOUT` (fresh seeds and held-out).
- `in_top_fraction`: who is promoted from the screen to full fidelity (`eval.promote_fraction`, by the mean).
- `running_best`: the best so far after each proposal (the report's progress figure).
- `order`: those that may be called best first (by `score_key`), then the others by fidelity reached
  (full, screen, unscored) and `score_key`. So the first row of any table is the best, when there is one.

The functions take anything `Ranked` (a `CandidateSummary` or an `inspect.views.CandidateRow`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

FULL, REEVAL, HELDOUT = "full", "reeval", "heldout"
INSTANCE_TASKS = ("synthetic",)  # tasks whose task.options.seed draws another instance (executors/plan.py)
_FIDELITY_LEVEL = {"full": 2, "screen": 1}


class Ranked(Protocol):
    @property
    def fidelity(self) -> str | None: ...  # the fidelity the fitness is measured at; None = unscored
    @property
    def lcb(self) -> float | None: ...
    @property
    def mean(self) -> float | None: ...
    @property
    def status(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def is_baseline(self) -> bool: ...


R = TypeVar("R", bound=Ranked)


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf


def score_key(s: Ranked) -> tuple[float, ...]:
    """THE ranking key, higher is better: the lower 95% confidence bound of fitness, then the mean."""
    return (_finite(s.lcb), _finite(s.mean))


def reeval_required(config: Mapping[str, Any] | None) -> bool | str:
    """Does the run described by this stored config dict re-evaluate (`eval.reeval_seeds > 0`, default 5)?
    `HELDOUT` (truthy) when it also confirms on held-out task instances (a stored config without
    `eval.heldout_instances` is an older run: fresh seeds only)."""
    try:
        ev = (config or {}).get("eval", {})
        seeds = int(ev.get("reeval_seeds", 5))
        task = (config or {}).get("task", {}).get("name", "synthetic")
        if seeds >= 2 and ev.get("heldout_instances") and task in INSTANCE_TASKS:
            return HELDOUT
        return seeds > 0
    except (TypeError, ValueError, AttributeError):
        return True


def confirmed(s: Ranked, needs_reeval: bool) -> bool:
    """Baselines by their full evaluation; proposals by re-evaluation when the run re-evaluates."""
    if s.is_baseline:
        return True
    if needs_reeval == HELDOUT:
        return s.stage == HELDOUT
    return s.stage in (REEVAL, HELDOUT) if needs_reeval else s.stage in (FULL, REEVAL, HELDOUT)


def may_be_called_best(s: Ranked, needs_reeval: bool, include_baselines: bool = True) -> bool:
    """Evaluated on every planned seed without a failure, scored at full fidelity, and confirmed."""
    if s.is_baseline and not include_baselines:
        return False
    return (str(s.status) == "evaluated" and s.fidelity == FULL and s.mean is not None
            and math.isfinite(s.mean) and confirmed(s, needs_reeval))


def best(items: Iterable[R], needs_reeval: bool, include_baselines: bool = True) -> list[R]:
    """Those that may be called best, best first."""
    return sorted((s for s in items if may_be_called_best(s, needs_reeval, include_baselines)),
                  key=score_key, reverse=True)


def order(items: Iterable[R], needs_reeval: bool) -> list[R]:
    """The order of every table: those that may be called best first, then by fidelity and `score_key`."""
    def key(s: R) -> tuple:
        return (may_be_called_best(s, needs_reeval), _FIDELITY_LEVEL.get(s.fidelity or "", 0), *score_key(s))

    return sorted(items, key=key, reverse=True)


def leaderboard(items: Iterable[R], needs_reeval: bool) -> list[R]:
    """The scored ones in table order: the closing table of `discovery run` (its first row is the best)."""
    return order((s for s in items if s.mean is not None and math.isfinite(s.mean)), needs_reeval)


def running_best(items: Iterable[R], needs_reeval: bool) -> list[R | None]:
    """After each item in turn (proposal order), the best so far (`best` of the items up to it; None: none yet)."""
    out: list[R | None] = []
    current: R | None = None
    for s in items:
        if may_be_called_best(s, needs_reeval) and (current is None or score_key(s) > score_key(current)):
            current = s
        out.append(current)
    return out


def parents(ranked_proposals: list[R], n: int) -> list[R]:
    """The prompt's parents: the first `n` proposals in table order."""
    return ranked_proposals[:n]


def in_top_fraction(scores: Mapping[int, float], cid: int, fraction: float) -> bool:
    """Promotion after screening: `cid`'s score is among the top `fraction` of `scores` (at least the top one);
    ties share the rank of the first. Screen fidelity has one seed or few, so the score is the mean."""
    if cid not in scores:
        return False
    rank = sorted(scores.values(), reverse=True).index(scores[cid])
    return rank < max(1, math.ceil(fraction * len(scores)))


def worth_confirming(s: Ranked, current_best: Ranked | None) -> bool:
    """Re-evaluate a proposal that finished its full evaluation if it may become the best.

    Optimistic on purpose: its mean beats the best's mean (its confidence bound would rise with the extra
    seeds); whether it then is the best is decided by `score_key` once it is confirmed.
    """
    if current_best is None:
        return True
    return s.mean is not None and math.isfinite(s.mean) and s.mean > _finite(current_best.mean)
