"""The run-directory lock: one live run per run directory."""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from discovery.errors import DiscoveryError

LOCK_NAME = ".run.lock"
PID_NAME = ".run.pid"


class RunDirLocked(DiscoveryError):
    """Another live run holds the run directory."""


class RunDirLock:
    """Held for the whole life of a run; released on exit (and by the OS when the process dies)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._lock = FileLock(str(self.run_dir / LOCK_NAME), timeout=0)

    def acquire(self) -> RunDirLock:
        try:
            self._lock.acquire()
        except Timeout:
            raise RunDirLocked(f"run directory {self.run_dir} is in use by a live run{self._holder()}; "
                               "wait for it to finish or use another --run-dir") from None
        except OSError as exc:
            raise DiscoveryError(f"cannot lock run directory {self.run_dir}: {exc.strerror or exc}") from None
        (self.run_dir / PID_NAME).write_text(str(os.getpid()))
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            (self.run_dir / PID_NAME).unlink(missing_ok=True)
            self._lock.release()

    def _holder(self) -> str:
        try:
            return f" (pid {int((self.run_dir / PID_NAME).read_text())})"
        except (OSError, ValueError):
            return ""

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
