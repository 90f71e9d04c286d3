"""Where a worker finds the user's caches: resolved in the trusted parent, passed down explicitly.

The isolated worker's HOME is its scratch dir, so nothing there may be derived from HOME: the task cache,
the HF hub cache and the MT-Bench files are resolved here from the real HOME / HF_HOME / HF_HUB_CACHE /
XDG_CACHE_HOME / DISCOVERY_CACHE / task.cache_dir, and the worker gets absolute paths (read-only for it:
bubblewrap binds the whole filesystem read-only except its scratch and output dirs).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from discovery.config import RunConfig
from discovery.paths import cache_root


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()


def task_cache_root(config: RunConfig) -> Path:
    """The root of the task caches, as every task resolves it: task.cache_dir, $DISCOVERY_CACHE, ~/.cache/discovery."""
    return cache_root(config.task.cache_dir).absolute()


def hf_env() -> dict[str, str]:
    """HF_HOME and HF_HUB_CACHE as the hub library resolves them in this (trusted) process."""
    home = Path(os.environ.get("HF_HOME") or cache_home() / "huggingface").expanduser().absolute()
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub").expanduser().absolute()
    env = {"HF_HOME": str(home), "HF_HUB_CACHE": str(hub)}
    if os.environ.get("HF_DATASETS_CACHE"):
        env["HF_DATASETS_CACHE"] = str(Path(os.environ["HF_DATASETS_CACHE"]).expanduser().absolute())
    return env


def for_worker(config: RunConfig) -> RunConfig:
    """`config` with paths that do not depend on the worker's HOME (task.cache_dir made absolute): a new config."""
    options = {key: str(Path(value).expanduser().absolute()) if key in ("mtbench_dir",) and value else value
               for key, value in config.task.options.items()}
    return replace(config, task=replace(config.task, cache_dir=str(task_cache_root(config)), options=options))


def readable(config: RunConfig) -> tuple[str, ...]:
    """The folders a training worker reads: the task cache, the HF caches, and local model/data folders."""
    found = [str(task_cache_root(config)), *hf_env().values()]
    for name in (config.task.model, config.task.dataset, config.task.sft_dataset):
        if name and Path(name).expanduser().exists():
            found.append(str(Path(name).expanduser().absolute()))
    return tuple(dict.fromkeys(found))
