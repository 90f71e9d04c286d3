"""Run untrusted jobs in isolated children of a warm fork server.

The host starts one server process per `IsolatedRunner` with a scrubbed environment (no secrets),
wrapped in bubblewrap where the host has it (read-only filesystem, own PID/IPC/network namespaces)
or in a network namespace of its own otherwise. The server imports the heavy modules once
(`preload`), runs an optional `setup` hook, then forks one child per job; each child hardens itself
(rlimits, scratch dir, seccomp) before it runs the job. Messages are length-prefixed JSON both ways:
nothing a child says is ever unpickled by the host.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

from discovery.sandbox import confine, wire
from discovery.sandbox import env as sandbox_env
from discovery.sandbox.scratch import SCRATCH_PREFIX, claim, release, sweep_stale_scratch

KINDS = ("ok", "exception", "timeout", "memory", "crash", "policy")


@dataclass
class Limits:
    """Resource limits for one child: wall clock, address space, CPU time, file size, open files."""

    wall_seconds: float = 20.0
    memory_mb: int = 2048
    cpu_seconds: int = 60
    file_mb: int = 16
    open_files: int = 64  # memory_mb <= 0: no address-space cap (CUDA maps far more than it uses)
    loopback_sockets: bool = False  # training ranks: sockets, but only where the network namespace has no way out

    @classmethod
    def from_config(cls, config, training: bool = False) -> Limits:
        """Limits from a `SandboxConfig`; `training=True` uses its train_timeout as the wall clock."""
        wall = (config.train_timeout or 600.0) if training else config.timeout
        return cls(wall_seconds=float(wall), memory_mb=config.memory_mb,
                   cpu_seconds=max(int(config.cpu_seconds), int(wall) + 1) if training else config.cpu_seconds,
                   file_mb=config.max_file_mb, open_files=config.max_open_files)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JobResult:
    """What came back from one isolated job; `isolation` lists the layers that were in force."""

    ok: bool
    value: Any = None
    error: str = ""
    kind: str = "ok"
    seconds: float = 0.0
    isolation: list[str] = field(default_factory=list)
    log: str = ""  # tail of the child's stdout/stderr

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SandboxStartError(RuntimeError):
    """The fork server could not be started."""


class WeakIsolationError(SandboxStartError):
    """Without bubblewrap, the children would run as root with nothing limiting what they read."""


ALLOW_WEAK = "DISCOVERY_SANDBOX_ALLOW_WEAK_ISOLATION"  # set by `sandbox.allow_weak_isolation=true`
WEAK_MESSAGE = ("refusing to run untrusted code: without bubblewrap its children stay uid 0 (Python or the caches "
                "are readable only by root) and this kernel has no Landlock to limit what they read; "
                "`apt install bubblewrap`, or accept the risk with sandbox.allow_weak_isolation=true")


def allow_weak_isolation(allowed: bool) -> None:
    """Opt in (or out) for this process and the runners it starts (`sandbox.allow_weak_isolation`)."""
    if allowed:
        os.environ[ALLOW_WEAK] = "1"
    else:
        os.environ.pop(ALLOW_WEAK, None)


def weak(isolation: list[str]) -> bool:
    """Root children (no uid drop) that nothing stops from reading root's files (no bwrap, no Landlock reads)."""
    return (os.getuid() == 0 and "bwrap" not in isolation
            and not {"unprivileged-uid", "landlock-reads"} & set(isolation))


