"""The loop's observer in every run (CLI or Python): progress display, per-event callback, trackers.

`DiscoveryLoop` calls `update(snapshot)` after every wait (at most 0.5 s apart) and at the end, and
`log(message)`. Here each call also hands the archive's new events (candidate stored, status change,
evaluation, budget, error, run end: `discovery.archive.Event`) to `on_event`, in order, each once, and
sends the run-level series to the trackers whenever a proposal was stored. `close()` writes the
candidate table to the trackers and closes them; it runs on every exit, including Ctrl-C.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from discovery.archive import Archive, Event
from discovery.tracking.base import Tracker
from discovery.tracking.series import candidate_table, snapshot_scalars


class RunObserver:
    def __init__(self, archive: Archive, progress=None, on_event: Callable[[Event], None] | None = None,
                 trackers: list[Tracker] | tuple = ()):
        self.archive, self.progress, self.on_event, self.trackers = archive, progress, on_event, list(trackers)
        known = archive.events() if on_event else []
        self._last_event = known[-1].id if known else 0
        self._last_t = known[-1].t if known else 0.0
        self._last_values: dict[str, float] = {}

    def __enter__(self) -> RunObserver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, snapshot) -> None:
        if self.progress is not None:
            self.progress.update(snapshot)
        self._deliver_events()
        if self.trackers:
            values = snapshot_scalars(snapshot)
            changed = {k: v for k, v in values.items() if k != "time/elapsed_s"}
            if changed != self._last_values:  # a proposal stored, a status changed, a new best, more tokens
                self._last_values = changed
                for tracker in self.trackers:
                    tracker.log_scalars(values, snapshot.generation, time.time())

    def log(self, message: str) -> None:
        if self.progress is not None:
            self.progress.log(message)

    def _deliver_events(self) -> None:
        if self.on_event is None:
            return
        # events are read by time with a second of slack (clocks of one host), each delivered once by id
        for event in self.archive.events(since=self._last_t - 1.0):
            if event.id > self._last_event:
                self._last_event, self._last_t = event.id, max(self._last_t, event.t)
                self.on_event(event)

    def close(self) -> None:
        trackers, self.trackers = self.trackers, []
        try:
            if trackers:
                columns, rows = candidate_table(self.archive)
                for tracker in trackers:
                    tracker.log_table("candidates", columns, rows)
        finally:
            for tracker in trackers:
                tracker.close()
