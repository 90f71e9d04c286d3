"""The archive: a durable SQLite store of runs, candidates, evaluations and LLM calls.

`Archive` is the only way in or out; it takes and returns typed records (`Candidate`, `EvalResult`,
the proposer's `LLMCall`, and the records in `discovery.archive.records`).
"""

from discovery.archive import schema
from discovery.archive.lock import RunDirLock, RunDirLocked
from discovery.archive.records import (
    CandidateDetail,
    CandidateSummary,
    Evaluation,
    Event,
    LLMCallRecord,
    RunInfo,
    Usage,
)
from discovery.archive.store import DB_NAME, Archive, ArchiveError, db_path

__all__ = [
    "DB_NAME", "Archive", "ArchiveError", "CandidateDetail", "CandidateSummary", "Evaluation", "Event",
    "LLMCallRecord", "RunDirLock", "RunDirLocked", "RunInfo", "Usage", "db_path", "schema",
]
