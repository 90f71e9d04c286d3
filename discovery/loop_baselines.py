"""When the library baselines train, and what their time is: the loop's baseline schedule.

The baselines are a shared, cached reference (`archive.baseline_cache`), not part of a run's discovery, so:

- Tiers. Every pending job has a tier and the most urgent tier is dispatched first (first in, first out within
  a tier): REFERENCE = every baseline's screen jobs (the bar for promotion) and the reference baseline's (DPO's)
  first rung of full seeds; NORMAL = the proposals' jobs and DPO's later seeds; BACKGROUND = the other baselines'
  full jobs, which only take a worker that no proposal needs. Proposals start once the REFERENCE tier is done
  (the first prompt shows DPO's fitness), not once every baseline is.
- Racing. DPO gets every seed (every comparison pairs with it); the other baselines are raced like proposals
  (`discovery.racing`, against DPO only): one clearly worse than DPO stops after its first rung.
- Time. `BaselineClock` adds up the worker-seconds of the baseline jobs this session; their share of the
  machine (worker-seconds / workers) is not charged to `budget.wall_time` (`loop_budget.charged_wall_time`).
"""

from __future__ import annotations

from dataclasses import dataclass

from discovery.config import RunConfig
from discovery.executors.plan import SCREEN, Job

REFERENCE, NORMAL, BACKGROUND = 0, 1, 2
REFERENCE_NAME = "dpo"  # the baseline every comparison pairs with


def reference_seeds(config: RunConfig) -> int:
    """How many of the reference's full seeds come before the first proposal: its first racing rung."""
    e = config.eval
    return min(e.racing_first_seeds, e.seeds) if e.racing != "off" else e.seeds


def tier(job: Job, config: RunConfig, baseline_ids: set[int], reference_id: int | None) -> int:
    """REFERENCE, NORMAL or BACKGROUND (see the module docstring)."""
    if job.candidate_id not in baseline_ids:
        return NORMAL
    if job.fidelity.name == SCREEN:
        return REFERENCE
    if job.candidate_id == reference_id:
        first = job.owner is None and job.seed < config.seed + reference_seeds(config)
        return REFERENCE if first else NORMAL
    return BACKGROUND


@dataclass
class BaselineClock:
    """What the baselines cost this session: worker-seconds trained, jobs trained, jobs taken from the cache."""

    worker_seconds: float = 0.0
    trained: int = 0
    cached: int = 0

    def add(self, seconds: float) -> None:
        self.worker_seconds += max(0.0, seconds)
        self.trained += 1

    def share(self, workers: int) -> float:
        """The baselines' share of the wall time: their worker-seconds spread over the workers."""
        return self.worker_seconds / max(1, workers)

    def seconds_left(self, jobs_left: int, workers: int) -> float | None:
        """Jobs left at this session's mean seconds per baseline job, over the workers; None before the first."""
        if not self.trained:
            return None if jobs_left else 0.0
        return jobs_left * self.worker_seconds / self.trained / max(1, workers)
