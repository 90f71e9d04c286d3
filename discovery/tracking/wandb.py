"""Weights & Biases through its own client: `wandb.log` per step, a `wandb.Table` of the candidates.

Offline unless the environment says otherwise (WANDB_MODE=online and a key): the run is written under
RUN_DIR/wandb and can be uploaded later with `wandb sync`. The project is WANDB_PROJECT or "discovery".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class WandbTracker:
    name = "wandb"

    def __init__(self, run_dir: Path, config: dict[str, Any]):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "discovery"), name=run_dir.name,
                              dir=str(run_dir), config=config, mode=os.environ.get("WANDB_MODE", "offline"),
                              settings=wandb.Settings(console="off", silent=True))
        self._step = 0

    def log_scalars(self, values: dict[str, float], step: int, wall_time: float) -> None:
        self._step = max(self._step, step)  # W&B's step must not go back
        self.run.log(dict(values), step=self._step)

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({name: self.wandb.Table(columns=columns, data=rows)}, step=self._step)

    def close(self) -> None:
        self.run.finish()


def make(run_dir: Path, config: dict[str, Any]) -> WandbTracker:
    return WandbTracker(run_dir, config)