def bwrap_command(scratch_base: str, writable: tuple[str, ...] = (), readable: tuple[str, ...] = (),
                  gpu: bool = False) -> list[str] | None:
    """The bubblewrap prefix for the server, or None when bubblewrap is missing or does not work here.

    The root is an empty read-only tmpfs with only `visible_binds` bound into it read-only (system folders,
    a few /etc files, Python and this package, the `readable` caches): /etc/shadow, /root, /home and the
    host's other files do not exist inside. Only the scratch base and the `writable` folders (a training
    job's output dir) are writable. `gpu` (training runners of a task that trains on a GPU only): the
    devices, driver state and driver libraries of `gpu_binds`; validation runners get none of them.
    """
    exe = shutil.which("bwrap")
    if not exe or os.environ.get("DISCOVERY_SANDBOX_NO_BWRAP"):
        return None
    devices = gpu_binds() if gpu else []
    writes = [arg for folder in writable for arg in ("--bind", folder, folder)]  # after reads: they win inside
    cmd = [exe, "--tmpfs", "/", *visible_binds(readable), "--dev", "/dev", "--proc", "/proc", *devices,
           "--bind", scratch_base, scratch_base, *writes, "--remount-ro", "/",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--"]
    try:
        probe = subprocess.run(cmd + ["true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return cmd if probe.returncode == 0 else None


def visible_binds(readable: tuple[str, ...] = ()) -> list[str]:
    """bwrap arguments that make `confine.read_roots` (plus this package's import path) visible, read-only.

    Outermost folders only, shallowest first (a later bind of a parent would hide a child's); a symlink at
    the top level or in /etc (`/lib -> usr/lib`, `/etc/localtime`) is recreated as the same symlink."""
    paths = [p for p in confine.read_roots(list(readable)) + import_path() if p not in ("/proc", "/dev")]
    chosen: list[str] = []
    for path in sorted({os.path.abspath(p) for p in paths}, key=lambda p: (p.count("/"), p)):
        if os.path.lexists(path) and not any(path.startswith(parent.rstrip("/") + "/") for parent in chosen):
            chosen.append(path)
    args: list[str] = []
    for path in chosen:
        if os.path.islink(path) and os.path.dirname(path) in ("/", "/etc"):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind-try", path, path]
    return args


def gpu_binds(root: str = "/", libraries: list[str] | None = None) -> list[str]:
    """bwrap arguments that let CUDA (or ROCm) work inside: bubblewrap's fresh /dev lacks the GPU nodes.

    The device nodes (/dev/nvidia0..N, nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset, the
    nvidia-caps folder; /dev/kfd, /dev/dri) read-write, /proc/driver/nvidia read-only (the fresh /proc has
    it too; bound for kernels where it is hidden), and the folders of the driver's user-space libraries
    (`driver_libraries`: libcuda, libnvidia-*) read-only where they lie outside the system folders already
    bound. `root` (tests: a fake tree) is where the nodes are looked for; inside, paths are the real ones.
    """
    import glob

    def under(path: str) -> str:
        return os.path.join(root, path.lstrip("/"))

    def inside(found: str) -> str:
        return "/" + os.path.relpath(found, root)

    nodes = sorted(glob.glob(under("/dev/nvidia*"))) + [under(d) for d in ("/dev/kfd", "/dev/dri")
                                                       if os.path.exists(under(d))]
    args = [arg for node in nodes for arg in ("--dev-bind-try", inside(node), inside(node))]
    if os.path.isdir(under("/proc/driver/nvidia")):
        args += ["--ro-bind-try", "/proc/driver/nvidia", "/proc/driver/nvidia"]
    bound = confine.SYSTEM_READ
    folders = sorted({os.path.dirname(lib) for lib in (driver_libraries() if libraries is None else libraries)})
    for folder in folders:
        if not any(folder == b or folder.startswith(b + "/") for b in bound):
            args += ["--ro-bind-try", folder, folder]
    return args


def driver_libraries() -> list[str]:
    """The NVIDIA driver's user-space libraries from the loader cache (`ldconfig -p`): libcuda.so*, libnvidia-*."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in listing.splitlines():
        name, _, path = line.strip().partition(" => ")
        if name.startswith(("libcuda.so", "libnvidia-")) and path.startswith("/"):
            found += [path, os.path.realpath(path)]  # the name the loader opens and the file it points to
    return found


def remove_at_exit(ref: weakref.ref, base: str) -> None:
    """At exit: stop a runner's server that is still up (it could still be making folders), then remove its folder."""
    runner = ref()
    if runner is not None:
        runner._kill_server()
    remove_folder(base)
    if runner is not None:
        fd, runner._owner_fd = getattr(runner, "_owner_fd", None), None
        release(base, fd)


def remove_folder(base: str, tries: int = 5) -> None:
    """rmtree, again for a moment while a dying server (killed, its inner process not yet gone) still adds entries."""
    for _ in range(tries):
        shutil.rmtree(base, ignore_errors=True)
        if not os.path.lexists(base):
            return
        time.sleep(0.1)


_WARNED: list[str] = []


def warn_missing_layers(isolation: list[str]) -> None:
    """Once per process: which layers bubblewrap would add, what stands in for them, how to get it."""
    if _WARNED:
        return
    _WARNED.append("yes")
    missing = [x for x in BWRAP_LAYERS if x not in isolation
               and not (x == "no-capabilities" and "unprivileged-uid" in isolation)]
    standing = [x for x in ("unprivileged-uid", "no-capabilities", "landlock-fs", "landlock-reads",
                            "landlock-signals", "host-not-dumpable", "pid-namespace", "mount-namespace",
                            "net-namespace", "seccomp") if x in isolation]
    absent = [x for x in ("landlock-fs", "seccomp") if x not in isolation]
    if not {"unprivileged-uid", "landlock-reads"} & set(isolation):
        absent.insert(0, "unprivileged-uid")
    print(f"discovery sandbox: running without bubblewrap; missing layers: {', '.join(missing)}"
          f"{'; also missing: ' + ', '.join(absent) if absent else ''}; in force instead: "
          f"{', '.join(standing) or 'none'}. For the full set: `apt install bubblewrap` (or your distribution's "
          "bubblewrap package); see docs/sandbox.md.", file=sys.stderr, flush=True)


def import_path() -> list[str]:
    """The host's module search path (absolute), with this package's root first."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [root] + [os.path.abspath(p or os.getcwd()) for p in sys.path]
    return list(dict.fromkeys(paths))


BWRAP_LAYERS = ["bwrap", "readonly-fs", "pid-namespace", "net-namespace", "no-capabilities"]


class IsolatedRunner:
    """A warm fork server; `.run(job, payload)` runs `module:function(payload)` in a fresh hardened child.

    Start it before the caller loads any secret. One caller thread at a time (runs are serialised).
    """

    def __init__(self, preload: tuple[str, ...] = ("torch",), setup: str | None = None,
                 setup_payload: dict | None = None, limits: Limits | None = None, threads: int | None = None,
                 start_timeout: float = 600.0, env: dict[str, str] | None = None, writable: tuple[str, ...] = (),
                 readable: tuple[str, ...] = (), spares: int = 1, child_warm_up: str | None = None,
                 gpu: bool = False):
        self.preload = tuple(preload)
        self.writable = tuple(os.path.abspath(w) for w in writable)  # besides scratch: folders jobs may write
        self.readable = tuple(os.path.abspath(r) for r in readable)  # read-only for jobs (caches, models)
        self.env = dict(env or {})  # allowlisted variables to set in the server (e.g. CUDA_VISIBLE_DEVICES)
        self.gpu = gpu  # training on a GPU: bind the GPU devices and driver into bubblewrap (validation: never)
        self.setup = setup
        self.setup_payload = setup_payload or {}
        self.limits = limits or Limits()
        self.threads = threads
        self.spares = spares  # children forked, warmed up (`child_warm_up`, trusted) and hardened ahead of jobs
        self.child_warm_up = child_warm_up
        self.start_timeout = start_timeout
        self.layers: list[str] = []
        self.child_layers: list[str] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        sweep_stale_scratch()
        self._scratch_base = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
        self._owner_fd = claim(self._scratch_base)
        atexit.register(remove_at_exit, weakref.ref(self), self._scratch_base)  # also when close() is never reached
        self._start()

    # ------------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        config = {"preload": list(self.preload), "setup": self.setup, "setup_payload": self.setup_payload,
                  "scratch_base": self._scratch_base, "threads": self.threads, "limits": self.limits.to_dict(),
                  "spares": self.spares, "child_warm_up": self.child_warm_up,
                  "warm_beside_job": os.environ.get("DISCOVERY_SANDBOX_WARM_BESIDE_JOB", "auto"),  # spares.py
                  "sys_path": import_path(), "writable": list(self.writable), "readable": list(self.readable)}
        prefix = bwrap_command(self._scratch_base, self.writable, self.readable, gpu=self.gpu)
        host_layers = [] if prefix or not confine.host_not_dumpable() else ["host-not-dumpable"]
        cmd = (prefix or []) + [sys.executable, "-m", "discovery.sandbox.server", str(req_r), str(resp_w)]
        env = sandbox_env.scrubbed({**os.environ, **self.env})
        env["PYTHONPATH"] = os.pathsep.join(import_path())
        env["DISCOVERY_SANDBOX_OUTER"] = ",".join(BWRAP_LAYERS if prefix else [])
        self._server_log = os.path.join(self._scratch_base, "server.log")
        with open(self._server_log, "wb") as log:
            self._proc = subprocess.Popen(cmd, pass_fds=(req_r, resp_w), env=env, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, cwd=self._scratch_base)
        os.close(req_r)
        os.close(resp_w)
        self._req = os.fdopen(req_w, "wb", buffering=0)
        self._resp = os.fdopen(resp_r, "rb", buffering=0)
        try:
            wire.send(self._req, config)
            hello = wire.recv(self._resp, timeout=self.start_timeout)
        except BaseException:  # SIGTERM/SIGINT of the host mid-start: no server left writing into the folder
            self.close()
            raise
        if not hello or not hello.get("ready"):
            detail = (hello or {}).get("error") or self._log_tail()
            self.close()
            raise SandboxStartError(f"sandbox server failed to start: {detail}")
        self.layers = list(hello["layers"]) + host_layers
        self.child_layers = list(hello["child_layers"])
        if not prefix:
            warn_missing_layers(self.isolation)
            if weak(self.isolation) and not os.environ.get(ALLOW_WEAK):
                self.close()
                raise WeakIsolationError(WEAK_MESSAGE)

    def _log_tail(self, n: int = 2000) -> str:
        try:
            with open(self._server_log, "rb") as fh:
                return fh.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return "no server log"

    def close(self) -> None:
        """Stop the server and remove its scratch directories."""
        proc, self._proc = self._proc, None
        for stream in (getattr(self, "_req", None), getattr(self, "_resp", None)):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        remove_folder(self._scratch_base)
        fd, self._owner_fd = getattr(self, "_owner_fd", None), None
        release(self._scratch_base, fd)

    def __enter__(self) -> IsolatedRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        if getattr(self, "_proc", None) is not None:
            self.close()

    @property
    def isolation(self) -> list[str]:
        return self.layers + self.child_layers

    # ------------------------------------------------------------------ jobs

    def run(self, job: str, payload: dict, limits: Limits | None = None, processes: int = 1,
            env: dict[str, str] | None = None) -> JobResult:
        """Run `job` ("module:function") on `payload` in a fresh isolated child; never raises for job faults.

        `processes` > 1 runs it as that many ranks of one distributed job (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1
        and MASTER_PORT set; pass `limits.loopback_sockets` so that they can rendezvous); rank 0 answers.
        `env`: variables set in the job's children after the scrub (secret-looking names are still dropped).
        """
        limits = limits or self.limits
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._restart()
            start = time.perf_counter()
            try:
                wire.send(self._req, {"job": job, "payload": payload, "limits": limits.to_dict(),
                                      "processes": int(processes), "env": dict(env or {})})
                reply = wire.recv(self._resp, timeout=limits.wall_seconds + 30)
            except (OSError, ValueError) as exc:
                reply = None
                error = f"sandbox server failed: {exc}"
            else:
                error = "sandbox server died or stopped answering"
            if reply is None:
                self._kill_server()
                return JobResult(ok=False, error=error, kind="crash",
                                 seconds=time.perf_counter() - start, isolation=self.isolation)
        return JobResult(ok=bool(reply.get("ok")), value=reply.get("value"), error=str(reply.get("error", "")),
                         kind=str(reply.get("kind", "crash")), seconds=float(reply.get("seconds", 0.0)),
                         isolation=list(reply.get("isolation") or self.isolation), log=str(reply.get("log", "")))

    def _kill_server(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _restart(self) -> None:
        self._kill_server()
        self._proc = None
        for stream in (self._req, self._resp):
            try:
                stream.close()
            except OSError:
                pass
        self._start()
