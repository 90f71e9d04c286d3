"""Layers for hosts without bubblewrap (a plain `pip install`): applied by each child to itself.

- `drop_root`: a child of a root server becomes `nobody` (uid/gid 65534, no groups, so no capabilities):
  it cannot read root's files (/etc/shadow, /root), the host's /proc/<pid>/environ, or signal the host.
  Its scratch dir (and the runner's writable folders) are handed to that uid first. Only where nobody can
  read Python's own folders (`others_can_read`): with Python under root's home it could import nothing new.
- `drop_capabilities`: where the child must stay root (a training runner reading root's caches), it keeps
  uid 0 but no capability: no CAP_SYS_PTRACE (with the host's PR_SET_DUMPABLE=0, /proc/<host>/environ is
  closed), no CAP_KILL, no CAP_DAC_OVERRIDE.
- `landlock`: writes only under the scratch dir, the runner's writable folders and /dev; with Landlock
  ABI >= 6 no signals to processes outside the child. A child that keeps uid 0 (it reads root's caches) is
  also limited in what it reads: `read_roots` (system folders, an allowlist of /etc files, Python's folders,
  the runner's readable and writable folders), so /etc/shadow, /root and the host's files stay closed. The PyPI bindings are dev releases, so this is the
  three documented syscalls through ctypes.
- `host_not_dumpable`: the host (which holds the API keys) sets PR_SET_DUMPABLE=0, so a same-uid child cannot
  read its /proc/<pid>/environ or ptrace it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

NOBODY = 65534
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 4, 38, 24
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_SCOPE_SIGNAL = 1 << 1
SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}  # create_ruleset, add_rule, restrict_self
# write-side filesystem rights by ABI version (reads stay open: the venv and torch must load)
WRITE_RIGHTS = {1: (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)
                | (1 << 11) | (1 << 12), 2: 1 << 13, 3: 1 << 14, 5: 1 << 15}
ALL_FILE_RIGHTS = (1 << 16) - 1
READ_FILE, READ_DIR = 1 << 2, 1 << 3
FILE_RIGHTS = (1 << 0) | (1 << 1) | READ_FILE | (1 << 14) | (1 << 15)  # execute, write, read, truncate, ioctl
# what a child may read (a uid-0 child under Landlock; every child under bubblewrap, which binds only these):
# system libraries and pseudo-filesystems and the few /etc files Python and torch read; not /root, /home,
# /tmp, /var, /run, the rest of /etc (shadow, sudoers, ssh keys, machine secrets we cannot list)
SYSTEM_READ = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/opt", "/proc", "/sys", "/dev")
ETC_NEEDED = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
              "nsswitch.conf", "hosts", "host.conf", "gai.conf", "resolv.conf", "protocols", "services",
              "mime.types", "os-release", "lsb-release", "debian_version", "alternatives", "locale.alias",
              "glvnd", "OpenCL", "vulkan", "nvidia")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


TEST_NO_LANDLOCK = "DISCOVERY_SANDBOX_TEST_NO_LANDLOCK"  # tests only: behave as a kernel without Landlock


def landlock_abi() -> int:
    if os.environ.get(TEST_NO_LANDLOCK):
        return 0
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    abi = _libc().syscall(numbers[0], None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(0, int(abi))


def etc_paths() -> list[str]:
    """The /etc entries a child may read (ETC_NEEDED that exist here): an allowlist, secrets stay out."""
    return [path for path in (os.path.join("/etc", name) for name in ETC_NEEDED) if os.path.lexists(path)]


def read_roots(readable: list[str]) -> list[str]:
    """The paths a child may read beneath: SYSTEM_READ, etc_paths(), Python's folders and `readable`."""
    return [*SYSTEM_READ, *etc_paths(), *python_paths(), *readable]


def python_paths() -> list[str]:
    return [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            *(p for p in sys.path if p and os.path.isabs(p))]


def others_can_read(paths: list[str]) -> bool:
    """Whether a uid other than the owner (nobody) can reach and read each existing folder in `paths`.

    Python installed under root's home (pyenv in /root, mode 700) is not: a child that became nobody
    could then import nothing that was not loaded before the fork."""
    for path in paths:
        path = os.path.abspath(path)
        if not os.path.exists(path):
            continue
        node = path
        while True:
            try:
                mode = os.stat(node).st_mode
            except OSError:
                return False
            if not mode & 0o001 or (node == path and os.path.isdir(node) and not mode & 0o004):
                return False
            parent = os.path.dirname(node)
            if parent == node:
                break
            node = parent
    return True


def _add(libc, add_rule: int, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS  # a rule on a file may hold only the rights that apply to files
        rule = _PathBeneath(rights, fd)
        libc.syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                     ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)


def landlock(writable: list[str], readable: list[str] | None = None) -> list[str]:
    """Restrict this process (and its threads/children) to writing beneath `writable`; returns the layers.

    With `readable` (see read_roots) reads are restricted too: beneath `writable` and `readable` only."""
    abi = landlock_abi()
    if abi < 1:
        return []
    create, add_rule, restrict = SYSCALLS[platform.machine()]
    handled = 0
    for version, rights in WRITE_RIGHTS.items():
        if abi >= version:
            handled |= rights
    if readable is not None:
        handled |= READ_FILE | READ_DIR
    scoped = LANDLOCK_SCOPE_SIGNAL if abi >= 6 else 0
    attr = _RulesetAttr(handled, 0, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 8
    libc = _libc()
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return []
    try:
        for path in writable:
            _add(libc, add_rule, ruleset, path, handled)
        for path in readable or ():
            _add(libc, add_rule, ruleset, path, handled & (READ_FILE | READ_DIR))
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return []
        if libc.syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return []
    finally:
        os.close(ruleset)
    return (["landlock-fs"] + (["landlock-reads"] if readable is not None else [])
            + (["landlock-signals"] if scoped else []))


def drop_root(owned: list[str]) -> bool:
    """Root child -> nobody; `owned` folders are chowned to nobody first. False where not root or it failed."""
    if os.getuid() != 0:
        return False
    try:
        for path in owned:
            os.chown(path, NOBODY, NOBODY)
            for name in os.listdir(path):
                os.chown(os.path.join(path, name), NOBODY, NOBODY, follow_symlinks=False)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    except OSError:
        return False
    return os.getuid() == NOBODY and os.geteuid() == NOBODY


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> bool:
    """Empty the bounding, effective, permitted and inheritable capability sets (uid unchanged)."""
    libc = _libc()
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last capability: ignored
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    return libc.capset(ctypes.byref(header), data) == 0


def host_not_dumpable() -> bool:
    """Close this (host) process's /proc/<pid> files and ptrace to same-uid children."""
    try:
        return _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
