"""A cache of library-baseline evaluations shared by every run on the same task configuration.

It lives beside the task data (`<task.cache_dir or ~/.cache/discovery>/baselines.sqlite`), so it survives runs
and is shared by every run on this machine. Keyed by the package version (`HARNESS`: a release may train or
score differently), the task's `cache_key()` (its build version and options), the training config and the
scorer's `score_key()`, the loss source, and the job: seed, fidelity (name, steps fraction, task instance) and
beta; so a later run re-uses a baseline only when it would have computed exactly the same thing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from discovery import __version__
from discovery.archive.rows import dumps
from discovery.candidate import EvalResult, code_hash
from discovery.inner_loop.task import Fidelity

FILE_NAME = "baselines.sqlite"
HARNESS = __version__  # the training and scoring code's version


class BaselineCache:
    def __init__(self, root: str | Path, task_name: str, task_key: str, train: dict[str, Any]):
        self.path = Path(root) / FILE_NAME
        self._scope = json.dumps({"harness": HARNESS, "task": task_name, "key": task_key, "train": train},
                                 sort_keys=True, default=str)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, result_json TEXT NOT NULL)")
            self._db = db
        except (OSError, sqlite3.Error):
            self._db = None  # an unwritable cache only costs re-computation

    def key(self, code: str, seed: int, fidelity: Fidelity, beta: float | None) -> str:
        """The row key of one job; `beta` is the job's effective beta (train.beta when the fidelity has none)."""
        job = f"{fidelity.name}|{fidelity.steps_fraction!r}|{fidelity.instance!r}"
        blob = f"{self._scope}|{code_hash(code)}|{seed}|{job}|{beta!r}"
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, code: str, seed: int, fidelity: Fidelity, beta: float | None) -> EvalResult | None:
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT result_json FROM results WHERE key = ?",
                                   (self.key(code, seed, fidelity, beta),)).fetchone()
        if not row:
            return None
        return EvalResult.from_dict(json.loads(row[0]))

    def put(self, code: str, result: EvalResult, fidelity: Fidelity, beta: float | None) -> None:
        if self._db is None or not result.ok:
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)",
                             (self.key(code, result.seed, fidelity, beta), dumps(asdict(result))))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
