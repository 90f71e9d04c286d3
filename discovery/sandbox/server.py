"""The warm fork server (runs as `python -m discovery.sandbox.server REQ_FD RESP_FD`, scrubbed env).

Preloads modules once, runs the optional setup hook, then serves jobs: one forked, hardened child each,
killed at the wall-clock limit; its scratch directory is removed afterwards.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback

from discovery.sandbox import child, namespaces, wire
from discovery.sandbox import env as sandbox_env
from discovery.sandbox.confine import host_not_dumpable, others_can_read, python_paths
from discovery.sandbox.spares import IDLE_WARM_SECONDS, WARMED, SparePool

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
        namespaces.map_self(uid, gid)
        return True
    except OSError:
        return False


def bring_up_loopback() -> None:
    """Switch on `lo` in a fresh network namespace (bubblewrap does it itself): the only interface there."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, struct.pack("16sH", b"lo", 0)))[1]
            fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))
    except OSError:
        pass  # without it, ranks cannot rendezvous; single-process jobs do not care


def free_loopback_port() -> int:
    """A free TCP port on this namespace's loopback for a distributed job's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        self.spares = SparePool(self.scratch_base, config.get("spares", 1), self.threads, config.get("limits"),
                                beside_job=config.get("warm_beside_job", "auto"))
        self.retiring: list[tuple[int | None, str | None, float]] = []  # (pid, scratch, kill deadline)

    def fill_spares(self) -> None:
        """Fork the next jobs' children now (see spares.py); retired spares are reaped like finished jobs."""
        self.spares.fill()
        self._collect_retired()

    def _collect_retired(self) -> None:
        deadline = time.monotonic() + 2.0
        self.retiring += [(pid, scratch, deadline) for pid, scratch in self.spares.leaving]
        self.spares.leaving.clear()

    def finish(self, wait: bool = True) -> None:
        """Reap the last child (after its answer went out) and remove its scratch directory.

        `wait=False`: only what is done already; the rest stays in `retiring` (a child that answered
        is killed 2 s later at the latest), so the next job need not wait for an exiting child."""
        if self.pending is not None or self.scratch is not None:
            self.retiring.append((self.pending, self.scratch, time.monotonic() + 2.0))
            self.pending = self.scratch = None
        left = []
        for pid, scratch, deadline in self.retiring:
            if pid is not None and not self._reaped(pid, deadline, wait):
                left.append((pid, scratch, deadline))
            elif scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        self.retiring = left

    def _reaped(self, pid: int, deadline: float, wait: bool) -> bool:
        if wait or time.monotonic() >= deadline:
            self._reap(pid, grace=max(0.0, deadline - time.monotonic()))
            return True
        return os.waitpid(pid, os.WNOHANG)[0] != 0

    def wait_for_job(self, fd: int) -> None:
        """Until a job arrives on `fd`: reap the children that are exiting and remove their folders; idle for
        IDLE_WARM_SECONDS, have the spares warm up one at a time (spares.py)."""
        idle_since = time.monotonic()
        while True:
            warming = self.spares.warming_fd()
            if not self.retiring and warming is None and not self.spares.cold():
                return  # nothing left to do: block on the job pipe
            now = time.monotonic()
            wait = 0.005 if self.retiring else max(0.0, idle_since + IDLE_WARM_SECONDS - now)
            ready = select.select([fd] + ([warming] if warming is not None else []), [], [],
                                  None if warming is not None and not self.retiring else wait)[0]
            if fd in ready:
                return
            if warming in ready:
                self.spares.warmed(warming)
            self.finish(wait=False)
            if time.monotonic() - idle_since >= IDLE_WARM_SECONDS:
                self.spares.start_warm_up()
                self._collect_retired()

    def retire_scratch(self) -> None:
        """Move the last job's scratch dir out of its path at once (removed in `finish`, after the reap)."""
        if self.scratch is not None:
            trash = os.path.join(self.scratch_base, ".done-" + os.path.basename(self.scratch))
            try:
                os.rename(self.scratch, trash)
                self.scratch = trash
            except OSError:
                self.finish()

    def run_job(self, message: dict, spares: bool = True) -> dict:
        """One job in `message["processes"]` forked, hardened children (default 1: no ranks).

        `spares`: a single-process job goes to a spare child where one expects its limits (spares.py), and
        the pool is refilled while it runs; False (the start-up probe): a fresh child, the pool untouched.

        With N > 1 the children are the ranks of one distributed job (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1):
        they rendezvous on this server's loopback, inside its network namespace. Rank 0's reply is the job's;
        the first rank that fails fails the job and the others are killed.
        """
        limits = message["limits"]
        processes = max(1, int(message.get("processes") or 1))
        start = time.perf_counter()
        spare = self.spares.take(message) if processes == 1 and spares else None
        if spare is not None:
            scratch, ranks = spare.scratch, [(spare.pid, spare.reply_fd)]
        else:
            scratch = tempfile.mkdtemp(dir=self.scratch_base, prefix="job-")
            ranks = self._fork_ranks(message, scratch, processes)
        if spares:
            self.fill_spares()  # the next job's child is forked and warmed up while this one runs
            self.spares.start_warm_up_beside_job()  # back to back too, where a core is free (spares.py)
        wall = float(limits["wall_seconds"])
        replies, culprit = self._gather(ranks, start + wall)
        elapsed = time.perf_counter() - start
        statuses = {}
        for i, (pid, fd) in enumerate(ranks):
            if i > 0 or replies[0] is None:  # rank 0, when it answered, exits on its own (reaped in finish)
                statuses[i] = self._reap(pid, grace=2.0 if replies[i] is not None else 0.0)
            os.close(fd)
        self.pending = ranks[0][0] if replies[0] is not None else None
        if culprit is None:  # every rank answered, or the wall clock ran out
            reply = replies[0] if replies[0] is not None else self._no_reply(statuses[0], elapsed, wall)
        else:
            reply = replies[culprit] or self._no_reply(statuses[culprit], elapsed, wall)
        if processes > 1 and not reply.get("ok"):
            rank = 0 if culprit is None else culprit
            reply = {**reply, "error": f"rank {rank} of {processes}: {reply.get('error') or ''}",
                     "traceback": f"rank {rank} of {processes}: {reply.get('traceback') or reply.get('error') or ''}"}
        log = self._log_tail(scratch)
        self.scratch = scratch
        expected = set(self.child_layers) if self.child_layers else None
        layers = [x for x in (reply.get("layers") or []) if expected is None or x in expected]
        return {"ok": bool(reply.get("ok")), "value": reply.get("value"), "kind": reply.get("kind", "crash"),
                "error": str(reply.get("traceback") or reply.get("error") or ""),
                "seconds": elapsed, "isolation": self.layers + layers, "log": log}

    def _fork_ranks(self, message: dict, scratch: str, processes: int) -> list[tuple[int, int]]:
        """(pid, reply fd) of each rank; rank 0 works in `scratch`, the others in folders under it."""
        port = free_loopback_port() if processes > 1 else 0
        ranks: list[tuple[int, int]] = []
        for rank in range(processes):
            folder = scratch if rank == 0 else tempfile.mkdtemp(dir=scratch, prefix=f"rank{rank}-")
            rank_message = message if processes == 1 else {**message, "env": {
                **(message.get("env") or {}), "RANK": str(rank), "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes),
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}}
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                child.main(write_fd, folder, rank_message, self.threads)
            os.close(write_fd)
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass
            ranks.append((pid, read_fd))
        return ranks

    @staticmethod
    def _gather(ranks: list[tuple[int, int]], deadline: float) -> tuple[list[dict | None], int | None]:
        """Each rank's reply (None: none came) and the first rank that failed (None: none did, or time ran out)."""
        replies: list[dict | None] = [None] * len(ranks)
        waiting = {fd: i for i, (_, fd) in enumerate(ranks)}
        while waiting:
            left = deadline - time.perf_counter()
            ready = select.select(list(waiting), [], [], left)[0] if left > 0 else []
            if not ready:
                return replies, None
            for fd in ready:
                i = waiting.pop(fd)
                replies[i] = wire.recv(fd, timeout=max(0.1, deadline - time.perf_counter()))
                if replies[i] == WARMED:  # a spare that was still warming up when it got its job
                    replies[i] = None
                    waiting[fd] = i
                    continue
                if replies[i] is None or not replies[i].get("ok"):
                    return replies, i
        return replies, None

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


