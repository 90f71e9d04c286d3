"""CPU time of the check job in a child forked from a warm server, fresh vs warmed up first (spares.py).

    python bench/fork_warm_cpu.py [--rounds 3]

Mimics a validation server (torch and sympy loaded, the setup warm-up run, gc.freeze) and forks one child
per library loss: "fresh" runs `check_job` at once (what a back-to-back job pays in a spare that got no
warm-up), "warmed" runs the spare warm-up (`warm_child`, trusted) first. Prints the median CPU time and
minor page faults of `check_job` alone in each child: the job's critical path, load-insensitive, without
the fork, the hardening and the exit. Trusted code only (no sandbox layers), a measurement, not a check.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def one_child(code: str, warm: bool, check_job, warm_child) -> tuple[float, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        if warm:
            warm_child()
        cpu, faults = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        check_job({"code": code})
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        os.write(write_fd, f"{time.process_time() - cpu} {faults}".encode())
        os._exit(0)
    os.close(write_fd)
    cpu, faults = os.read(read_fd, 100).split()
    os.close(read_fd)
    os.waitpid(pid, 0)
    return float(cpu), int(faults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from discovery import library
    from discovery.sandbox.jobs import check_job, warm_child, warm_up

    warm_up({})
    gc.collect()
    gc.freeze()
    codes = [loss.code for loss in library.LOSSES]
    runs: dict[str, list[tuple[float, int]]] = {"fresh": [], "warmed": []}
    for _ in range(args.rounds):
        for mode, rows in runs.items():  # alternating, so that both see the same load
            rows += [one_child(code, mode == "warmed", check_job, warm_child) for code in codes]
    for mode, rows in runs.items():
        print(f"{mode:>6}: check_job CPU {1000 * statistics.median(r[0] for r in rows):.1f} ms, "
              f"{statistics.median(r[1] for r in rows):.0f} minor faults (median of {len(rows)})")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
