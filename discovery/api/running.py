"""`discovery.run(config, on_event=...)`: start (or resume) a run from Python, through the CLI's own path.

Both `discovery run` and this call `discovery.commands.run.execute`: the same checks, run-directory lock,
log file, task, isolated workers, archive, proposer, trackers (`config.report_to`) and loop. `on_event`
receives every `discovery.archive.Event` as the loop writes it (kinds: session, candidate, status,
evaluation, budget, error, run_end); an exception it raises stops the run (resume continues it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from discovery.api.reading import Run, open_run
from discovery.archive import CandidateSummary, Event, db_path
from discovery.config import RunConfig
from discovery.errors import DiscoveryError
from discovery.loop import LoopResult


@dataclass(frozen=True)
class RunResult:
    """How the loop ended (`LoopResult`: stop reason, best, DPO, counts, usage) and the run to read."""

    result: LoopResult
    leaderboard: list[CandidateSummary]  # the closing table of `discovery run` (first = the best, if any)
    run: Run

    @property
    def stop_reason(self) -> str:
        return self.result.stop_reason

    @property
    def best(self) -> CandidateSummary | None:
        return self.result.best


def _progress(show: bool):
    from discovery.commands.run_progress import LiveProgress, QuietProgress

    return LiveProgress() if show else QuietProgress()


def run(config: RunConfig | None = None, *, on_event: Callable[[Event], None] | None = None,
        progress: bool = False) -> RunResult:
    """Run the discovery loop with `config` (defaults: `RunConfig()`) in `config.run_dir`
    (default runs/<timestamp>); `progress=True` shows the CLI's live panel on stderr."""
    from discovery.commands.run import execute

    config = config if config is not None else RunConfig()
    run_dir = Path(config.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    if db_path(run_dir).is_file():
        raise DiscoveryError(f"{run_dir} already holds a run; continue it with discovery.resume({str(run_dir)!r})")
    config = replace(config, run_dir=str(run_dir))
    result, top = execute(config, run_dir, False, _progress(progress), on_event=on_event)
    return RunResult(result, top, open_run(run_dir))


def resume(run_dir: str | Path, *, on_event: Callable[[Event], None] | None = None,
           progress: bool = False) -> RunResult:
    """Continue a stopped run with its stored config (as `discovery run --resume RUN_DIR`)."""
    from discovery.commands.run import execute, stored_config

    run_dir = Path(run_dir)
    config = stored_config(run_dir)
    result, top = execute(config, run_dir, True, _progress(progress), on_event=on_event)
    return RunResult(result, top, open_run(run_dir))
