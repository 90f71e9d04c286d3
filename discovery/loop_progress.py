"""What the loop reports: the live `Snapshot` (progress display, trackers) and the closing `LoopResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

from discovery.archive import CandidateSummary, Usage


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


def phase(baselines_done: int, baselines_total: int, stop_reason: str) -> str:
    if baselines_done < baselines_total:
        return "baselines"
    return "stopping" if stop_reason else "discovery"


def eta(elapsed: float, proposals_done: int, proposals: int, wall_time: float | None) -> float | None:
    """Seconds left: the proposals left at the pace so far, capped by the wall time left."""
    left_wall = max(0.0, wall_time - elapsed) if wall_time is not None else None
    if proposals_done:
        left = elapsed / proposals_done * max(0, proposals - proposals_done)
        return left if left_wall is None else min(left, left_wall)
    return left_wall
