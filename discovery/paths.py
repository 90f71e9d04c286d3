"""Where discovery keeps its caches (task data, baseline results, MT-Bench files and judgments)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir` when given (task.cache_dir), else $DISCOVERY_CACHE, else ~/.cache/discovery."""
    root = cache_dir or os.environ.get("DISCOVERY_CACHE") or Path.home() / ".cache" / "discovery"
    return Path(root).expanduser()
