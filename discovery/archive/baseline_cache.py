"""A cache of library-baseline evaluations shared by every run on the same task configuration.

Keyed by the task's `cache_key()`, the training config, the loss source and the (seed, fidelity, beta)
of the job, so a later run re-uses a baseline only when it would have computed exactly the same thing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from discovery.archive.rows import dumps
from discovery.candidate import EvalResult, code_hash

FILE_NAME = "baselines.sqlite"


class BaselineCache:
    def __init__(self, root: str | Path, task_name: str, task_key: str, train: dict[str, Any]):
        self.path = Path(root) / FILE_NAME
        self._scope = json.dumps({"task": task_name, "key": task_key, "train": train}, sort_keys=True)
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

    def _key(self, code: str, seed: int, fidelity: str, beta: float | None) -> str:
        blob = f"{self._scope}|{code_hash(code)}|{seed}|{fidelity}|{beta!r}"
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, code: str, seed: int, fidelity: str, beta: float | None) -> EvalResult | None:
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT result_json FROM results WHERE key = ?",
                                   (self._key(code, seed, fidelity, beta),)).fetchone()
        if not row:
            return None
        return EvalResult.from_dict(json.loads(row[0]))

    def put(self, code: str, result: EvalResult, beta: float | None) -> None:
        if self._db is None or not result.ok:
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)",
                             (self._key(code, result.seed, result.fidelity, beta), dumps(asdict(result))))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
