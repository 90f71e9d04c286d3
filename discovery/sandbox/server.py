"""The warm fork server (runs as `python -m discovery.sandbox.server REQ_FD RESP_FD`, scrubbed env).

Preloads modules once, runs the optional setup hook, then serves jobs: one forked, hardened child each,
killed at the wall-clock limit; its scratch directory is removed afterwards.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

from discovery.sandbox import child, wire

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


def own_network_namespace() -> bool:
    """Leave the host's network: a namespace with only a downed loopback (root, or via a user namespace)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) == 0:
            return True
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            return False
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            try:
                with open(f"/proc/self/{name}", "w") as fh:
                    fh.write(text)
            except OSError:
                pass
        return True
    except OSError:
        return False


def pin_threads() -> None:
    """Keep the server single-threaded in torch: OpenMP pools do not survive fork (children would hang)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def signal_name(status: int) -> str:
    try:
        return signal.Signals(status).name
    except ValueError:
        return str(status)


class Server:
    def __init__(self, config: dict, outer_layers: list[str]):
        self.scratch_base = config["scratch_base"]
        self.threads = config.get("threads")
        self.layers = list(outer_layers)
        self.child_layers: list[str] = []
        self.pending: int | None = None  # a child that answered but may still be exiting
        self.scratch: str | None = None

    def finish(self) -> None:
        """Reap the last child (after its answer went out) and remove its scratch directory."""
        if self.pending is not None:
            self._reap(self.pending, grace=2.0)
            self.pending = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def run_job(self, message: dict) -> dict:
        limits = message["limits"]
        scratch = tempfile.mkdtemp(dir=self.scratch_base, prefix="job-")
        read_fd, write_fd = os.pipe()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            child.main(write_fd, scratch, message, self.threads)
        os.close(write_fd)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        wall = float(limits["wall_seconds"])
        reply = wire.recv(read_fd, timeout=wall)
        elapsed = time.perf_counter() - start
        if reply is None:
            reply = self._no_reply(self._reap(pid, grace=0.0), elapsed, wall)
            self.pending = None
        else:
            self.pending = pid
        os.close(read_fd)
        log = self._log_tail(scratch)
        self.scratch = scratch
        expected = set(self.child_layers) if self.child_layers else None
        layers = [x for x in (reply.get("layers") or []) if expected is None or x in expected]
        return {"ok": bool(reply.get("ok")), "value": reply.get("value"), "kind": reply.get("kind", "crash"),
                "error": str(reply.get("traceback") or reply.get("error") or ""),
                "seconds": elapsed, "isolation": self.layers + layers, "log": log}

    @staticmethod
    def _reap(pid: int, grace: float) -> int:
        """Wait up to `grace` seconds for the child, then kill its process group; returns the wait status."""
        deadline = time.monotonic() + grace
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() >= deadline:
                for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                    try:
                        kill()
                    except OSError:
                        pass
                return os.waitpid(pid, 0)[1]
            time.sleep(0.002)

    @staticmethod
    def _no_reply(status: int, elapsed: float, wall: float) -> dict:
        if elapsed >= wall - 1e-3:
            return {"ok": False, "kind": "timeout", "error": f"killed after the {wall:g} s wall-clock limit"}
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            kind = {signal.SIGXCPU: "timeout", signal.SIGKILL: "memory", signal.SIGSYS: "policy"}.get(sig, "crash")
            reason = {"timeout": "CPU-time limit exceeded", "memory": "killed (out of memory?)",
                      "policy": "a forbidden system call"}.get(kind, "crashed")
            return {"ok": False, "kind": kind, "error": f"child {reason} (signal {signal_name(sig)})"}
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return {"ok": False, "kind": "crash", "error": f"child exited with status {code} without a result"}

    @staticmethod
    def _log_tail(scratch: str, n: int = 2000) -> str:
        try:
            with open(os.path.join(scratch, "output.log"), "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - n))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""


def prepare(config: dict) -> None:
    for path in reversed(config.get("sys_path") or []):
        if path not in sys.path:
            sys.path.insert(0, path)
    for name in config.get("preload") or []:
        importlib.import_module(name)
    pin_threads()
    if config.get("setup"):
        module, _, name = config["setup"].partition(":")
        getattr(importlib.import_module(module), name)(config.get("setup_payload") or {})
        pin_threads()
    gc.collect()
    gc.freeze()  # keep the warm heap out of the collector: fewer copy-on-write page faults per child


def main(argv: list[str]) -> int:
    req_fd, resp_fd = int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = wire.recv(req_fd)
    if config is None:
        return 1
    outer = [x for x in os.environ.get("DISCOVERY_SANDBOX_OUTER", "").split(",") if x]
    if "net-namespace" not in outer and own_network_namespace():
        outer.append("net-namespace")
    server = Server(config, outer)
    child.SECCOMP_BPF = child.compile_seccomp()
    try:
        prepare(config)
    except BaseException as exc:  # noqa: BLE001 - the host gets the reason
        wire.send(resp_fd, {"ready": False, "error": "".join(traceback.format_exception(exc)[-4:])})
        return 1
    probe = server.run_job({"job": "discovery.sandbox.child:probe", "payload": {},
                            "limits": {"wall_seconds": 30, "memory_mb": 1024, "cpu_seconds": 30,
                                       "file_mb": 1, "open_files": 64}})
    server.finish()
    server.child_layers = [x for x in probe["isolation"] if x not in server.layers]
    wire.send(resp_fd, {"ready": True, "layers": server.layers, "child_layers": server.child_layers})
    while True:
        message = wire.recv(req_fd)
        if message is None:
            return 0
        wire.send(resp_fd, server.run_job(message))
        server.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
