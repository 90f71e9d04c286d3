"""`Archive`: the repository in front of one run's SQLite file, and the only way in or out of it.

Every write is one transaction (BEGIN IMMEDIATE ... COMMIT), so a crash at any instant leaves the
archive as it was before or after a whole transition. WAL mode lets readers (`discovery report`,
`archive show`) open it read-only while the run is live.
"""

from __future__ import annotations

import getpass
import os
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discovery.archive import rows, schema
from discovery.archive.queries import ArchiveQueries
from discovery.archive.records import RunInfo
from discovery.candidate import Candidate, EvalResult, Status
from discovery.errors import DiscoveryError

if TYPE_CHECKING:  # the proposer's record; imported for the type only (the archive does not need the proposer)
    from discovery.proposer.base import LLMCall

DB_NAME = "archive.sqlite"


class ArchiveError(DiscoveryError):
    """The archive cannot be opened or a transition is not allowed."""


def db_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / DB_NAME


class Archive(ArchiveQueries):
    """The run's archive. Open with `Archive.open(run_dir)`; use as a context manager."""

    def __init__(self, db: sqlite3.Connection, path: Path, readonly: bool):
        self._db = db
        self._lock = threading.RLock()
        self.path = path
        self.readonly = readonly

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, run_dir: str | Path, readonly: bool = False) -> Archive:
        """Open (and for writing, create or upgrade) the archive of `run_dir`."""
        path = db_path(run_dir)
        if readonly:
            return cls(_open_readonly(path), path, readonly=True)
        run_dir = Path(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            db = _connect(f"file:{path}?mode=rwc")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            _check_not_newer(db, path)
            schema.migrate(db)
        except (sqlite3.OperationalError, PermissionError) as exc:
            raise ArchiveError(f"cannot write the archive in {run_dir}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise ArchiveError(f"{path} is not a readable archive: {exc}") from None
        return cls(db, path, readonly=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One atomic transition."""
        if self.readonly:
            raise ArchiveError(f"{self.path} is open read-only")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # ---------------------------------------------------------------- the run

    def start_run(self, config: Mapping[str, object], task_name: str, task_cache_key: str | None) -> RunInfo:
        """Record the run once; a resumed run keeps the original record."""
        with self._write() as db:
            if not db.execute("SELECT 1 FROM run").fetchone():
                db.execute(
                    "INSERT INTO run (id, created_at, config_json, versions_json, host, git_revision, task_name,"
                    " task_cache_key) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), rows.dumps(config), rows.dumps(environment_versions()), host_name(),
                     git_revision(), task_name, task_cache_key),
                )
            else:
                _same_task(db.execute("SELECT task_name, task_cache_key FROM run").fetchone(), task_name,
                           task_cache_key)
                db.execute("UPDATE run SET ended_at = NULL, end_reason = '' WHERE id = 1")
        info = self.run_info()
        assert info is not None
        return info

    def end_run(self, reason: str) -> None:
        with self._write() as db:
            db.execute("UPDATE run SET ended_at = ?, end_reason = ? WHERE id = 1", (time.time(), reason))
            _event(db, "run_end", reason)

    def log_event(self, kind: str, message: str = "", candidate_id: int | None = None,
                  data: Mapping[str, object] | None = None) -> None:
        with self._write() as db:
            _event(db, kind, message, candidate_id, data)

    # ---------------------------------------------------------------- candidates

    def add_candidate(self, candidate: Candidate, calls: Iterable[LLMCall] = (),
                      probe_values: Iterable[float] = (), stage: str = "") -> int:
        """Store a new candidate with the LLM calls that bought it, atomically; returns its id (the record
        itself is frozen and unchanged: `candidate(id)` reads the stored one back)."""
        values = rows.candidate_values(candidate)
        values["probe_values_json"] = rows.dumps([float(v) for v in probe_values])
        values["stage"] = stage
        now = time.time()
        with self._write() as db:
            cols = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            cur = db.execute(
                f"INSERT INTO candidates (created_at, updated_at, {cols}) VALUES (?, ?, {marks})",
                (now, now, *values.values()),
            )
            cid = int(cur.lastrowid)
            for call in calls:
                _insert_call(db, call, cid)
            _event(db, "candidate", f"{candidate.name}: {values['status']}", cid,
                   {"status": values["status"], "origin": values["origin"]})
        return cid

    def add_llm_calls(self, calls: Iterable[LLMCall], candidate_id: int | None = None) -> None:
        """LLM calls that produced no candidate (e.g. unparseable replies) still count as bought."""
        with self._write() as db:
            for call in calls:
                _insert_call(db, call, candidate_id)

    def transition(self, candidate_id: int, status: Status, reason: str = "", *,
                   expect: Iterable[Status] | None = None, stage: str | None = None,
                   duplicate_of: int | None = None) -> None:
        """Move a candidate to `status` (and `stage`); with `expect`, only from one of those statuses."""
        with self._write() as db:
            row = db.execute("SELECT status FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
            if row is None:
                raise ArchiveError(f"no candidate with id {candidate_id}")
            allowed = {str(s) for s in expect} if expect is not None else None
            if allowed is not None and row["status"] not in allowed:
                raise ArchiveError(
                    f"candidate {candidate_id} is {row['status']}, expected one of {sorted(allowed)}")
            sets = ["status = ?", "reason = ?", "updated_at = ?"]
            params: list[Any] = [str(Status(status)), reason, time.time()]
            if stage is not None:
                sets.append("stage = ?")
                params.append(stage)
            if duplicate_of is not None:
                sets.append("duplicate_of = ?")
                params.append(duplicate_of)
            db.execute(f"UPDATE candidates SET {', '.join(sets)} WHERE id = ?", (*params, candidate_id))
            if row["status"] != str(status):
                _event(db, "status", f"{row['status']} -> {status}" + (f": {reason}" if reason else ""),
                       candidate_id, {"from": row["status"], "to": str(status), "stage": stage})

    def add_evaluation(self, candidate_id: int, result: EvalResult) -> bool:
        """Store one evaluation; False (and nothing written) if that seed/fidelity/beta is already stored."""
        values = rows.evaluation_values(candidate_id, result)
        with self._write() as db:
            cols = ", ".join(values)
            marks = ", ".join("?" for _ in values)
            try:
                db.execute(f"INSERT INTO evaluations (created_at, {cols}) VALUES (?, {marks})",
                           (time.time(), *values.values()))
            except sqlite3.IntegrityError:
                return False
            _event(db, "evaluation", f"seed {result.seed} {result.fidelity}: "
                   + (f"{result.fitness:.4f}" if values["ok"] else f"failed ({result.reason})"),
                   candidate_id, {"seed": result.seed, "fidelity": result.fidelity, "fitness": result.fitness,
                                  "seconds": result.seconds})
        return True


# ---------------------------------------------------------------- helpers


def _connect(uri: str) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
    db.row_factory = sqlite3.Row
    return db


def _check_not_newer(db: sqlite3.Connection, path: Path) -> None:
    version = schema.current_version(db)
    if version > schema.LATEST:
        raise ArchiveError(f"{path} has schema version {version}; this discovery reads up to "
                           f"{schema.LATEST}: upgrade discovery")


def _same_task(stored, task_name: str, task_cache_key: str | None) -> None:
    """A resumed run trains on the data it started on: refuse a task whose data changed since (a newer build of
    the task, other task options) rather than mix scores of two tasks in one archive."""
    name, key = stored[0], stored[1]
    if name != task_name or (key is not None and task_cache_key is not None and key != task_cache_key):
        raise ArchiveError(f"this run started on task {name} with data {key}, but the task now resolves to "
                           f"{task_name} with data {task_cache_key} (a newer build of the task or other task "
                           "options); start a new run directory, or resume with the options and release it "
                           "started with")


def _open_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ArchiveError(f"no archive at {path}")
    try:
        db = _connect(f"file:{path}?mode=ro")
        _check_not_newer(db, path)
        if schema.current_version(db) < schema.LATEST:
            # An older archive: upgrade a private in-memory copy, never the file.
            memory = _connect(":memory:")
            db.backup(memory)
            db.close()
            schema.migrate(memory)
            db = memory
        db.execute("PRAGMA query_only=ON")
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"{path} is not a readable archive: {exc}") from None
    return db


def _insert_call(db: sqlite3.Connection, call: LLMCall, candidate_id: int | None) -> None:
    values = rows.llm_call_values(call)
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    db.execute(f"INSERT INTO llm_calls (candidate_id, created_at, {cols}) VALUES (?, ?, {marks})",
               (candidate_id, time.time(), *values.values()))


def _event(db: sqlite3.Connection, kind: str, message: str = "", candidate_id: int | None = None,
           data: Mapping[str, object] | None = None) -> None:
    db.execute("INSERT INTO events (t, kind, candidate_id, message, data_json) VALUES (?, ?, ?, ?, ?)",
               (time.time(), kind, candidate_id, message, rows.dumps(data or {})))


def environment_versions() -> dict[str, str]:
    import platform

    from discovery import __version__

    versions = {"python": platform.python_version(), "discovery": __version__}
    for dist in ("torch", "trl", "transformers", "datasets", "accelerate"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def host_name() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "?"
    return f"{user}@{socket.gethostname()} ({os.cpu_count()} cpus)"


def git_revision() -> str | None:
    """The project's git revision (with '+dirty' when the tree has changes), if it is a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("+dirty" if dirty else "")) or None
