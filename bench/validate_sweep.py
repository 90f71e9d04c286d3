"""What the batch-size sweep adds to a one-shot `discovery validate FILE` (and to `discovery export`).

    nice -n 10 python bench/validate_sweep.py [--rounds 3]

One warm runner; each library loss validated with the loop's default sizes (`batch_sizes=()`) and with
`SWEEP_BATCH_SIZES`, alternating per loss so both arms see the same load, no report cache. Prints each
arm's median ms per candidate, the ratio and the difference (the sweep's cost), and the load average.
The CLI's own start (imports, runner start: seconds) is the same in both arms and not included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from discovery import library
    from discovery.sandbox.validation import SWEEP_BATCH_SIZES, validate, validation_runner

    runner = validation_runner()
    arms = {"default": (), "sweep": SWEEP_BATCH_SIZES}
    times: dict[str, list[float]] = {name: [] for name in arms}
    try:
        validate(library.get("dpo").code, runner=runner, cache=False)  # start and warm the server
        for _ in range(args.rounds):
            for name in library.names():
                for arm, sizes in arms.items():
                    start = time.perf_counter()
                    report = validate(library.get(name).code, runner=runner, batch_sizes=sizes, cache=False)
                    times[arm].append((time.perf_counter() - start) * 1000)
                    if not report.valid:
                        print(f"{name} ({arm}) invalid: {report.summary()}")
                        return 1
    finally:
        runner.close()
    default, sweep = (statistics.median(times[arm]) for arm in arms)
    print(f"candidates {len(times['default'])} per arm; median ms: default {default:.1f}, sweep {sweep:.1f}; "
          f"ratio {sweep / default:.2f}; the sweep adds {sweep - default:.0f} ms; "
          f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
