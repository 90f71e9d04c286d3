"""The fork server's spare children: forked, hardened and (when the server idles) warmed up before their job.

Forking a server that holds torch (page tables of a few hundred MB), hardening the child (rlimits, seccomp,
Landlock, scratch dir, environment) and the first run of the checks in a fresh child (copy-on-write and
first-touch page faults) cost more than the checks themselves. A spare does them ahead, while the previous
job runs or the server idles, so that an idle server's critical path is sending a warm spare its message;
back to back on busy CPUs they still compete with the jobs for the same cores.

A spare is hardened right after the fork, for the limits it expects (the last job's) and with no
environment of its own, and runs exactly one job: a job with other limits or its own environment gets a
freshly forked child, and the spares that expected other limits are retired. Once the server has been idle
for IDLE_WARM_SECONDS it has the spares, one at a time, run the warm-up hook (trusted code: the checks on a
library loss) so that the first-touch cost is paid before the job. Back to back no spare is left warm:
one then warms up beside the running job where the CPUs are not saturated (a free core; on a busy one it
would only add CPU time, so it waits for idle time). The warm-up runs after hardening, so its CPU time (tens of ms) and the memory it maps
count against the job's limits. Each spare's scratch dir is made for it and removed with it.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import tempfile
from dataclasses import dataclass

from discovery.sandbox import child, wire

PREFIX = "next-"  # a waiting spare's scratch dir; the job's once the spare has one
IDLE_WARM_SECONDS = 0.05  # the server's idle time before it has a spare warm up
WARM_UP = {"warm_up": True}  # the message that asks a spare to warm up; it answers WARMED on its reply pipe
WARMED = {"warmed": True}


@dataclass(frozen=True)
class Spare:
    pid: int
    job_fd: int  # the server's end of the pipe the job message goes down
    reply_fd: int
    scratch: str
    limits: dict


class SparePool:
    """Up to `size` spares for the next jobs; `take(message)` hands one its job."""

    def __init__(self, scratch_base: str, size: int, threads: int | None, limits: dict | None,
                 warm_up=None, beside_job: str = "auto"):
        self.scratch_base = scratch_base
        self.size = max(0, int(size))
        self.threads = threads
        self.limits = dict(limits) if limits else None  # what the next spares are hardened for
        self.warm_up = warm_up  # a trusted callable run in each spare before it is hardened
        self.ready: list[Spare] = []
        self.state: dict[int, str] = {}  # pid -> "cold", "warming" (asked, no answer yet) or "warm"
        self.leaving: list[tuple[int, str]] = []  # (pid, scratch) of retired spares, for the server to reap
        self.beside_job = beside_job  # warm up while a job runs: "auto" (CPUs not saturated), "always", "never"
        self.cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def fill(self) -> None:
        while self.limits is not None and len(self.ready) < self.size:
            spare = self._fork()
            self.ready.append(spare)
            self.state[spare.pid] = "cold"

    def warming_fd(self) -> int | None:
        """The reply pipe of the spare that is warming up (its WARMED answer is read there), if any."""
        return next((s.reply_fd for s in self.ready if self.state.get(s.pid) == "warming"), None)

    def start_warm_up(self) -> bool:
        """Ask one cold spare to warm up (none while another one is at it); False: nothing to do."""
        if self.warm_up is None or self.warming_fd() is not None:
            return False
        for spare in self.ready:
            if self.state.get(spare.pid) == "cold":
                try:
                    wire.send(spare.job_fd, WARM_UP)
                    self.state[spare.pid] = "warming"
                except OSError:
                    self.retire([spare])
                return True
        return False

    def poll_warmed(self) -> None:
        """Read the warming spare's WARMED answer if it came already (never waits)."""
        fd = self.warming_fd()
        if fd is not None and select.select([fd], [], [], 0)[0]:
            self.warmed(fd)

    def start_warm_up_beside_job(self) -> bool:
        """While a job runs: warm one cold spare when no spare is warm for the next job (back to back; after
        idle time one is, and the rest warm up while the server idles again) and the CPUs are not saturated
        (1-minute load average below the CPUs this process may use), so that its warm-up takes a free core
        instead of CPU time from the job; on a busy machine the spares wait for the server to idle."""
        self.poll_warmed()
        busy = self.beside_job == "never" or self.beside_job != "always" and os.getloadavg()[0] >= self.cpus
        if self.warm_up is None or busy or "warm" in self.state.values():
            return False
        return self.start_warm_up()

    def cold(self) -> bool:
        return self.warm_up is not None and any(v == "cold" for v in self.state.values())

    def warmed(self, fd: int) -> None:
        """Read the WARMED answer on `fd` (a warming spare's reply pipe)."""
        spare = next(s for s in self.ready if s.reply_fd == fd)
        if wire.recv(fd, timeout=1.0) == WARMED:
            self.state[spare.pid] = "warm"
        else:
            self.retire([spare])  # it died warming up

    def _fork(self) -> Spare:
        scratch = tempfile.mkdtemp(dir=self.scratch_base, prefix=PREFIX)
        job_r, job_w = os.pipe()
        reply_r, reply_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            child.close_other_fds(job_r, reply_w)
            ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: never outlive the server
            child.spare(job_r, reply_w, scratch, self.limits, self.threads, self.warm_up)
        os.close(job_r)
        os.close(reply_w)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        return Spare(pid, job_w, reply_r, scratch, dict(self.limits))

    def take(self, message: dict) -> Spare | None:
        """A spare that was sent `message`, or None (fork afresh): none ready, other limits or its own env."""
        limits = message["limits"]
        if limits != self.limits:
            self.limits = dict(limits)  # the next spares expect what this job had
            self.retire([s for s in self.ready if s.limits != limits])
        if message.get("env"):
            return None
        self.poll_warmed()  # a spare that finished warming up while the last job ran is taken first
        order = {"warm": 0, "cold": 1, "warming": 2}  # a warming spare answers only after its warm-up
        self.ready.sort(key=lambda s: order[self.state.get(s.pid, "cold")])
        while self.ready:
            spare = self.ready.pop(0)
            self.state.pop(spare.pid, None)
            try:
                wire.send(spare.job_fd, message)
            except OSError:  # it died (its warm-up failed?): retire it, try the next
                self.retire([spare])
                continue
            os.close(spare.job_fd)
            return spare
        return None

    def retire(self, spares: list[Spare]) -> None:
        """Close their job pipes (a waiting spare then exits); the server reaps them from `leaving`."""
        for spare in spares:
            if spare in self.ready:
                self.ready.remove(spare)
            self.state.pop(spare.pid, None)
            for fd in (spare.job_fd, spare.reply_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.leaving.append((spare.pid, spare.scratch))

    def close(self) -> None:
        self.retire(list(self.ready))
