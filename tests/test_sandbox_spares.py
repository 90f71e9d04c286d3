"""Spare children (sandbox/spares.py): forked, warmed up and hardened ahead, yet each job gets a fresh child
with its own limits and environment, and nothing of an earlier job."""

from __future__ import annotations

import os
import time

import pytest

from discovery.sandbox.isolation import IsolatedRunner, Limits

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
