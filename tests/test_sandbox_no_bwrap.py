"""Isolation without bubblewrap (forced with DISCOVERY_SANDBOX_NO_BWRAP=1, as on a plain `pip install`):
a job cannot write outside its scratch dir, read /etc/shadow or the host's /proc/<pid>/environ, or signal
the host; the missing layers are announced once. Each test asserts the layer it relies on, or skips saying
which one this host lacks."""

from __future__ import annotations

import os

import pytest

from discovery.sandbox import confine
from discovery.sandbox.isolation import IsolatedRunner, Limits, sweep_stale_scratch

SECRET = "sk-no-bwrap-secret-789"
FAST = Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20)



@pytest.fixture(scope="module")
def runner():
    with pytest.MonkeyPatch.context() as env:  # restored for the rest of the suite
        env.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
        env.setenv("OPENAI_API_KEY", SECRET)
        with IsolatedRunner(preload=("torch",), limits=FAST, threads=1) as r:
            yield r


def run(runner, job, payload=None):
    return runner.run(f"hostile.jobs:{job}", payload or {})


def need(runner, *layers):
    missing = [x for x in layers if x not in runner.isolation]
    if missing:
        pytest.skip(f"this host lacks the layer(s) {missing} (kernel or privileges)")


def test_the_no_bwrap_path_is_taken_and_says_which_layers(runner):
    assert "bwrap" not in runner.isolation and "readonly-fs" not in runner.isolation
    if confine.landlock_abi() >= 1:
        assert "landlock-fs" in runner.isolation
    if os.getuid() == 0 and confine.others_can_read(confine.python_paths()):
        assert "unprivileged-uid" in runner.isolation
        assert run(runner, "identity").value["uid"] == confine.NOBODY
    elif os.getuid() == 0:  # Python lives where nobody cannot read it (pyenv under /root): root, confined
        assert "no-capabilities" in runner.isolation
        if confine.landlock_abi() >= 1:
            assert "landlock-reads" in runner.isolation
    else:
        assert "host-not-dumpable" in runner.isolation


def test_missing_layers_are_printed_once(capfd):
    from discovery.sandbox import isolation

    saved = list(isolation._WARNED)
    isolation._WARNED.clear()
    try:
        isolation.warn_missing_layers(["seccomp", "landlock-fs"])
        isolation.warn_missing_layers(["seccomp"])
    finally:
        isolation._WARNED[:] = saved or isolation._WARNED
    err = capfd.readouterr().err
    assert err.count("running without bubblewrap") == 1
    assert "apt install bubblewrap" in err and "readonly-fs" in err


def test_cannot_write_outside_the_scratch_dir(runner, tmp_path):
    need(runner, "landlock-fs")
    for target in (tmp_path / "escaped.txt", "/tmp/discovery-no-bwrap-escape.txt",
                   os.path.join(os.path.dirname(os.path.abspath(__file__)), "escaped.txt")):
        result = run(runner, "write_file", {"path": str(target)})
        assert not result.ok and result.kind == "policy", result.error
        assert not os.path.exists(target)
    inside = run(runner, "write_scratch")
    assert inside.ok and inside.value.startswith(runner._scratch_base)
    assert not os.path.exists(inside.value), "the scratch dir is removed before the answer comes back"


def test_cannot_read_etc_shadow(runner):
    if not os.path.exists("/etc/shadow"):
        pytest.skip("no /etc/shadow on this host")
    if not {"unprivileged-uid", "landlock-reads"} & set(runner.isolation):
        pytest.skip("neither a uid drop nor Landlock read rules on this host")
    result = run(runner, "read_file", {"path": "/etc/shadow"})
    assert not result.ok and result.kind == "policy"


def test_cannot_read_the_hosts_environ(runner):
    need(runner, "host-not-dumpable")
    result = run(runner, "read_file", {"path": f"/proc/{os.getpid()}/environ"})
    assert not result.ok, result.value  # policy (not dumpable) or not found (own pid namespace)
    environs = run(runner, "read_proc_environ").value
    assert not any(SECRET in text for text in environs.values())


def test_cannot_signal_the_host(runner):
    if not {"landlock-signals", "unprivileged-uid"} & set(runner.isolation):
        pytest.skip("neither Landlock signal scoping nor a uid drop on this host")
    result = run(runner, "signal_process", {"pid": os.getpid()})
    assert not result.ok and result.kind in ("policy", "exception"), result.value


def test_a_validation_child_imports_what_was_not_loaded_before_the_fork(runner):
    # Python under root's home (pyenv in /root) is unreadable to nobody: the child must still import
    # stdlib modules lazily, as sympy does (mpmath -> colorsys); this made every proposal invalid
    result = run(runner, "import_module", {"name": "colorsys"})
    assert result.ok, result.error


def test_a_training_runner_keeps_root_but_no_capabilities(tmp_path, tmp_path_factory, monkeypatch):
    if os.getuid() != 0:
        pytest.skip("only a root host has capabilities to drop")
    monkeypatch.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "cache.txt").write_text("cached")
    secret = tmp_path_factory.mktemp("host-secrets") / "token.txt"  # root's file outside the runner's folders
    secret.write_text("sk-not-for-candidates")
    with IsolatedRunner(preload=("torch",), limits=FAST, threads=1, writable=(str(out),),
                        readable=(str(tmp_path),)) as r:
        assert "no-capabilities" in r.isolation
        assert run(r, "write_file", {"path": str(out / "ok.txt")}).ok  # its output folder is writable
        assert not run(r, "write_file", {"path": str(tmp_path / "no.txt")}).ok
        assert not run(r, "read_file", {"path": f"/proc/{os.getpid()}/environ"}).ok
        assert run(r, "read_file", {"path": str(tmp_path / "cache.txt")}).value == "cached"  # its caches
        if "landlock-reads" not in r.isolation:
            pytest.skip("this kernel has no Landlock: a uid-0 training runner can read root's files")
        assert not run(r, "read_file", {"path": str(secret)}).ok
        if os.path.exists("/etc/shadow"):
            assert not run(r, "read_file", {"path": "/etc/shadow"}).ok
        assert run(r, "read_file", {"path": "/etc/passwd"}).ok  # the rest of /etc stays readable


def test_stale_scratch_of_a_killed_host_is_swept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"discovery-sandbox-{dead.pid}-abc"
    (stale / "job-1").mkdir(parents=True)
    os.utime(stale, (0, 0))  # no owner lock (a folder from before the lock): stale once its pid is dead and it is old
    alive = tmp_path / f"discovery-sandbox-{os.getpid()}-def"
    alive.mkdir()
    assert sweep_stale_scratch(str(tmp_path)) == [stale.name]
    assert not stale.exists() and alive.exists()


def test_runner_close_and_a_killed_server_leave_no_folders():
    saved = os.environ.get("DISCOVERY_SANDBOX_NO_BWRAP")
    os.environ["DISCOVERY_SANDBOX_NO_BWRAP"] = "1"
    try:
        r = IsolatedRunner(preload=(), limits=FAST, threads=1)
        base = r._scratch_base
        r._proc.kill()  # SIGKILL of the server: the host still removes everything at close
        r._proc.wait()
        r.close()
    finally:
        if saved is None:
            os.environ.pop("DISCOVERY_SANDBOX_NO_BWRAP", None)
        else:
            os.environ["DISCOVERY_SANDBOX_NO_BWRAP"] = saved
    assert not os.path.exists(base)
