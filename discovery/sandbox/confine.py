"""Layers for hosts without bubblewrap (a plain `pip install`): applied by each child to itself.

- `drop_root`: a child of a root server becomes `nobody` (uid/gid 65534, no groups, so no capabilities):
  it cannot read root's files (/etc/shadow, /root), the host's /proc/<pid>/environ, or signal the host.
  Its scratch dir (and the runner's writable folders) are handed to that uid first.
- `drop_capabilities`: where the child must stay root (a training runner reading root's caches), it keeps
  uid 0 but no capability: no CAP_SYS_PTRACE (with the host's PR_SET_DUMPABLE=0, /proc/<host>/environ is
  closed), no CAP_KILL, no CAP_DAC_OVERRIDE.
- `landlock`: writes only under the scratch dir, the runner's writable folders and /dev; with Landlock
  ABI >= 6 no signals to processes outside the child. The PyPI bindings are dev releases, so this is the
  three documented syscalls through ctypes.
- `host_not_dumpable`: the host (which holds the API keys) sets PR_SET_DUMPABLE=0, so a same-uid child cannot
  read its /proc/<pid>/environ or ptrace it.
"""

from __future__ import annotations

import ctypes
import os
import platform

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


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    abi = _libc().syscall(numbers[0], None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(0, int(abi))


def landlock(writable: list[str]) -> list[str]:
    """Restrict this process (and its threads/children) to writing beneath `writable`; returns the layers."""
    abi = landlock_abi()
    if abi < 1:
        return []
    create, add_rule, restrict = SYSCALLS[platform.machine()]
    handled = 0
    for version, rights in WRITE_RIGHTS.items():
        if abi >= version:
            handled |= rights
    scoped = LANDLOCK_SCOPE_SIGNAL if abi >= 6 else 0
    attr = _RulesetAttr(handled, 0, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 8
    libc = _libc()
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return []
    try:
        for path in writable:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = _PathBeneath(handled, fd)
                libc.syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                             ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return []
        if libc.syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return []
    finally:
        os.close(ruleset)
    return ["landlock-fs"] + (["landlock-signals"] if scoped else [])


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
