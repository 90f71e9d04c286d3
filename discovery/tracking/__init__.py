"""Experiment tracking like TRL's `report_to`: the run's series and its candidate table, to installed trackers.

`report_to` (config key, or `discovery run --report-to ...`) names trackers as TRL does: `none` (the
default), `all` (every installed one), `tensorboard`, `wandb`. Each is an optional extra
(`pip install 'objective-discovery[tracking]'`); asking for one that is not installed is a one-line
config error before the run starts. Every tracker gets, per stored proposal, the run-level series of
`discovery.tracking.series` (best so far with its CI, DPO, proposals by status, tokens, cost, wall time)
and, when the run ends, one table row per candidate (`series.candidate_table`).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from discovery.errors import ConfigError
from discovery.tracking.base import Tracker

# name -> (module here that implements it, the package it needs)
BACKENDS = {"tensorboard": ("discovery.tracking.tensorboard", "tensorboard"),
            "wandb": ("discovery.tracking.wandb", "wandb")}


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def resolve(report_to: list[str] | str | None) -> list[str]:
    """The tracker names `report_to` asks for: `none` = [], `all` = every installed one; errors in one line."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        return [name for name, (_, package) in BACKENDS.items() if installed(package)]
    out = []
    for name in names:
        if name not in BACKENDS:
            raise ConfigError(f"report_to: unknown tracker '{name}'; known: none, all, {', '.join(BACKENDS)}")
        package = BACKENDS[name][1]
        if not installed(package):
            raise ConfigError(f"report_to: {name} is not installed; pip install {package} "
                              "(or the tracking extra: pip install 'objective-discovery[tracking]')")
        out.append(name)
    return out


def make_trackers(report_to: list[str] | str | None, run_dir: str | Path, config: dict[str, Any]) -> list[Tracker]:
    """One started tracker per resolved name, writing under `run_dir` (offline; no network needed)."""
    trackers = []
    for name in resolve(report_to):
        module = importlib.import_module(BACKENDS[name][0])
        trackers.append(module.make(Path(run_dir), config))
    return trackers


__all__ = ["BACKENDS", "Tracker", "make_trackers", "resolve"]
