"""The state of a run directory (running, stopped with a reason, finished) and the runs under a folder.

Read-only: the archive is opened with `mode=ro` and the run's lock is never touched. A run is *running*
while the process named in its `.run.pid` (written by the run-directory lock, removed on release) is
alive and the archive has no end record; *finished* when it ended because its proposals were all used
(or the proposer had nothing more to propose) with nothing left unevaluated; otherwise *stopped*, with
the reason the loop recorded (wall time, cost or token cap, proposer error) or "interrupted" when the
process died without writing an end record.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discovery import ranking
from discovery.archive import Archive, ArchiveError, CandidateSummary, db_path
from discovery.archive.lock import PID_NAME
from discovery.errors import DiscoveryError

RUNNING, FINISHED, STOPPED, UNREADABLE = "running", "finished", "stopped", "unreadable"
ACTIVE = ("queued", "training")


@dataclass(frozen=True)
class RunState:
    """One run directory at a glance (what `discovery runs` prints, one row per run)."""

    path: str
    state: str  # running | finished | stopped | unreadable
    reason: str = ""  # why it stopped (or why it cannot be read)
    task: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    proposals: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0
    best: dict[str, Any] | None = None  # {id, name, mean, ci_low, ci_high, n} of the best proposal
    dpo: dict[str, Any] | None = None
    llm_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def live_pid(run_dir: str | Path) -> int | None:
    """The pid of the process holding the run directory, if that process is alive."""
    try:
        pid = int((Path(run_dir) / PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by someone else
        return pid
    return pid


def fitness_dict(s: CandidateSummary | None) -> dict[str, Any] | None:
    if s is None or s.fitness is None:
        return None
    f = s.fitness
    return {"id": s.id, "name": s.candidate.name, "mean": f.mean, "ci_low": f.ci_low, "ci_high": f.ci_high,
            "n": f.n}


def classify(ended_at: float | None, end_reason: str, pid: int | None, unfinished: int) -> tuple[str, str]:
    """(state, reason) from the end record, the live pid and the candidates still queued or training."""
    if ended_at is None:
        return (RUNNING, "") if pid is not None else (STOPPED, "interrupted (no end record)")
    normal = end_reason == "done" or end_reason.startswith("proposal budget")
    if normal and not unfinished:
        return FINISHED, end_reason
    if normal:
        return STOPPED, f"{end_reason}; {unfinished} candidate(s) not finished"
    return STOPPED, end_reason or "stopped"


def state_of(archive: Archive, run_dir: str | Path, summaries: list[CandidateSummary] | None = None) -> RunState:
    """The run's state; `summaries` = `archive.summaries()` when the caller has them already."""
    info = archive.run_info()
    counts = archive.status_counts()
    unfinished = sum(counts.get(s, 0) for s in ACTIVE)
    pid = live_pid(run_dir)
    state, reason = classify(info.ended_at if info else None, info.end_reason if info else "", pid, unfinished)
    usage = archive.usage()
    if summaries is None:
        best = archive.best(k=1, include_baselines=False)
    else:
        best = ranking.best(summaries, archive.needs_reeval(), include_baselines=False)
    return RunState(
        path=str(run_dir), state=state, reason=reason, task=info.task_name if info else "",
        started_at=info.created_at if info else None, ended_at=info.ended_at if info else None,
        pid=pid if state == RUNNING else None, proposals=archive.proposal_count(),
        counts={k: v for k, v in counts.items() if v}, unfinished=unfinished,
        best=fitness_dict(best[0] if best else None), dpo=fitness_dict(archive.baseline("dpo")),
        llm_calls=usage.calls, tokens=usage.tokens, cost_usd=usage.cost_usd)


def run_state(run_dir: str | Path) -> RunState:
    """The state of one run; raises `ArchiveError` (one line) when its archive cannot be read."""
    with Archive.open(run_dir, readonly=True) as archive:
        try:
            return state_of(archive, run_dir)
        except sqlite3.DatabaseError as exc:
            raise ArchiveError(f"{db_path(run_dir)} is not a readable archive: {exc}") from None


def find_runs(root: str | Path, depth: int = 3) -> list[Path]:
    """Run directories (holding an archive) at or under `root`, up to `depth` levels down, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DiscoveryError(f"no such folder: {root}")
    if db_path(root).is_file():
        return [root]
    found: list[Path] = []
    frontier = [root]
    for _ in range(depth):
        nxt = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                (found if db_path(child).is_file() else nxt).append(child)
        frontier = nxt
    return sorted(found)


def list_runs(root: str | Path) -> list[RunState]:
    """Every run under `root`; an archive that cannot be read is listed as `unreadable` with the reason."""
    out = []
    for run_dir in find_runs(root):
        try:
            out.append(run_state(run_dir))
        except DiscoveryError as exc:
            out.append(RunState(path=str(run_dir), state=UNREADABLE, reason=str(exc)))
    return out
