"""Crash safety: SIGKILL a run at several points, resume it, and nothing is lost, redone or re-bought."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_loop_e2e import TINY_TASK

from discovery.archive import Archive, db_path
from discovery.candidate import Origin, Status

REPO = Path(__file__).resolve().parents[1]
HEAD = "def {n}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")


def _loss(name: str, scale: float) -> str:
    return ("import torch.nn.functional as F\n\n\n" + HEAD.format(n=name) + MARGIN
            + f"    return -F.logsigmoid({scale} * beta * margin)\n")


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "discovery.cli", "run", *args, "--quiet"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, run_dir: Path, ready, timeout: float = 300) -> bool:
    """SIGKILL `proc` as soon as `ready(archive)` holds; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if db_path(run_dir).is_file():
            try:
                with Archive.open(run_dir, readonly=True) as archive:
                    hit = ready(archive, run_dir)
            except Exception:
                hit = False
            if hit:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
        time.sleep(0.02)
    proc.kill()
    pytest.fail("kill point not reached in time")


def _proposing(archive, run_dir) -> bool:
    log = run_dir / "run.log"
    return log.is_file() and "proposing #" in log.read_text()


def _training(archive, run_dir) -> bool:
    return any(c.status == Status.TRAINING for c in archive.candidates(origin=Origin.REPLAY))


def _written(archive, run_dir) -> bool:
    return any(e.candidate_id in {c.id for c in archive.candidates(origin=Origin.REPLAY)}
               for e in archive.evaluations())


def _evaluations(run_dir: Path) -> set:
    with Archive.open(run_dir, readonly=True) as archive:
        return {(e.candidate_id, e.result.seed, e.result.fidelity, e.result.beta, e.result.fitness)
                for e in archive.evaluations()}


def test_sigkill_at_several_points_then_resume(tmp_path):
    replay = tmp_path / "replay"
    replay.mkdir()
    names = [f"c{i}" for i in range(4)]
    for i, name in enumerate(names):
        (replay / f"{name}.py").write_text(_loss(name, 1.0 + 0.5 * i))
    run_dir = tmp_path / "run"
    common = ["--workers", "1", "--set", "train.max_steps=3", "--set", "eval.seeds=1", "--set",
              "eval.reeval_seeds=1", "--set", "eval.baselines=[dpo]", "--set", f"task.cache_dir={tmp_path / 'cache'}",
              "--set", TINY_TASK]
    first = ["--run-dir", str(run_dir), "--proposer", "replay", "--set", f"proposer.replay_dir={replay}", *common]
    kept: set = set()
    killed = 0
    for i, point in enumerate([_proposing, _training, _written]):
        proc = _start(first if i == 0 else ["--resume", str(run_dir)])
        killed += _kill_when(proc, run_dir, point)
        after = _evaluations(run_dir)
        assert kept <= after, "an evaluation stored before the kill was lost"
        kept = after
    assert killed >= 2, "the run finished before the kill points were reached"
    proc = _start(["--resume", str(run_dir)])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert kept <= _evaluations(run_dir)
    with Archive.open(run_dir, readonly=True) as archive:
        stored = [c.name for c in archive.candidates(origin=Origin.REPLAY)]
        assert sorted(stored) == names  # each proposal stored exactly once
        assert all(c.status in (Status.EVALUATED, Status.DUPLICATE) for c in archive.candidates())
        keys = [(e.candidate_id, e.result.seed, e.result.fidelity, e.result.beta) for e in archive.evaluations()]
        assert len(keys) == len(set(keys))  # none evaluated twice
        assert archive.events(kind="repeated") == []  # no job ran again after it was stored
        assert len(archive.events(kind="evaluation")) == len(keys)
        sessions = archive.events(kind="session")
        assert [s.message for s in sessions][:1] == ["started"] and len(sessions) >= 3
