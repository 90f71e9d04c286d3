"""Warm validation latency per candidate vs a cold-subprocess baseline, measured side by side.

    python bench/validate_latency.py [--rounds 3] [--cold 3]
    python bench/validate_latency.py --baseline /tmp/base [--repeats 3]   # side by side with another tree
    python bench/validate_latency.py --gap 0.5   # each candidate after 0.5 s idle (an LLM call in the loop)
    python bench/validate_latency.py --beside never,auto --repeats 2   # spares warmed beside a job or not

`--beside` runs this tree once per DISCOVERY_SANDBOX_WARM_BESIDE_JOB value (spares.py: "auto" warms the
next spare while a job runs where the 1-minute load is below the CPU count, "always", "never"), alternating.

With `--baseline TREE` (e.g. `git archive <commit> | tar -x -C /tmp/base`) each tree's own script runs in
its own python, alternating `--repeats` times so that both see the same load; prints each tree's warm
median, their ratio and the load average.

Warm: `validate()` through one IsolatedRunner (fork server with torch+sympy preloaded and warmed up),
all 18 library losses, `--rounds` times, back to back (`--gap 0`: the server never idles, its spare
children get no warm-up) or each after `--gap` seconds idle (the loop's case: a proposal takes seconds;
the spares warm up meanwhile). Cold: the same checks in a fresh `python` per candidate
(what a sandbox without a warm server pays). Goal: warm median <= 50 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from discovery import library  # noqa: E402
from discovery.sandbox import validate  # noqa: E402
from discovery.sandbox.validation import validation_runner  # noqa: E402

COLD = "import json, sys; from discovery.sandbox.jobs import check_job; check_job({'code': sys.stdin.read()})"


def warm_latencies(rounds: int, gap: float = 0.0) -> tuple[list[float], float, list[str], float]:
    """Latencies (s), server start-up (s), the isolation layers and the CPU time (s) per validation of this
    process, the server and its children together."""
    start = time.perf_counter()
    with validation_runner() as runner:
        startup = time.perf_counter() - start
        times = []
        cpu0 = tree_cpu(runner)
        for _ in range(rounds):
            for loss in library.LOSSES:
                time.sleep(gap)
                t0 = time.perf_counter()
                report = validate(loss.code, runner=runner, cache=False)  # every round checks afresh
                times.append(time.perf_counter() - t0)
                assert report.valid, report.summary()
        cpu1 = tree_cpu(runner)
        cpu = (cpu1 - cpu0) / len(times)
        return times, startup, report.isolation, cpu


def tree_cpu(runner) -> float:
    """CPU seconds so far of this process plus every process below the runner's server (bwrap, the server,
    its children), each with the children it has reaped (cutime/cstime): live ones by their own times."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as fh:
                stats[int(name)] = fh.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
    total, frontier = 0, [runner._proc.pid]
    while frontier:
        pid = frontier.pop()
        if pid in stats:
            total += sum(int(f) for f in stats[pid][11:15])  # utime, stime, cutime, cstime
        frontier += [p for p, fields in stats.items() if int(fields[1]) == pid]
    return time.process_time() + total / tick


def cold_latencies(count: int) -> list[float]:
    times = []
    env = {**os.environ, "PYTHONPATH": ROOT}
    for loss in library.LOSSES[:count]:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", COLD], input=loss.code, text=True, check=True, env=env,
                       capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def warm_run(tree: str, rounds: int, gap: float = 0.0, beside: str | None = None) -> dict:
    """The JSON result of `tree`'s own bench script, in a python of its own (`--gap` only where not 0)."""
    env = {**os.environ, "PYTHONPATH": tree, **({"DISCOVERY_SANDBOX_WARM_BESIDE_JOB": beside} if beside else {})}
    out = subprocess.run([sys.executable, os.path.join(tree, "bench", "validate_latency.py"), "--json",
                          "--rounds", str(rounds), "--cold", "1", *(["--gap", str(gap)] if gap else [])],
                         capture_output=True, text=True, check=True, cwd=tree, env=env)
    return json.loads(out.stdout)


