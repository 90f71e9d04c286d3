"""Namespaces for the fork server on hosts without bubblewrap (Python 3.11 has no `os.unshare`: ctypes).

`enter()` runs first thing in the server: it unshares pid, mount, IPC, UTS and network namespaces (as root,
or inside a new user namespace where unprivileged user namespaces are allowed), forks, and the child -
pid 1 of the new pid namespace - becomes the server after mounting a fresh /proc in its private mount
namespace. The host's processes are then invisible to every job child: no /proc/<host pid>/environ, no
pid to signal. The forking parent only waits and passes the server's exit status on; when it dies (the
host killed it) the kernel kills the server (PR_SET_PDEATHSIG), and with it the whole pid namespace.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_SET_PDEATHSIG = 1
NAMESPACES = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET
# tests only: behave as a kernel that allows no new namespaces (the warning path)
TEST_NO_NAMESPACES = "DISCOVERY_SANDBOX_TEST_NO_NAMESPACES"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def map_self(uid: int, gid: int) -> None:
    """In a fresh user namespace: the same uid/gid inside as outside (needed before anything runs there)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
        except OSError:
            pass


def _unshare(libc) -> bool:
    if libc.unshare(NAMESPACES) == 0:
        return True
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | NAMESPACES) != 0:
        return False
    map_self(uid, gid)
    return True


def _fresh_proc(libc) -> bool:
    """Private mount propagation, then a /proc that shows only this pid namespace."""
    if libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
        return False
    flags = ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return libc.mount(b"proc", b"/proc", b"proc", flags, None) == 0


def _wait_and_exit(pid: int, keep_fds: tuple[int, ...]) -> None:
    """The outer process: hold no pipe end (the host must see EOF when the server dies), wait, pass the status."""
    for fd in keep_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(pid, signal.SIGKILL))  # SIGINT stays ignored
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF if os.WIFEXITED(status) else 1)


def enter(fds: tuple[int, ...]) -> list[str]:
    """Move the server into new namespaces; returns the layers in force (empty where the kernel refuses).

    `fds`: the server's pipe ends, closed in the outer process that stays behind."""
    if not sys.platform.startswith("linux") or os.environ.get(TEST_NO_NAMESPACES):
        return []
    libc = _libc()
    try:
        if not _unshare(libc):
            return []
    except (OSError, AttributeError):
        return []
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()  # the first child of the unshare is pid 1 of the new pid namespace
    if pid != 0:
        _wait_and_exit(pid, fds)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    layers = ["net-namespace", "ipc-namespace", "uts-namespace", "mount-namespace"]
    if _fresh_proc(libc):
        layers.append("pid-namespace")  # only with its own /proc: the old one would still list the host
    return layers
