"""TensorBoard: scalars with `torch.utils.tensorboard.SummaryWriter`, the candidate table as a markdown text.

Event files go to RUN_DIR/tensorboard (`tensorboard --logdir RUN_DIR/tensorboard`). TensorBoard renders
text as markdown, so every cell is HTML-escaped and its pipes and newlines are escaped for the table.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any


def _cell(value: Any) -> str:
    text = "" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
    return html.escape(text).replace("|", "&#124;").replace("\n", "<br>")


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, log_dir: Path, config: dict[str, Any]):
        import yaml
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)

    def log_scalars(self, values: dict[str, float], step: int, wall_time: float) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step, walltime=wall_time)
        self.writer.flush()

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
        self.writer.add_text(name, "\n".join(lines), 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def make(run_dir: Path, config: dict[str, Any]) -> TensorBoardTracker:
    return TensorBoardTracker(run_dir / "tensorboard", config)
