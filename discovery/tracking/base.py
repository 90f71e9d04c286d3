"""The tracker interface: scalars at a step, one table at the end, close."""

from __future__ import annotations

from typing import Any, Protocol


class Tracker(Protocol):
    name: str

    def log_scalars(self, values: dict[str, float], step: int, wall_time: float) -> None:
        """Run-level series at `step` (= proposals stored so far); every value is finite."""

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        """One table (the candidates, one row each) under `name`."""

    def close(self) -> None:
        """Flush and finish (the run ended, stopped or was interrupted)."""
