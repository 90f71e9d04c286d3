"""Candidate throughput of the executors on the synthetic task, by worker x thread layout.

Measures, side by side in one run, evaluations per minute for 1 worker x 1 thread (the baseline),
2 workers x 1 thread (goal >= 1.8x) and 1 worker x 2 threads, with the local executor and with Ray
(when installed), and what `plan_layout` picks by default on this machine. Worker start-up (fork
server, task state) is excluded; each layout evaluates the same jobs (library losses x seeds).

    python bench/executor_throughput.py [--jobs 8] [--steps 30] [--executors local,ray]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from discovery import library  # noqa: E402
from discovery.config import load_config  # noqa: E402
from discovery.executors import make_executor, plan_layout  # noqa: E402
from discovery.executors.layout import Layout  # noqa: E402
from discovery.inner_loop.task import Fidelity, get_task  # noqa: E402

LOSSES = ("dpo", "slic", "ipo", "cdpo", "bco_pair", "lrml", "cell", "padll")


def measure(config, layout: Layout, jobs: int) -> tuple[float, float, int]:
    """(evaluations per minute, seconds, failures) for `jobs` evaluations on `layout`."""
    executor = make_executor(config, layout)
    try:
        warm = [executor.submit(0, library.get("dpo").code, 999, Fidelity(name="full"))
                for _ in range(layout.workers)]
        [f.result() for f in warm]  # each worker's first job pays one-off costs (imports in the fork server)
        start = time.perf_counter()
        futures = [executor.submit(i, library.get(LOSSES[i % len(LOSSES)]).code, i, Fidelity(name="full"))
                   for i in range(jobs)]
        results = [f.result() for f in futures]
        seconds = time.perf_counter() - start
    finally:
        executor.close()
    return 60.0 * jobs / seconds, seconds, sum(1 for r in results if not r.ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="train.max_steps of each evaluation")
    parser.add_argument("--executors", default="local,ray")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    config = load_config(None, [f"train.max_steps={args.steps}", *args.overrides])
    get_task(config).prepare(None)
    layouts = [Layout(1, 1), Layout(2, 1), Layout(1, 2)]
    default = plan_layout(config.executor)
    print(f"machine: {os.cpu_count()} cpus; default layout: {default.describe()}; {args.jobs} jobs of "
          f"{args.steps} steps each")
    for name in args.executors.split(","):
        if name == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray: not installed (pip install 'objective-discovery[ray]'); skipped")
                continue
        config = replace(config, executor=replace(config.executor, name=name))
        base = None
        for layout in layouts:
            rate, seconds, failed = measure(config, layout, args.jobs)
            base = base or rate
            print(f"{name:5s} {layout.describe():28s} {rate:7.2f} evals/min  {seconds:7.1f}s  "
                  f"x{rate / base:.2f} of 1x1" + (f"  ({failed} failed)" if failed else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
