"""The host's processes are invisible to sandbox children, with bubblewrap and without it (own pid, mount,
IPC, UTS and network namespaces through unshare + a fresh /proc); where the kernel refuses namespaces the
warning names the missing layer; a uid-0 child with nothing limiting its reads (no Landlock) is refused
unless the user opts in (`sandbox.allow_weak_isolation`)."""

from __future__ import annotations

import os
import shutil

import pytest

from discovery.sandbox import confine, isolation
from discovery.sandbox.isolation import IsolatedRunner, Limits, WeakIsolationError, bwrap_command

SECRET = "sk-pid-namespace-secret-321"
FAST = Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20)


def _bwrap_works() -> bool:
    if not shutil.which("bwrap"):
        return False
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DISCOVERY_SANDBOX_NO_BWRAP", raising=False)
        return bwrap_command("/tmp") is not None


@pytest.fixture(scope="module", params=["bwrap", "no-bwrap"])
def runner(request):
    with pytest.MonkeyPatch.context() as env:
        if request.param == "bwrap":
            if not _bwrap_works():
                pytest.skip("bubblewrap is missing or does not work here")
            env.delenv("DISCOVERY_SANDBOX_NO_BWRAP", raising=False)
        else:
            env.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
        env.setenv(isolation.ALLOW_WEAK, "1")  # this test is about pids, not about refusing weak hosts
        env.setenv("OPENAI_API_KEY", SECRET)
        with IsolatedRunner(preload=(), limits=FAST, threads=1) as r:
            if "pid-namespace" not in r.isolation:
                pytest.skip(f"this kernel gave the {request.param} server no pid namespace")
            yield r


def run(runner, job, payload=None):
    return runner.run(f"hostile.jobs:{job}", payload or {})


def test_the_host_pid_is_not_visible(runner):
    pids = run(runner, "visible_pids").value
    assert os.getpid() not in pids and runner._proc.pid not in pids
    assert max(pids) < 100, pids  # only the sandbox's own few processes


def test_cannot_read_the_hosts_environ(runner):
    result = run(runner, "read_file", {"path": f"/proc/{os.getpid()}/environ"})
    assert not result.ok, result.value
    assert not any(SECRET in text for text in run(runner, "read_proc_environ").value.values())


def test_cannot_signal_the_host(runner):
    result = run(runner, "signal_process", {"pid": os.getpid()})
    assert not result.ok and ("ProcessLookupError" in result.error or result.kind == "policy"), result.error


def test_a_killed_launcher_takes_the_namespace_with_it(monkeypatch):
    monkeypatch.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
    monkeypatch.setenv(isolation.ALLOW_WEAK, "1")
    r = IsolatedRunner(preload=(), limits=FAST, threads=1)
    try:
        if "pid-namespace" not in r.isolation:
            pytest.skip("no pid namespace on this kernel")
        assert r.run("hostile.jobs:identity", {}).ok
        r._proc.kill()  # the outer process: the server (pid 1 inside) dies with it (PR_SET_PDEATHSIG)
        r._proc.wait()
        again = r.run("hostile.jobs:identity", {})  # a fresh server
        assert again.ok, again.error
    finally:
        r.close()


def test_without_namespaces_the_warning_names_the_pid_namespace(monkeypatch, capfd):
    monkeypatch.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
    monkeypatch.setenv("DISCOVERY_SANDBOX_TEST_NO_NAMESPACES", "1")
    monkeypatch.setenv(isolation.ALLOW_WEAK, "1")
    monkeypatch.setattr(isolation, "_WARNED", [])
    with IsolatedRunner(preload=(), limits=FAST, threads=1) as r:
        assert "pid-namespace" not in r.isolation
    err = capfd.readouterr().err
    assert "pid-namespace" in err.split("in force instead")[0] and "apt install bubblewrap" in err


def test_a_root_child_without_landlock_is_refused_unless_allowed(monkeypatch, tmp_path, capfd):
    if os.getuid() != 0:
        pytest.skip("only a root host has uid-0 children")
    monkeypatch.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
    monkeypatch.setenv(confine.TEST_NO_LANDLOCK, "1")  # simulate a kernel without Landlock
    monkeypatch.delenv(isolation.ALLOW_WEAK, raising=False)
    readable = (str(tmp_path),)  # a runner reading caches keeps uid 0 (nobody could not read root's caches)
    with pytest.raises(WeakIsolationError) as info:
        IsolatedRunner(preload=(), limits=FAST, threads=1, readable=readable)
    assert "sandbox.allow_weak_isolation=true" in str(info.value) and "bubblewrap" in str(info.value)
    assert "\n" not in str(info.value)  # one clear line
    isolation.allow_weak_isolation(True)
    try:
        with IsolatedRunner(preload=(), limits=FAST, threads=1, readable=readable) as r:
            assert not {"landlock-fs", "landlock-reads", "unprivileged-uid"} & set(r.isolation)
            assert r.run("hostile.jobs:identity", {}).value["uid"] == 0
    finally:
        isolation.allow_weak_isolation(False)


def test_a_root_child_that_drops_to_nobody_needs_no_landlock(monkeypatch):
    if os.getuid() != 0 or not confine.others_can_read(confine.python_paths()):
        pytest.skip("needs a root host whose Python nobody can read")
    monkeypatch.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
    monkeypatch.setenv(confine.TEST_NO_LANDLOCK, "1")
    monkeypatch.delenv(isolation.ALLOW_WEAK, raising=False)
    with IsolatedRunner(preload=(), limits=FAST, threads=1) as r:
        assert "unprivileged-uid" in r.isolation
        assert r.run("hostile.jobs:identity", {}).value["uid"] == confine.NOBODY


def test_sandbox_allow_weak_isolation_in_the_config_opts_the_process_in(monkeypatch):
    from discovery.config import load_config

    monkeypatch.setenv(isolation.ALLOW_WEAK, "")  # restored (unset) after the test
    assert load_config(None, []).sandbox.allow_weak_isolation is False
    assert not os.environ[isolation.ALLOW_WEAK]
    load_config(None, ["sandbox.allow_weak_isolation=true"])
    assert os.environ[isolation.ALLOW_WEAK] == "1"
