"""Jobs for tests/test_sandbox_spares.py (imported inside the sandbox server)."""

from __future__ import annotations

import os
import resource
import time

MARKS: list[str] = []


def warm() -> None:
    MARKS.append("warmed")


def leave_a_mark(payload):
    """What earlier code left in this process, then a mark of this job."""
    seen = list(MARKS)
    time.sleep(float(payload.get("seconds", 0)))  # a job long enough for a spare to warm up beside it
    MARKS.append(payload.get("mark", "job"))
    return {"pid": os.getpid(), "seen": seen, "rank": os.environ.get("RANK"),
            "file_limit": resource.getrlimit(resource.RLIMIT_FSIZE)[0], "cwd": os.getcwd()}
