"""Inside a forked child: harden the process (fds, env, scratch dir, rlimits, seccomp), run one job, report."""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import resource
import signal
import sys
import tempfile
import traceback

from discovery.sandbox import env as sandbox_env
from discovery.sandbox import wire

MB = 1024 * 1024
CLONE_THREAD = 0x00010000
DENIED_SYSCALLS = (
    "execve", "execveat", "fork", "vfork", "socket", "socketpair", "ptrace", "process_vm_readv",
    "process_vm_writev", "mount", "umount2", "unshare", "setns", "chroot", "pivot_root", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
    "kexec_load", "reboot", "swapon", "swapoff", "userfaultfd", "io_uring_setup", "mknod", "mknodat",
)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
BLOCKED_ERRNOS = (errno.EPERM, errno.EACCES, errno.EROFS)
SOCKET_FAMILIES_MAX = 16  # AF_NETLINK; allowed with sockets: 1 (unix), 2 (inet), 10 (inet6), 16 (netlink)


def redirect_stdio(scratch: str) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    log = os.open(os.path.join(scratch, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def close_other_fds(*keep: int) -> None:
    """Close every descriptor above stderr except `keep`."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def enter_scratch(scratch: str, extra: dict | None = None) -> None:
    """cwd, HOME and TMPDIR in the scratch dir; the scrubbed environment plus the host's `extra` (e.g. RANK)."""
    os.chdir(scratch)
    clean = dict(SCRUBBED_ENV) if SCRUBBED_ENV is not None else sandbox_env.scrubbed(os.environ)
    clean.update(HOME=scratch, TMPDIR=scratch, TMP=scratch, TEMP=scratch)
    clean.update({str(k): str(v) for k, v in (extra or {}).items() if not sandbox_env.is_secret(str(k))})
    for name in [k for k in os.environ if k not in clean]:  # what clear() + update() does, with fewer
        del os.environ[name]  # setenv calls (the server's environment is scrubbed already)
    for name, value in clean.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    tempfile.tempdir = scratch


# the server's environment, scrubbed once by the server before it forks (fnmatch over every variable and
# pattern costs ~6 ms per child); None: scrub in the child
SCRUBBED_ENV: dict[str, str] | None = None


def address_space_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def set_rlimits(limits: dict) -> None:
    def cap(which, soft, hard=None):
        resource.setrlimit(which, (soft, soft if hard is None else hard))

    cap(resource.RLIMIT_CORE, 0)
    cpu = max(1, int(limits["cpu_seconds"]))
    cap(resource.RLIMIT_CPU, cpu, cpu + 1)
    cap(resource.RLIMIT_FSIZE, int(limits["file_mb"] * MB))
    cap(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    if int(limits["memory_mb"]) <= 0:
        return  # no address-space cap (CUDA maps far more virtual memory than it uses)
    try:
        base = address_space_bytes()
    except OSError:
        base = 0
    cap(resource.RLIMIT_AS, base + int(limits["memory_mb"] * MB))


def build_filter(sockets: bool = False):
    """The seccomp filter: deny exec, fork (clone without CLONE_THREAD), sockets and kernel-admin calls;
    threads still work. None where libseccomp is missing.

    `sockets=True` (training ranks in a network namespace with only a loopback) allows socket() for
    AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK, which a distributed job's rendezvous needs; other families stay denied.
    """
    try:
        import pyseccomp as sc
    except Exception:
        return None
    try:
        filt = sc.SyscallFilter(defaction=sc.ALLOW)
        if sockets:
            for family in [0, *range(3, 10), *range(11, 16)]:
                filt.add_rule(sc.ERRNO(errno.EPERM), "socket", sc.Arg(0, sc.EQ, family))
            filt.add_rule(sc.ERRNO(errno.EPERM), "socket", sc.Arg(0, sc.GT, SOCKET_FAMILIES_MAX))
        for name in DENIED_SYSCALLS:
            if sockets and name in ("socket", "socketpair"):
                continue
            try:
                filt.add_rule(sc.ERRNO(errno.EPERM), name)
            except Exception:
                continue  # syscall absent on this architecture
        filt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0))
        try:
            filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # glibc falls back to clone() for threads
        except Exception:
            pass
    except Exception:
        return None
    return filt


def compile_seccomp(sockets: bool = False) -> bytes | None:
    """The filter as raw BPF, compiled once in the server (libseccomp takes ~25 ms; prctl takes microseconds)."""
    filt = build_filter(sockets)
    if filt is None:
        return None
    try:
        with tempfile.TemporaryFile() as fh:
            filt.export_bpf(fh)
            fh.seek(0)
            return fh.read()
    except Exception:
        return None


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(bpf: bytes | None) -> bool:
    if not bpf or len(bpf) % 8:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) == 0


SECCOMP_BPF: bytes | None = None  # set by the server before it forks
SECCOMP_BPF_SOCKETS: bytes | None = None  # the same with loopback sockets; set only in a network namespace


