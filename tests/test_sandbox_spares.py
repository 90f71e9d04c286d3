"""Spare children (sandbox/spares.py): forked, warmed up and hardened ahead, yet each job gets a fresh child
with its own limits and environment, and nothing of an earlier job."""

from __future__ import annotations

import os
import time

import pytest

from discovery.sandbox import wire
from discovery.sandbox.isolation import IsolatedRunner, Limits
from discovery.sandbox.spares import WARM_UP, Spare, SparePool

FAST = Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20, file_mb=16)


@pytest.fixture(scope="module")
def runner():
    with IsolatedRunner(preload=("torch", "spare_jobs"), limits=FAST, threads=1, spares=2,
                        child_warm_up="spare_jobs:warm") as r:
        yield r


def mark(runner, name, limits=None, env=None):
    result = runner.run("spare_jobs:leave_a_mark", {"mark": name}, limits, env=env)
    assert result.ok, result.error
    return result.value


def test_every_job_runs_in_a_fresh_warmed_child(runner):
    seen = [mark(runner, f"job{i}") for i in range(4)]
    assert len({s["pid"] for s in seen}) == 4
    assert all(s["seen"] in ([], ["warmed"]) for s in seen), "at most the trusted warm-up ran before each job"
    assert all(s["cwd"].startswith(runner._scratch_base) for s in seen)
    assert not any(os.path.exists(s["cwd"]) for s in seen), "each job's folder is gone after its answer"


def test_an_idle_server_warms_its_spares_up(runner):
    mark(runner, "first")
    time.sleep(1.5)  # idle: both spares are asked to warm up, one after the other
    assert [mark(runner, name)["seen"] for name in ("second", "third")] == [["warmed"], ["warmed"]]


def test_a_job_with_other_limits_or_its_own_env_gets_them(runner):
    mark(runner, "a")
    other = mark(runner, "b", Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20, file_mb=3))
    assert other["file_limit"] == 3 * 1024 * 1024
    assert mark(runner, "c")["file_limit"] == 16 * 1024 * 1024
    assert mark(runner, "d", env={"RANK": "3"})["rank"] == "3"
    assert mark(runner, "e")["rank"] is None


def test_spares_leave_no_folders_after_close():
    with IsolatedRunner(preload=("spare_jobs",), limits=FAST, threads=1, spares=2,
                        child_warm_up="spare_jobs:warm") as r:
        mark(r, "x")
        base = r._scratch_base
    assert not os.path.exists(base)


def test_back_to_back_jobs_get_spares_warmed_up_beside_the_last_job(monkeypatch):
    """No idle time between jobs: with a core free ("always" here; "auto" checks the load) the next spare
    warms up while a job runs, so the jobs after the first still start in a warmed child."""
    monkeypatch.setenv("DISCOVERY_SANDBOX_WARM_BESIDE_JOB", "always")
    with IsolatedRunner(preload=("spare_jobs",), limits=FAST, threads=1, spares=2,
                        child_warm_up="spare_jobs:warm") as r:
        seen = [r.run("spare_jobs:leave_a_mark", {"mark": f"j{i}", "seconds": 0.3}).value["seen"] for i in range(4)]
    assert seen[1:] == [["warmed"]] * 3, seen


def test_spares_warm_up_beside_a_job_only_where_the_cpus_are_not_saturated(monkeypatch, tmp_path):
    pool = SparePool(str(tmp_path), 1, 1, dict(FAST.to_dict()), warm_up=lambda: None)
    job_r, job_w = os.pipe()
    pool.ready.append(Spare(12345, job_w, job_r, str(tmp_path), pool.limits))
    pool.state[12345] = "cold"
    monkeypatch.setattr(os, "getloadavg", lambda: (pool.cpus + 0.5, 0.0, 0.0))
    assert not pool.start_warm_up_beside_job(), "a saturated machine: the spare waits for the server to idle"
    assert pool.state[12345] == "cold"
    monkeypatch.setattr(os, "getloadavg", lambda: (pool.cpus - 0.5, 0.0, 0.0))
    assert pool.start_warm_up_beside_job()
    assert pool.state[12345] == "warming"
    assert wire.recv(job_r, timeout=1.0) == WARM_UP
    pool.state[12345] = "warm"  # a spare is warm for the next job (after idle time): the rest wait for idle
    pool.ready.append(Spare(12346, job_w, job_r, str(tmp_path), pool.limits))
    pool.state[12346] = "cold"
    assert not pool.start_warm_up_beside_job()
    for fd in (job_r, job_w):
        os.close(fd)
