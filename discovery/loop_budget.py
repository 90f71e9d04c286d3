"""Why the loop stops: the budgets (`budget.*`) and the stop reasons, as plain functions of what was used.

The loop stops starting work when `budget_stop` names a reason (wall time, cost cap, token cap; checked
before every round; wall time also drops the jobs not yet started: `drops_pending`). The wall time it is
given is `charged_wall_time`: the library baselines' share of the machine is not charged (they are a cached
reference shared by every run, not this run's discovery; `discovery.loop_baselines`). It proposes no more
once the run was stopped, the proposer is done or over its caps, or `proposal_budget_used` (stored plus
being proposed reach `budget.proposals`); and it stops with an error when `every_baseline_failed`.
"""

from __future__ import annotations

from collections.abc import Sequence

from discovery.archive import Usage
from discovery.candidate import Candidate, Status
from discovery.config import BudgetConfig

WALL_TIME = "wall time"


def budget_stop(budget: BudgetConfig, usage: Usage, elapsed: float) -> str | None:
    """The first budget used up, as the run's stop reason; None while there is budget left."""
    if budget.wall_time is not None and elapsed >= budget.wall_time:
        return f"{WALL_TIME} of {budget.wall_time:.0f}s used"
    if budget.max_cost_usd is not None and usage.cost_usd >= budget.max_cost_usd:
        return f"cost cap of ${budget.max_cost_usd:.2f} reached"
    if budget.max_tokens is not None and usage.tokens >= budget.max_tokens:
        return f"token cap of {budget.max_tokens} reached"
    return None


def charged_wall_time(elapsed: float, baseline_share: float) -> float:
    """The wall time `budget.wall_time` counts: the elapsed time less the baselines' share of it
    (`BaselineClock.share`: while every worker trains a baseline nothing is charged; one of two: half)."""
    return max(0.0, elapsed - baseline_share)


def drops_pending(stop_reason: str) -> bool:
    """Wall time used: the jobs not yet started are dropped (a resumed run queues them again)."""
    return stop_reason.startswith(WALL_TIME)


def proposal_budget_used(proposals: int, budget: BudgetConfig) -> str | None:
    """The stop reason once `proposals` (stored + being proposed) reach `budget.proposals`; else None."""
    if proposals >= budget.proposals:
        return f"proposal budget of {budget.proposals} used"
    return None


def every_baseline_failed(baselines: Sequence[Candidate]) -> str | None:
    """The error when every baseline failed (the harness is broken, not the losses); None otherwise."""
    if not baselines or any(b.status != Status.FAILED for b in baselines):
        return None
    first = baselines[0]
    reason = " ".join((first.reason or "no fitness").split())[:300]
    return f"every baseline failed ({len(baselines)}); first: {first.name}: {reason}"
