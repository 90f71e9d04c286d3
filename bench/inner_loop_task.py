"""The synthetic task at default settings: P1 seconds and memory per candidate-seed, determinism,
discrimination (DPO vs the untrained reference vs reversed DPO, in standard errors), DPO's learning curve.

    python bench/inner_loop_task.py [--seeds 5] [--set KEY=VALUE ...]

Every evaluation runs sandboxed (one warm IsolatedRunner, one forked child per candidate-seed), exactly as
`discovery evaluate` does. Goals: <= 20 s and <= 2 GB per candidate-seed on 2 cores (prepare excluded);
DPO > reference and reference > reversed DPO by > 3 SE; the learning curve still moving at the default steps.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from discovery import library  # noqa: E402
from discovery.config import load_config  # noqa: E402
from discovery.inner_loop.evaluate import evaluate_candidate, make_runner  # noqa: E402
from discovery.inner_loop.task import Fidelity, get_task  # noqa: E402

REVERSED_DPO = '''import torch.nn.functional as F


def reversed_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(-beta * margin)
'''


def run_seeds(task, runner, code, seeds, fidelity=Fidelity()):
    results = [evaluate_candidate(task, code, s, fidelity, runner) for s in seeds]
    bad = [r.reason for r in results if not r.ok]
    if bad:
        raise SystemExit(f"evaluation failed: {bad}")
    return results


def mean_se(values):
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("inf")
    return m, se


def gap_in_se(a, b):
    """(mean(a) - mean(b)) / SE of the difference (Welch)."""
    (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
    return (ma - mb) / math.sqrt(sa**2 + sb**2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    config = load_config(None, args.overrides)
    task = get_task(config)
    t0 = time.perf_counter()
    task.prepare()
    print(f"prepare (cached or built): {time.perf_counter() - t0:.1f} s at {task.path}")
    t0 = time.perf_counter()
    runner = make_runner(config)
    print(f"warm runner start (imports + task state): {time.perf_counter() - t0:.1f} s; isolation: "
          f"{', '.join(runner.isolation)}")
    seeds = list(range(args.seeds))
    dpo_code = library.get("dpo").code
    with runner:
        wall = []
        dpo = []
        for s in seeds:
            t = time.perf_counter()
            dpo.extend(run_seeds(task, runner, dpo_code, [s]))
            wall.append(time.perf_counter() - t)
        again = run_seeds(task, runner, dpo_code, [0])[0]
        reference = run_seeds(task, runner, None, seeds)
        reversed_ = run_seeds(task, runner, REVERSED_DPO, seeds)
        curve = {f: run_seeds(task, runner, dpo_code, seeds[:3], Fidelity("curve", f)) for f in (0.5, 2.0, 4.0)}
    curve[1.0] = dpo[:3]

    print(f"\n== P1 speed and memory, DPO at default settings ({config.train.max_steps} steps, batch "
          f"{config.train.per_device_train_batch_size}, 1 thread per worker)")
    print(f"seconds per candidate-seed (host wall, incl. fork + IPC): median {statistics.median(wall):.2f}, "
          f"max {max(wall):.2f}  -> ratio to the 20 s goal: {max(wall) / 20:.2f}x")
    print(f"  inside the child: train {statistics.fmean(r.metrics['train_seconds'] for r in dpo):.2f} s, "
          f"train+score {statistics.fmean(r.seconds for r in dpo):.2f} s")
    rss = max(r.metrics["peak_rss_mb"] for r in dpo)
    print(f"peak RSS per worker child: {rss:.0f} MB -> ratio to the 2 GB goal: {rss / 2048:.2f}x")
    print(f"\n== determinism: seed 0 twice -> {dpo[0].fitness!r} vs {again.fitness!r}: "
          f"{'identical' if dpo[0].fitness == again.fitness else 'DIFFERENT'}")
    f = {name: [r.fitness for r in rs] for name, rs in (("dpo", dpo), ("reference", reference),
                                                         ("reversed", reversed_))}
    print(f"\n== discrimination over {len(seeds)} seeds (mean ± SE)")
    for name, values in f.items():
        m, se = mean_se(values)
        kl = statistics.fmean(r.metrics["kl"] for r in {"dpo": dpo, "reference": reference,
                                                         "reversed": reversed_}[name])
        print(f"  {name:10s} fitness {m:+.4f} ± {se:.4f}   KL {kl:.3f}")
    print(f"  DPO - reference      = {gap_in_se(f['dpo'], f['reference']):.1f} SE (goal > 3)")
    print(f"  reference - reversed = {gap_in_se(f['reference'], f['reversed']):.1f} SE (goal > 3)")
    print("\n== DPO learning curve (3 seeds; steps = fraction x default)")
    for frac in sorted(curve):
        values = [r.fitness for r in curve[frac]]
        m, se = mean_se(values)
        kl = statistics.fmean(r.metrics["kl"] for r in curve[frac])
        print(f"  {round(frac * config.train.max_steps):4d} steps: fitness {m:+.4f} ± {se:.4f}   KL {kl:.3f}")


if __name__ == "__main__":
    main()
