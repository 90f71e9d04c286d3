"""Trained checkpoints between the isolated trainer and the trusted scorer, and which of them are kept.

Layout (under `executor.checkpoint_dir`, default <run_dir>/checkpoints):
    worker-<id>/job/checkpoint/   written by the worker's training ranks (the only folder they may write),
                                  read by the trusted scorer, deleted after scoring
    kept/<candidate>-seed<s>-<fidelity>-beta<b>/   the `executor.keep_checkpoints` best-scoring ones (moved here
                                  by the trusted process; deleted when a better one pushes them out)
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors",)
WEIGHT_FILES = ("adapter_config.json",)


def digest(folder: str | Path) -> str:
    """sha256 over the weight files of a checkpoint (names and bytes): the identity of the trained model."""
    h = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix in WEIGHT_SUFFIXES or path.name in WEIGHT_FILES:
            h.update(str(path.relative_to(root)).encode() + b"\0")
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    h.update(block)
    return h.hexdigest()[:24]


class CheckpointKeeper:
    """Keeps the checkpoints of the `keep` best fitnesses seen (thread-safe); deletes every other one."""

    def __init__(self, root: str | Path, keep: int = 0):
        self.root = Path(root)
        self.keep = max(0, int(keep))
        self._kept: list[tuple[float, Path]] = []
        self._lock = threading.Lock()

    def offer(self, folder: Path, name: str, fitness: float | None) -> Path | None:
        """Move `folder` into kept/ when it ranks among the best, else delete it; returns where it was kept."""
        with self._lock:
            if self.keep and fitness is not None and (
                    len(self._kept) < self.keep or fitness > min(f for f, _ in self._kept)):
                target = self.root / "kept" / name
                shutil.rmtree(target, ignore_errors=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(folder), str(target))
                self._kept.append((fitness, target))
                self._kept.sort(key=lambda item: -item[0])
                for _, dropped in self._kept[self.keep:]:
                    shutil.rmtree(dropped, ignore_errors=True)
                del self._kept[self.keep:]
                return target
        shutil.rmtree(folder, ignore_errors=True)
        return None
