"""Cold start of the sandbox's bubblewrap prefix: the allowlisted binds vs the old `--ro-bind / /`, side by side.

    python bench/bwrap_cold_start.py [--runs 10]

Prints the median wall time of `bwrap ... true` for each and their ratio (new / old).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from discovery.sandbox import isolation


def median_ms(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd + ["true"], check=True)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = shutil.which("bwrap")
    base = tempfile.mkdtemp()
    try:
        new = isolation.bwrap_command(base)
        if not exe or new is None:
            print("bubblewrap is missing or does not work here")
            return 1
        old = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind", base, base, "--unshare-net",
               "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--"]
        rows = {"old (--ro-bind / /)": [], "new (allowlisted binds)": []}
        for _ in range(2):  # interleaved, so load changes hit both
            rows["old (--ro-bind / /)"].append(median_ms(old, args.runs))
            rows["new (allowlisted binds)"].append(median_ms(new, args.runs))
        for name, values in rows.items():
            print(f"{name}: {' / '.join(f'{v:.1f}' for v in values)} ms")
        ratio = statistics.mean(rows["new (allowlisted binds)"]) / statistics.mean(rows["old (--ro-bind / /)"])
        print(f"ratio new/old: {ratio:.2f} ({len(new)} bwrap arguments)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
