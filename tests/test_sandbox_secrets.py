"""A candidate-like job tries to read root's and the host's secrets, with bubblewrap and without it.

/etc/shadow (and gshadow, sudoers), /root (the host's home here: root's history, caches, keys), a secret file
the host wrote outside the runner's folders, the environ of pid 1 and of the job's parent (the server) and the
host's own /proc/<pid>/environ. Each path must be unreadable, or (pid 1 and the parent) hold no secret.
"""

from __future__ import annotations

import os
import shutil

import pytest

from discovery.sandbox.isolation import IsolatedRunner, Limits

SECRET = "sk-secrets-test-4242"
FAST = Limits(wall_seconds=10, memory_mb=1024, cpu_seconds=20)
PATHS = ("bwrap", "no-bwrap")


@pytest.fixture(scope="module", params=PATHS)
def runner(request, tmp_path_factory):
    if request.param == "bwrap" and not shutil.which("bwrap"):
        pytest.skip("bubblewrap is not installed")
    secret = tmp_path_factory.mktemp("host-secret") / "token.txt"  # root's file outside the runner's folders
    secret.write_text(SECRET)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", SECRET)
        if request.param == "no-bwrap":
            env.setenv("DISCOVERY_SANDBOX_NO_BWRAP", "1")
        else:
            env.delenv("DISCOVERY_SANDBOX_NO_BWRAP", raising=False)
        with IsolatedRunner(preload=(), limits=FAST, threads=1) as r:
            if request.param == "bwrap" and "bwrap" not in r.isolation:
                pytest.skip("bubblewrap does not work on this host")
            yield r, str(secret)


def found(runner, extra=()):
    r, secret = runner
    home = os.path.expanduser("~")
    result = r.run("hostile.jobs:read_secrets", {"paths": [secret, home, f"/proc/{os.getpid()}/environ", *extra]})
    assert result.ok, result.error
    return result.value, secret, home


def test_root_only_files_are_unreadable(runner):
    value, _, _ = found(runner)
    for path in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.bash_history"):
        if os.path.exists(path):
            assert path not in value, f"{path} is readable: {value.get(path)!r}"


def test_the_hosts_files_and_home_are_unreadable(runner):
    value, secret, home = found(runner)
    assert secret not in value
    for folder in {"/root", home}:
        shown = set(filter(None, value.get(folder, "").split(",")))
        python = {p.split("/")[len(folder.rstrip("/").split("/"))] for p in python_folders() if p.startswith(folder + "/")}
        assert shown <= python, f"{folder} lists {sorted(shown - python)}"


def test_no_environ_holds_a_secret(runner):
    value, _, _ = found(runner)
    assert f"/proc/{os.getpid()}/environ" not in value  # the host: another pid namespace, or not dumpable
    for path, text in value.items():
        assert SECRET not in text, path
    assert "/proc/1/environ" not in value and not any(p.endswith("/environ") and p != "/proc/self/environ"
                                                      for p in value), sorted(value)


def python_folders():
    import sys

    return [os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, *sys.path) if p]
