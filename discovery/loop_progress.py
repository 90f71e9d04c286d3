"""What the loop reports: the live `Snapshot` (progress display, trackers) and the closing `LoopResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from discovery.archive import CandidateSummary, Usage


def duration(seconds: float | None) -> str:
    """`4m05s`, `1h02m`; `?` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@dataclass(frozen=True)
class BaselineProgress:
    """The baselines' candidate-seeds (one seed at one beta and fidelity: one training job) and their time."""

    done: int = 0  # stored: trained this session, taken from the cache or stored by an earlier session
    total: int = 0  # planned; a baseline raced out or failed counts only the jobs it ran
    cached: int = 0  # taken from the baseline cache this session
    trained: int = 0  # trained this session
    seconds: float = 0.0  # their share of the wall time this session (not charged to budget.wall_time)
    left: float | None = None  # estimated seconds left (None: nothing trained yet to estimate from)

    def text(self) -> str:
        """`12/112 candidate-seeds (3 from the cache), ~4m00s left`."""
        out = f"{self.done}/{self.total} candidate-seeds"
        if self.cached:
            out += f" ({self.cached} from the cache)"
        if self.done < self.total:
            out += f", ~{duration(self.left)} left" if self.left is not None else ", time left: after the first"
        return out


@dataclass
class Snapshot:
    """What the live progress display shows."""

    phase: str
    elapsed: float
    eta: float | None
    baselines_done: int
    baselines_total: int
    generation: int
    proposing: int
    in_flight: list[tuple[int, str, str, int, int]]  # (id, name, stage, jobs done, jobs of the stage)
    best: CandidateSummary | None
    dpo: CandidateSummary | None
    counts: dict[str, int]
    usage: Usage
    stop_reason: str = ""
    baseline_jobs: BaselineProgress = field(default_factory=BaselineProgress)


@dataclass
class LoopResult:
    stop_reason: str
    best: CandidateSummary | None
    dpo: CandidateSummary | None
    counts: dict[str, int]
    usage: Usage
    elapsed: float
    unfinished: list[int] = field(default_factory=list)
    error: str = ""
    baseline_jobs: BaselineProgress = field(default_factory=BaselineProgress)

    @property
    def discovery_elapsed(self) -> float:
        """The wall time charged to the budget: all of it less the baselines' share."""
        return max(0.0, self.elapsed - self.baseline_jobs.seconds)

    def time_text(self) -> str:
        """`time: 16m02s in all: discovery 15m00s, baselines 1m02s (84 candidate-seeds trained, 28 from the cache)`."""
        b = self.baseline_jobs
        return (f"time: {duration(self.elapsed)} in all: discovery {duration(self.discovery_elapsed)} "
                f"(what budget.wall_time counts), baselines {duration(b.seconds)} ({b.trained} candidate-seeds "
                f"trained, {b.cached} from the cache)")


def phase(reference_busy: bool, stop_reason: str) -> str:
    """`baselines` while the reference tier trains (no proposal yet), then `discovery`, then `stopping`."""
    if reference_busy and not stop_reason:
        return "baselines"
    return "stopping" if stop_reason else "discovery"


def eta(elapsed: float, proposals_done: int, proposals: int, wall_time: float | None) -> float | None:
    """Seconds left: the proposals left at the pace so far, capped by the wall time left."""
    left_wall = max(0.0, wall_time - elapsed) if wall_time is not None else None
    if proposals_done:
        left = elapsed / proposals_done * max(0, proposals - proposals_done)
        return left if left_wall is None else min(left, left_wall)
    return left_wall