def _hook(spec: str | None):
    """`module:function` as a callable of no arguments (None: none)."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


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
    host_not_dumpable()  # the server's (and bwrap's) /proc/<pid>/environ stays closed to capability-less children
    outer = [x for x in os.environ.get("DISCOVERY_SANDBOX_OUTER", "").split(",") if x]
    if "bwrap" not in outer:  # pid, mount, IPC, UTS and network namespaces of its own, with a fresh /proc
        outer += namespaces.enter((req_fd, resp_fd))
        if "net-namespace" in outer:
            bring_up_loopback()
    if "net-namespace" not in outer and own_network_namespace():
        outer.append("net-namespace")
        bring_up_loopback()
    server = Server(config, outer)
    child.CONFINE = {"bwrap": "bwrap" in outer, "writable": list(config.get("writable") or []),
                     "readable": list(config.get("readable") or []), "drop_root": os.getuid() == 0 and not config.get("readable")
                     and others_can_read(python_paths())}
    child.SECCOMP_BPF = child.compile_seccomp()
    if "net-namespace" in outer:  # sockets reach only this namespace's loopback: ranks may rendezvous
        child.SECCOMP_BPF_SOCKETS = child.compile_seccomp(sockets=True)
    try:
        prepare(config)
    except BaseException as exc:  # noqa: BLE001 - the host gets the reason
        wire.send(resp_fd, {"ready": False, "error": "".join(traceback.format_exception(exc)[-4:])})
        return 1
    probe = server.run_job({"job": "discovery.sandbox.child:probe", "payload": {},
                            "limits": {"wall_seconds": 30, "memory_mb": 1024, "cpu_seconds": 30,
                                       "file_mb": 1, "open_files": 64}}, spares=False)
    server.finish()
    server.child_layers = [x for x in probe["isolation"] if x not in server.layers]
    server.spares.warm_up = _hook(config.get("child_warm_up"))  # importable only after prepare()
    child.SCRUBBED_ENV = sandbox_env.scrubbed(os.environ)
    server.fill_spares()
    wire.send(resp_fd, {"ready": True, "layers": server.layers, "child_layers": server.child_layers})
    while True:
        server.wait_for_job(req_fd)
        message = wire.recv(req_fd)
        if message is None:
            server.spares.close()
            server._collect_retired()
            server.finish()
            return 0
        reply = server.run_job(message)
        server.retire_scratch()  # the job's scratch path is gone before the host hears the answer
        wire.send(resp_fd, reply)
        server.finish(wait=False)  # an exiting child does not hold up the next job; reaped while idle


if __name__ == "__main__":
    sys.exit(main(sys.argv))
