"""Layer 2: IsolatedRunner children are scrubbed, limited, cut off from network, exec, fork and the host's files."""

from __future__ import annotations

import os
import socket

import pytest

from discovery.sandbox.isolation import IsolatedRunner, Limits

SECRETS = {"OPENAI_API_KEY": "sk-test-secret-123", "HF_TOKEN": "hf_test_secret_456",
           "MY_SERVICE_PASSWORD": "hunter2"}
FAST = Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20)


@pytest.fixture(scope="module")
def runner():
    """A runner started while the parent environment holds (fake) secrets."""
    with pytest.MonkeyPatch.context() as env:  # the secrets are set for this module only
        for key, value in SECRETS.items():
            env.setenv(key, value)
        with IsolatedRunner(preload=("torch",), setup="hostile.jobs:setup_state", setup_payload={"value": 42},
                            limits=FAST, threads=2) as r:
            yield r


def run(runner, job, payload=None, limits=None):
    return runner.run(f"hostile.jobs:{job}", payload or {}, limits)


def test_layers_are_detected_and_recorded(runner):
    result = run(runner, "environment")
    assert result.ok
    for layer in ("env-scrub", "scratch-dir", "rlimits", "wall-clock"):
        assert layer in result.isolation
    assert "net-namespace" in result.isolation  # bubblewrap or unshare: both work on Linux CI hosts
    assert result.isolation == runner.isolation


def test_no_secret_reaches_the_child(runner):
    env = run(runner, "environment").value
    assert not set(SECRETS) & set(env)
    assert not any(secret in value for secret in SECRETS.values() for value in env.values())
    environs = run(runner, "read_proc_environ").value
    assert environs, "the child should at least read its own environment"
    for text in environs.values():
        for secret in SECRETS.values():
            assert secret not in text


def test_setup_state_is_shared_copy_on_write(runner):
    assert run(runner, "shared_value").value == 42


def test_writes_land_only_in_the_scratch_dir(runner, tmp_path):
    outside = tmp_path / "escaped.txt"
    result = run(runner, "write_file", {"path": str(outside)})
    cwd = run(runner, "write_scratch")
    assert cwd.ok and cwd.value.startswith(runner._scratch_base)
    if not {"readonly-fs", "landlock-fs"} & set(runner.isolation):
        pytest.skip("neither bubblewrap's read-only filesystem nor Landlock on this host: writes are not contained")
    # refused (read-only, Landlock) or absent (bubblewrap binds only what jobs need: tmp_path does not exist there)
    assert result.kind in ("policy", "exception") and not result.ok and not outside.exists()
    result = run(runner, "tensor_tofile", {"path": str(tmp_path / "t.bin")})
    assert not result.ok and not (tmp_path / "t.bin").exists()
    assert not os.path.exists(cwd.value), "the scratch dir is removed after the job"


def test_no_network(runner):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        result = run(runner, "connect", {"port": server.getsockname()[1]})
    finally:
        server.close()
    assert not result.ok and result.kind in ("policy", "exception")


@pytest.mark.parametrize("job", ["fork", "fork_bomb", "subprocess_via_attribute", "pickle_exploit"])
def test_no_fork_or_exec(runner, job, tmp_path):
    if "seccomp" not in runner.isolation:
        pytest.skip("seccomp unavailable on this host")
    marker = tmp_path / "pwned"
    result = run(runner, job, {"path": str(marker)})
    assert not marker.exists()
    if job == "pickle_exploit":  # os.system reports failure by its status instead of raising
        assert result.ok and result.value != 0
    else:
        assert result.kind == "policy", result.error


def test_extension_compilation_is_blocked(runner):
    result = run(runner, "compile_extension")
    assert not result.ok


def test_threads_still_work(runner):
    result = run(runner, "threads")
    assert result.ok and result.value == {"results": 4, "torch_threads": 2}


def test_wall_clock_kill(runner):
    result = run(runner, "infinite_loop", limits=Limits(wall_seconds=1.5, cpu_seconds=30))
    assert result.kind == "timeout" and 1.4 < result.seconds < 5


def test_cpu_limit(runner):
    result = run(runner, "infinite_loop", limits=Limits(wall_seconds=20, cpu_seconds=1))
    assert result.kind == "timeout" and result.seconds < 10


@pytest.mark.parametrize("job", ["memory_bomb", "torch_memory_bomb"])
def test_memory_limit(runner, job):
    result = run(runner, job, limits=Limits(wall_seconds=20, memory_mb=512))
    assert result.kind == "memory"


@pytest.mark.parametrize("job, kind", [("crash", "crash"), ("raises", "exception"), ("not_json", "exception")])
def test_failures_are_reported_and_the_server_survives(runner, job, kind):
    result = run(runner, job)
    assert not result.ok and result.kind == kind
    assert run(runner, "environment").ok


def test_runner_restarts_a_dead_server(runner):
    runner._proc.kill()
    runner._proc.wait()
    assert run(runner, "shared_value").value == 42
