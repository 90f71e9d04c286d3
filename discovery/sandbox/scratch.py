"""Runner folders `discovery-sandbox-<host pid>-*`: who owns one, and removing those nobody owns any more.

The host removes its folder at `IsolatedRunner.close()` and at exit; a host killed outright (SIGKILL) cannot,
so every new runner sweeps the temp dir first. A folder is swept only when no living process holds the
exclusive flock on its `.owner` file (the host takes it at creation and holds it until it dies), so a live
run's folder is never removed, even one whose pid is not visible from here (another pid namespace).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

SCRATCH_PREFIX = "discovery-sandbox-"


LOCK_SUFFIX = ".owner"  # `<folder>.owner`, beside the folder (jobs can write in the folder, not beside it)
LEGACY_AGE = 60.0  # a folder without its lock file (older trees) is stale when its pid is dead and it is this old


def lock_path(base: str) -> str:
    return str(base).rstrip("/") + LOCK_SUFFIX


def claim(base: str) -> int:
    """Mark `base` as owned by this live process: an open, exclusively flocked file (released at death)."""
    import fcntl

    fd = os.open(lock_path(base), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def release(base: str, fd: int | None) -> None:
    """The owner's end: its folder is gone; drop the lock file, then the lock."""
    if fd is None:
        return
    try:
        os.unlink(lock_path(base))
    except OSError:
        pass
    os.close(fd)


def unlocked(lock: str) -> bool | None:
    """True: nobody holds the flock on `lock`; False: a live process does; None: there is no such file."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def stale(path: str, pid: int) -> bool:
    """Whether the runner folder `path` (made by host `pid`) has no living owner.

    The flock decides where the lock file exists (a live run in another pid namespace, whose pid looks
    dead from here, still holds it); otherwise the pid must be dead and the folder older than LEGACY_AGE."""
    free = unlocked(lock_path(path))
    if free is not None:
        return free
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    try:
        return time.time() - os.stat(path).st_mtime > LEGACY_AGE
    except OSError:
        return False


def sweep_stale_scratch(root: str | None = None) -> list[str]:
    """Remove runner folders `discovery-sandbox-<pid>-*` in `root` whose owner is gone (a killed host)."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        pid = name[len(SCRATCH_PREFIX):].split("-", 1)[0] if name.startswith(SCRATCH_PREFIX) else ""
        path = os.path.join(root, name)
        if not pid.isdigit() or int(pid) == os.getpid() or os.path.islink(path):
            continue
        if name.endswith(LOCK_SUFFIX):  # a lock whose folder is gone and whose owner died
            if not os.path.lexists(path[: -len(LOCK_SUFFIX)]) and unlocked(path):
                os.unlink(path)
        elif os.path.isdir(path) and stale(path, int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(lock_path(path)):
                os.unlink(lock_path(path))
            removed.append(name)
    return removed