def harden(result_fd: int, scratch: str, limits: dict, env: dict | None = None, keep: tuple[int, ...] = ()
           ) -> list[str]:
    """Apply every layer this host supports; returns the names of those in force.

    `keep`: descriptors besides `result_fd` that stay open (a spare's job pipe)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead
    redirect_stdio(scratch)
    close_other_fds(result_fd, *keep)
    enter_scratch(scratch, env)
    layers = ["env-scrub", "scratch-dir", "wall-clock"]
    set_rlimits(limits)
    layers.append("rlimits")
    layers += confine_without_bwrap(scratch)
    sockets = bool(limits.get("loopback_sockets")) and SECCOMP_BPF_SOCKETS is not None
    if install_seccomp(SECCOMP_BPF_SOCKETS if sockets else SECCOMP_BPF):
        layers.append("seccomp")
    return layers


# set by the server: {"bwrap": bool, "writable": [...], "readable": [...], "drop_root": bool}
CONFINE: dict = {}


def confine_without_bwrap(scratch: str) -> list[str]:
    """Without bubblewrap: nobody (or root without capabilities) and Landlock on writes (see confine.py)."""
    if CONFINE.get("bwrap", True):
        return []
    from discovery.sandbox import confine

    writable = [scratch, *CONFINE.get("writable", [])]
    # a child that does not become nobody (a root one that must read root's caches, or a non-root host's)
    # may read only system folders, Python's and the runner's folders
    readable = None if CONFINE.get("drop_root") else confine.read_roots(CONFINE.get("readable", []))
    layers = confine.landlock([*writable, "/dev"], readable)
    if CONFINE.get("drop_root") and confine.drop_root(writable):
        layers.append("unprivileged-uid")
    elif os.getuid() == 0 and confine.drop_capabilities():
        layers.append("no-capabilities")
    return layers


def classify(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "memory"
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("alloc" in text.lower() or "not enough memory" in text):
        return "memory"
    if isinstance(exc, OSError) and exc.errno in BLOCKED_ERRNOS:
        return "policy"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "policy"
    return "exception"


def describe(exc: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(exc)[-6:])
    return text[-limit:]


def set_threads(threads: int | None) -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, int(threads or 1)))


def spare(job_fd: int, result_fd: int, scratch: str, limits: dict, threads: int | None, warm_up=None) -> None:
    """Never returns. A child forked ahead of its job (see spares.py): hardened for `limits` (no environment
    of its own), then it waits for its one job; asked to warm up first, it runs the trusted `warm_up` and
    answers WARMED; EOF instead of a job: it exits."""
    from discovery.sandbox.spares import WARM_UP, WARMED

    layers: list[str] | None = None
    failure: BaseException | None = None
    try:
        set_threads(threads)
        layers = harden(result_fd, scratch, limits, None, keep=(job_fd,))
    except BaseException as exc:  # noqa: BLE001 - reported as the job's failure; the job does not run
        failure = exc
    message = wire.recv(job_fd)
    while message == WARM_UP:
        if failure is None and warm_up is not None:
            try:
                warm_up()
            except BaseException as exc:  # noqa: BLE001 - trusted code failed: no job runs here
                failure = exc
        wire.send(result_fd, WARMED)
        message = wire.recv(job_fd)
    if message is None:
        os._exit(0)
    os.close(job_fd)
    main(result_fd, scratch, message, threads, layers, failure)


def main(result_fd: int, scratch: str, message: dict, threads: int | None, layers: list[str] | None = None,
         failure: BaseException | None = None) -> None:
    """Never returns: runs the job and leaves with os._exit. `layers`: already hardened (a spare)."""
    reply: dict
    try:
        if failure is not None:
            raise failure
        if layers is None:
            layers = harden(result_fd, scratch, message["limits"], message.get("env"))
        module, _, name = message["job"].partition(":")
        func = getattr(importlib.import_module(module), name)
        set_threads(threads)
        value = func(message["payload"])
        reply = {"ok": True, "kind": "ok", "value": value, "layers": layers}
        try:
            data = wire.encode(reply)
        except (TypeError, ValueError) as exc:
            data = wire.encode({"ok": False, "kind": "exception", "layers": layers,
                                "error": f"the job returned a value that is not JSON: {exc}"})
        wire.write_all(result_fd, data)
    except BaseException as exc:  # noqa: BLE001 - report every failure, the child then exits
        reply = {"ok": False, "kind": classify(exc), "error": f"{type(exc).__name__}: {exc}",
                 "traceback": describe(exc), "layers": layers or []}
        try:
            wire.send(result_fd, reply)
        except BaseException:
            pass
    finally:
        os._exit(0)


def probe(payload: dict) -> list[str]:
    """A job that only reports the layers in force (run once at server start)."""
    return []
