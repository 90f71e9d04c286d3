"""CPU time of the sandbox's check job per library loss, in one process (less sensitive to a loaded machine
than wall-clock latency), for this tree or another one given as a path, side by side.

    python bench/check_cpu.py [TREE ...]      # e.g. a tree from `git archive <commit> | tar -x -C /tmp/base`

Prints, per tree, the median `time.process_time` of `discovery.sandbox.jobs.check_job` over the 18 library
losses (3 rounds after one warm-up round). Each tree runs in its own python so its own `discovery` is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE = """
import statistics, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from discovery import library
from discovery.sandbox.jobs import check_job
codes = [library.get(n).code for n in library.names()]
for code in codes:
    check_job({"code": code})
times = []
for _ in range(3):
    for code in codes:
        start = time.process_time()
        check_job({"code": code})
        times.append(time.process_time() - start)
print(f"{sys.argv[1]}: median CPU {1000 * statistics.median(times):.1f} ms per check_job")
"""


def main(trees: list[str]) -> None:
    for tree in trees or [ROOT]:
        subprocess.run([sys.executable, "-c", ONE, os.path.abspath(tree)], check=True)
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main(sys.argv[1:])
