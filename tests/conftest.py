"""Shared test fixtures and environment: offline hub, paths of optional local resources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd: str | None = None):
    """Run the real `discovery` CLI in a subprocess; returns CompletedProcess with text output."""
    return subprocess.run(
        [sys.executable, "-m", "discovery.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or REPO,
    )


@pytest.fixture(scope="session")
def mtbench_dir() -> Path:
    path = SHARED / "data" / "mtbench"
    if not (path / "question.jsonl").is_file():
        pytest.skip("../shared/data/mtbench is absent")
    return path


@pytest.fixture(scope="session")
def test_gguf() -> str:
    """Path of the 0.5B test GGUF from ../shared/tools/get-test-llm; skips when unavailable."""
    tool = SHARED / "tools" / "get-test-llm"
    if not tool.is_file():
        pytest.skip("../shared/tools/get-test-llm is absent")
    try:
        out = subprocess.run([sys.executable, str(tool), "0.5b"], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("get-test-llm timed out")
    path = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not Path(path).is_file():
        pytest.skip(f"get-test-llm failed: {out.stderr.strip()[-200:]}")
    return path


def has_executable(name: str) -> bool:
    return shutil.which(name) is not None
