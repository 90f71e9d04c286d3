"""Every folder the sandbox makes is gone when its job or server ends, also after a kill (issue 18, item 5).

Each case runs with a private temp dir and asserts no `discovery-sandbox-*` folder is left in it: SIGKILL of
the fork server (with and without bubblewrap), SIGTERM and SIGINT of `discovery validate` while its sandbox
is up, SIGTERM of `discovery run` while a candidate trains (slow), and the sweep of a killed host's folder
that never touches a live runner's (its owner holds the flock, even when its pid is not visible here).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from discovery.sandbox.isolation import IsolatedRunner, Limits
from discovery.sandbox.scratch import claim, lock_path, sweep_stale_scratch

FAST = Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20)
REPO = Path(__file__).resolve().parents[1]
SLOW_LOSS = ("import torch\n\n\ndef slow(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
             "reference_rejected_logps, beta):\n    x = policy_chosen_logps - policy_rejected_logps\n"
             "    for i in range(200000):\n        x = torch.tanh(x)\n    return -beta * x\n")


def left(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("discovery-sandbox-*"))  # folders and their lock files


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.mark.parametrize("bwrap", [True, False], ids=["bwrap", "no-bwrap"])
def test_sigkill_of_the_server_leaves_no_folder(private_tmp, monkeypatch, bwrap):
    if bwrap and not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    if not bwrap:
        monkeypatch.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
    runner = IsolatedRunner(preload=(), limits=FAST, threads=1)
    assert runner.run("hostile.jobs:write_scratch", {}).ok
    assert left(private_tmp)
    runner._proc.kill()  # SIGKILL of the server mid-life: the next job restarts it, close removes everything
    runner._proc.wait()
    assert runner.run("hostile.jobs:write_scratch", {}).ok
    runner._proc.kill()
    runner._proc.wait()
    runner.close()
    assert left(private_tmp) == []


def start_validate(tmp: Path, code: str, folder: Path) -> subprocess.Popen:
    path = folder / "candidate.py"
    path.write_text(code)
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "discovery.cli", "validate", str(path), "--json"], cwd=folder,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(ready, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ended before the signal point: {proc.stderr.read()[-2000:]}"
        if ready():
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail("signal point not reached in time")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_validate_killed_mid_way_leaves_no_folder(tmp_path, signum):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = start_validate(tmp, SLOW_LOSS, tmp_path)
    # the server answered (a child's folder exists besides its log): the sandbox is up; then the checks run
    wait_for(lambda: any(p.is_dir() for p in tmp.glob("discovery-sandbox-*/*")), proc)
    time.sleep(1.5)
    proc.send_signal(signum)
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert left(tmp) == [], (proc.returncode, [str(p) for p in tmp.rglob("*")], proc.stderr.read()[-2000:])


def test_the_sweep_removes_a_dead_hosts_folder_and_never_a_live_one(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"discovery-sandbox-{dead.pid}-abc"
    (stale / "job-1").mkdir(parents=True)
    claim_dead = subprocess.run([sys.executable, "-c", "import sys; from discovery.sandbox.scratch import claim; "
                                 "claim(sys.argv[1])", str(stale)], check=True)  # its owner exited: lock released
    assert claim_dead.returncode == 0 and os.path.exists(lock_path(stale))
    # a live runner whose pid looks dead from here (another pid namespace): its lock is still held
    hidden = tmp_path / f"discovery-sandbox-{dead.pid}-live"
    hidden.mkdir()
    fd = claim(str(hidden))
    legacy_new = tmp_path / f"discovery-sandbox-{dead.pid}-new"  # no lock file, just made: not yet stale
    legacy_new.mkdir()
    mine = tmp_path / f"discovery-sandbox-{os.getpid()}-own"
    mine.mkdir()
    try:
        assert sweep_stale_scratch(str(tmp_path)) == [stale.name]
        assert hidden.exists() and legacy_new.exists() and mine.exists()
    finally:
        os.close(fd)
    assert sweep_stale_scratch(str(tmp_path)) == [hidden.name]  # released: now it is stale
    old = time.time() - 3600
    os.utime(legacy_new, (old, old))
    assert sweep_stale_scratch(str(tmp_path)) == [legacy_new.name]
    assert mine.exists() and not os.path.exists(lock_path(stale)) and not os.path.exists(lock_path(hidden))


@pytest.mark.slow
def test_run_sigterm_while_a_candidate_trains_leaves_no_folder(tmp_path):
    from test_loop_e2e import TINY_TASK
    from test_resume import LossServer, _proposed, _read

    from discovery.candidate import Status

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run_dir = tmp_path / "run"
    with LossServer() as server:
        args = ["--run-dir", str(run_dir), "--proposer", "openai", "--model", "scripted-model", "--proposals", "3",
                "--workers", "1", "--seeds", "1", "--set", "executor.threads_per_worker=1",
                "--set", f"proposer.base_url={server.base_url}", "--set", "proposer.api_key_env=DISCOVERY_TEST_KEY",
                "--set", "train.max_steps=50", "--set", "eval.baselines=[dpo]",
                "--set", f"task.cache_dir={tmp_path / 'cache'}", "--set", TINY_TASK]
        env = {**os.environ, "DISCOVERY_TEST_KEY": "sk-test", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp)}
        proc = subprocess.Popen([sys.executable, "-m", "discovery.cli", "run", *args, "--quiet"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(c.status == Status.TRAINING for c in _read(run_dir, _proposed) or []), proc, timeout=600)
        assert left(tmp), "the run's sandbox folders exist while it trains"
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()
    assert left(tmp) == [], (proc.returncode, [str(p) for p in tmp.rglob("*")][:20], proc.stderr.read()[-2000:])
