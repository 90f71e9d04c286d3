"""`discovery.open_run(path)`: a run's archive as typed, read-only Python objects, each with `.to_pandas()`.

The objects are the archive's own records, the ones the CLI's views are built from: candidates are
`CandidateSummary` (the `Candidate` with its fitness, n and 95% CI at the highest fidelity reached),
evaluations are `Evaluation` (an `EvalResult` per seed, fidelity and beta), LLM calls are `LLMCallRecord`.
A candidate's flat row in `to_pandas()` is the same `CandidateRow` that `discovery archive list` and the
report show, plus its code and thought. The archive is opened read-only (SQLite `mode=ro`) for each read,
so a live run is never disturbed; `Run.refresh()` reads again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

from discovery.archive import (
    Archive,
    CandidateDetail,
    CandidateSummary,
    Evaluation,
    Event,
    LLMCallRecord,
    RunInfo,
    Usage,
)
from discovery.config import RunConfig, from_dict
from discovery.errors import DiscoveryError
from discovery.inspect.runs import RunState, state_of
from discovery.inspect.views import calls_by_candidate, row_of

T = TypeVar("T")


def _pandas():
    try:
        import pandas
    except ImportError:
        raise DiscoveryError("to_pandas() needs pandas: pip install pandas "
                             "(or the project's dev extra: pip install 'objective-discovery[dev]')") from None
    return pandas


class Records(tuple, Generic[T]):
    """An immutable sequence of typed records; `to_pandas()` gives one flat row per record."""

    def __new__(cls, items: Iterable[T], flatten: Callable[[T], dict[str, Any]]):
        self = super().__new__(cls, items)
        self._flatten = flatten
        return self

    def rows(self) -> list[dict[str, Any]]:
        return [self._flatten(item) for item in self]

    def to_pandas(self):
        """A `pandas.DataFrame`, one row per record (pandas is imported only here)."""
        return _pandas().DataFrame(self.rows())


def evaluation_row(e: Evaluation) -> dict[str, Any]:
    r = e.result
    row = {"id": e.id, "candidate_id": e.candidate_id, "created_at": e.created_at, "seed": r.seed,
           "fidelity": r.fidelity, "beta": r.beta, "ok": r.ok, "fitness": r.fitness, "reason": r.reason,
           "seconds": r.seconds, "steps": r.steps}
    for key, value in (r.metrics or {}).items():
        if isinstance(value, int | float | str | bool) and key not in row:
            row[key] = value
    return row


def llm_call_row(c: LLMCallRecord) -> dict[str, Any]:
    return dataclasses.asdict(c)


def event_row(e: Event) -> dict[str, Any]:
    return {"id": e.id, "t": e.t, "kind": e.kind, "candidate_id": e.candidate_id, "message": e.message}


class Run:
    """A run directory, read-only. Attributes are read on first use and kept; `refresh()` reads again."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._archive():  # a missing, corrupt or newer-schema archive fails here, in one line
            pass

    def __repr__(self) -> str:
        return f"<discovery.Run {str(self.path)!r}>"

    def _archive(self) -> Archive:
        return Archive.open(self.path, readonly=True)

    def refresh(self) -> Run:
        """A fresh view of the same run (a live run has moved on)."""
        return Run(self.path)

    # ---------------------------------------------------------------- the run

    @cached_property
    def info(self) -> RunInfo | None:
        with self._archive() as a:
            return a.run_info()

    @cached_property
    def config(self) -> RunConfig:
        """The run's stored config as the typed `RunConfig` it was started with."""
        return from_dict(self.info.config if self.info else {})

    @cached_property
    def state(self) -> RunState:
        """running / finished / stopped (with the reason), proposals, best, DPO, tokens, cost."""
        with self._archive() as a:
            return state_of(a, self.path)

    @cached_property
    def usage(self) -> Usage:
        with self._archive() as a:
            return a.usage()

    # ---------------------------------------------------------------- records

    @cached_property
    def candidates(self) -> Records[CandidateSummary]:
        """Every candidate (baselines included) in proposal order, with fitness n / mean / 95% CI."""
        with self._archive() as a:
            summaries = a.summaries()
        calls = calls_by_candidate(list(self.llm_calls))

        def flatten(s: CandidateSummary) -> dict[str, Any]:
            return {**row_of(s, calls.get(s.id, [])).to_dict(), "thought": s.candidate.thought,
                    "code": s.candidate.code}

        return Records(summaries, flatten)

    @cached_property
    def evaluations(self) -> Records[Evaluation]:
        """Every evaluation (one seed at one fidelity and beta); its metrics become columns in to_pandas()."""
        with self._archive() as a:
            return Records(a.evaluations(), evaluation_row)

    @cached_property
    def llm_calls(self) -> Records[LLMCallRecord]:
        with self._archive() as a:
            return Records(a.llm_calls(), llm_call_row)

    @cached_property
    def events(self) -> Records[Event]:
        with self._archive() as a:
            return Records(a.events(), event_row)

    def candidate(self, candidate_id: int) -> CandidateDetail:
        """One candidate with its evaluations, LLM calls, parents, ancestors, children and duplicates."""
        with self._archive() as a:
            return a.detail(candidate_id)

    def best(self, k: int = 1, include_baselines: bool = False) -> list[CandidateSummary]:
        """The top `k` of those that may be called best (the archive's rule, as `discovery run` prints it)."""
        with self._archive() as a:
            return a.best(k=k, include_baselines=include_baselines)

    def baseline(self, name: str = "dpo") -> CandidateSummary | None:
        with self._archive() as a:
            return a.baseline(name)


def open_run(path: str | Path) -> Run:
    """Open the run in `path` read-only; a missing, corrupt or newer-schema archive raises `ArchiveError`."""
    return Run(path)
