"""Executors: run candidate evaluations on isolated workers, locally or on Ray."""

from __future__ import annotations

from discovery.config import RunConfig
from discovery.errors import ConfigError
from discovery.executors.base import Executor
from discovery.executors.layout import Layout, plan_layout

EXECUTORS = ("local", "ray")


def make_executor(config: RunConfig, layout: Layout | None = None) -> Executor:
    """The executor named by `executor.name`, with `layout` (default: the best one for this machine)."""
    layout = layout or plan_layout(config.executor)
    name = config.executor.name
    if name == "local":
        from discovery.executors.local import LocalExecutor

        return LocalExecutor(config, layout)
    if name == "ray":
        from discovery.executors.ray_executor import RayExecutor

        return RayExecutor(config, layout)
    raise ConfigError(f"unknown executor '{name}'; available: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "Layout", "make_executor", "plan_layout"]