def beside_modes(modes: list[str], rounds: int, repeats: int, gap: float = 0.0) -> None:
    """This tree once per warm-beside-job mode, alternating `repeats` times: warm median, CPU, load."""
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(repeats):
        for mode in modes:
            runs[mode].append(warm_run(ROOT, rounds, gap, mode))
    for mode, rows in runs.items():
        print(f"{mode:>6}: warm median {statistics.median(r['warm_median_ms'] for r in rows):.1f} ms "
              f"{[round(r['warm_median_ms'], 1) for r in rows]}, CPU per validation "
              f"{statistics.median(r['cpu_ms_per_validation'] for r in rows):.1f} ms, load average "
              f"{min(r['load_avg_1m'] for r in rows):.1f}-{max(r['load_avg_1m'] for r in rows):.1f} "
              f"on {os.cpu_count()} CPUs; gap {gap:g} s")


def side_by_side(baseline: str, rounds: int, repeats: int, gap: float = 0.0) -> None:
    """Both trees alternately, `repeats` times: warm medians, their ratio, CPU per validation where both
    scripts report it (`cpu_ms_per_validation`), and the load average."""
    ours, theirs, loads = [], [], []
    for _ in range(repeats):
        ours.append(warm_run(ROOT, rounds, gap))
        theirs.append(warm_run(os.path.abspath(baseline), rounds, gap))
        loads.append(os.getloadavg()[0])
    mine, base = (statistics.median(r["warm_median_ms"] for r in runs) for runs in (ours, theirs))
    print(f"warm median: this tree {mine:.1f} ms {[round(r['warm_median_ms'], 1) for r in ours]}, baseline "
          f"{base:.1f} ms {[round(r['warm_median_ms'], 1) for r in theirs]}; ratio {mine / base:.2f}; goal <= 50 ms "
          f"warm: {'met' if mine <= 50 else 'NOT met'} (load average {min(loads):.1f}-{max(loads):.1f} on "
          f"{os.cpu_count()} CPUs; gap {gap:g} s)")
    cpus = [[r.get("cpu_ms_per_validation") for r in runs] for runs in (ours, theirs)]
    if all(x for runs in cpus for x in runs):
        a, b = (statistics.median(runs) for runs in cpus)
        print(f"CPU per validation (host + server + children): this tree {a:.1f} ms, baseline {b:.1f} ms; "
              f"ratio {a / b:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline", help="another tree to measure side by side (its own bench script)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.0, help="idle seconds before each validation")
    parser.add_argument("--beside", help="comma-separated DISCOVERY_SANDBOX_WARM_BESIDE_JOB modes to compare")
    args = parser.parse_args()
    if args.beside:
        beside_modes(args.beside.split(","), args.rounds, args.repeats, args.gap)
        return
    if args.baseline:
        side_by_side(args.baseline, args.rounds, args.repeats, args.gap)
        return
    warm, startup, layers, cpu = warm_latencies(args.rounds, args.gap)
    cold = cold_latencies(args.cold)
    result = {
        "warm_median_ms": statistics.median(warm) * 1000, "warm_p90_ms": sorted(warm)[int(0.9 * len(warm))] * 1000,
        "warm_n": len(warm), "server_startup_s": startup, "cpu_ms_per_validation": cpu and cpu * 1000,
        "cold_median_ms": statistics.median(cold) * 1000, "cold_n": len(cold),
        "speedup": statistics.median(cold) / statistics.median(warm), "goal_ms": 50,
        "gap_s": args.gap, "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "isolation": layers,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"warm validate (fork server): median {result['warm_median_ms']:.1f} ms, p90 {result['warm_p90_ms']:.1f} ms "
          f"over {len(warm)} validations (server start {startup:.1f} s)")
    if cpu:
        print(f"CPU per validation (this process + server + children, less load-sensitive): {cpu * 1000:.1f} ms")
    print(f"cold subprocess baseline:    median {result['cold_median_ms']:.1f} ms over {len(cold)} candidates")
    print(f"speedup: {result['speedup']:.1f}x; goal <= 50 ms warm: {'met' if result['warm_median_ms'] <= 50 else 'NOT met'}"
          f" (load average {result['load_avg_1m']:.1f} on {result['cpus']} CPUs; gap {args.gap:g} s)")
    print(f"isolation layers: {', '.join(layers)}")


if __name__ == "__main__":
    main()
