"""Jobs that misbehave on purpose; the sandbox tests run them in IsolatedRunner children."""

from __future__ import annotations

import os
import pickle
import time


def environment(payload):
    return dict(os.environ)


def read_proc_environ(payload):
    """Every process environment this child can read (the host's must be invisible)."""
    found = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    found[pid] = fh.read().decode(errors="replace")
            except OSError:
                pass
    return found


def write_file(payload):
    with open(payload["path"], "w") as fh:
        fh.write("escaped")
    return "written"


def write_scratch(payload):
    with open("inside.txt", "w") as fh:
        fh.write("ok")
    return os.getcwd()


def tensor_tofile(payload):
    import torch

    torch.arange(4.0).numpy().tofile(payload["path"])
    return "written"


def connect(payload):
    import socket

    socket.create_connection(("127.0.0.1", payload["port"]), timeout=2)
    return "connected"


def fork(payload):
    return os.fork()


def fork_bomb(payload):
    while True:
        os.fork()


def subprocess_via_attribute(payload):
    import torch.utils.cpp_extension

    sub = torch.utils.cpp_extension.subprocess  # a module reached through attributes
    return sub.run(["touch", payload["path"]]).returncode


def pickle_exploit(payload):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {payload['path']}",))

    return pickle.loads(pickle.dumps(Evil()))


def compile_extension(payload):
    from torch.utils.cpp_extension import load_inline

    load_inline("evil", cpp_sources="int f() { return 1; }", functions=["f"])
    return "compiled"


def infinite_loop(payload):
    while True:
        pass


def sleep(payload):
    time.sleep(payload["seconds"])


def memory_bomb(payload):
    chunks = []
    while True:
        chunks.append(bytearray(64 * 1024 * 1024))


def torch_memory_bomb(payload):
    import torch

    return torch.ones(4096, 4096, 4096).sum().item()


def threads(payload):
    import threading

    import torch

    torch.set_num_threads(2)
    out = []
    workers = [threading.Thread(target=lambda: out.append(float(torch.ones(64, 64).sum()))) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"results": len(out), "torch_threads": torch.get_num_threads()}


def crash(payload):
    os.abort()


def raises(payload):
    raise ValueError("boom")


def not_json(payload):
    return object()


def shared_value(payload):
    from tests_hostile_state import VALUE  # noqa: F401 - module created by setup in the server

    return VALUE


def setup_state(payload):
    import sys
    import types

    module = types.ModuleType("tests_hostile_state")
    module.VALUE = payload["value"]
    sys.modules["tests_hostile_state"] = module


def read_file(payload):
    with open(payload["path"], "rb") as fh:
        return fh.read(200).decode(errors="replace")


def signal_process(payload):
    """Signal 0 only asks whether a signal would be allowed (nothing is sent)."""
    os.kill(payload["pid"], 0)
    return "allowed"


def identity(payload):
    return {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups()}


def import_module(payload):
    """A stdlib module nothing imported before the fork (the sandbox must let the child read Python)."""
    import importlib

    return importlib.import_module(payload["name"]).__name__


def visible_pids(payload):
    """The process ids this child can see in /proc (a pid namespace shows only the sandbox's own)."""
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def read_secrets(payload):
    """What a candidate would try to read: root's and the host's files, and the environ of pid 1 and of its parent.

    Returns {path: first bytes} for each one that could be read (listing for folders)."""
    paths = ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root", "/root/.bash_history", "/proc/1/environ",
             f"/proc/{os.getppid()}/environ", *payload.get("paths", [])]
    found = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                found[path] = ",".join(sorted(os.listdir(path)))[:200]
            else:
                with open(path, "rb") as fh:
                    found[path] = fh.read(200).decode(errors="replace")
        except OSError:
            pass
    return found
