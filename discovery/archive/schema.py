"""The archive's SQLite schema as an ordered list of migrations.

`schema_version` records every migration applied. A new column or table is a new function appended
to MIGRATIONS; existing ones are never edited, so an archive written by any older release upgrades
in place when it is next opened for writing (and in memory when opened read-only).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable


def _statements(db: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated DDL inside the caller's transaction (executescript would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1_initial(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        CREATE TABLE run (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            created_at REAL NOT NULL,
            config_json TEXT NOT NULL,
            versions_json TEXT NOT NULL,
            host TEXT NOT NULL,
            git_revision TEXT,
            task_name TEXT NOT NULL,
            task_cache_key TEXT
        );
        CREATE TABLE candidates (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            name TEXT NOT NULL,
            thought TEXT NOT NULL DEFAULT '',
            code TEXT NOT NULL,
            code_hash TEXT NOT NULL,
            origin TEXT NOT NULL,
            parent_ids_json TEXT NOT NULL DEFAULT '[]',
            generation INTEGER NOT NULL DEFAULT 0,
            proposer TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            fingerprint TEXT,
            duplicate_of INTEGER REFERENCES candidates(id),
            sympy TEXT,
            latex TEXT,
            diagnostics_json TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX candidates_status ON candidates(status);
        CREATE INDEX candidates_fingerprint ON candidates(fingerprint);
        CREATE INDEX candidates_code_hash ON candidates(code_hash);
        CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            candidate_id INTEGER NOT NULL REFERENCES candidates(id),
            created_at REAL NOT NULL,
            seed INTEGER NOT NULL,
            fidelity TEXT NOT NULL,
            beta REAL,
            ok INTEGER NOT NULL,
            fitness REAL,
            reason TEXT NOT NULL DEFAULT '',
            metrics_json TEXT NOT NULL DEFAULT '{}',
            seconds REAL NOT NULL DEFAULT 0,
            steps INTEGER NOT NULL DEFAULT 0,
            isolation_json TEXT NOT NULL DEFAULT '[]'
        );
        CREATE UNIQUE INDEX evaluations_key ON evaluations(candidate_id, seed, fidelity, IFNULL(beta, -1));
        CREATE TABLE llm_calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            candidate_id INTEGER REFERENCES candidates(id),
            created_at REAL NOT NULL,
            model TEXT NOT NULL,
            prompt_hash TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            latency_s REAL NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            verdict TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            t REAL NOT NULL,
            kind TEXT NOT NULL,
            candidate_id INTEGER,
            message TEXT NOT NULL DEFAULT '',
            data_json TEXT NOT NULL DEFAULT '{}'
        );
        """
    )


def _v2_stage_and_replies(db: sqlite3.Connection) -> None:
    """v2: the evaluation stage a candidate is in, probe values for near-duplicates, LLM replies."""
    _statements(
        db,
        """
        ALTER TABLE candidates ADD COLUMN stage TEXT NOT NULL DEFAULT '';
        ALTER TABLE candidates ADD COLUMN probe_values_json TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE llm_calls ADD COLUMN reply TEXT NOT NULL DEFAULT '';
        ALTER TABLE run ADD COLUMN ended_at REAL;
        ALTER TABLE run ADD COLUMN end_reason TEXT NOT NULL DEFAULT '';
        """
    )


MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (1, _v1_initial),
    (2, _v2_stage_and_replies),
]
LATEST = MIGRATIONS[-1][0]


def current_version(db: sqlite3.Connection) -> int:
    has = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
    if not has:
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: sqlite3.Connection, upto: int = LATEST) -> int:
    """Apply the pending migrations, each in its own transaction; returns the resulting version.

    `db` must be in autocommit mode (isolation_level=None): transactions are explicit here.
    """
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    version = current_version(db)
    for number, apply in MIGRATIONS:
        if version < number <= upto:
            db.execute("BEGIN IMMEDIATE")
            try:
                apply(db)
                db.execute("INSERT INTO schema_version VALUES (?, ?)", (number, time.time()))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            version = number
    return version
