"""The paper-facts checks (tests/test_paper_facts.py, F1-F5) in any task setting, reported rather than asserted.

`tests/test_paper_facts.py` asserts the DiscoPOP IMDb facts on the default task; this script runs the same
checks, on the same grid and seeds, with `--set` overrides (e.g. the correctness-like reward options) on
several task instances, and prints each fact's numbers and whether it holds, so a non-default setting can be
judged against the paper before it becomes a default. One in-process run per (loss, beta, seed), one thread;
library code only (trusted, no sandbox).

    nice -n 10 python bench/paper_facts.py --instances 0 1 2 3 --set task.options.target_weight=2 \\
        --set task.options.edit_pairs=1.0 --set task.options.edit_from_target=true --markdown out.md
    # F4 with LRML's best searched one step wider and on 2-seed means (not what the test asserts):
    nice -n 10 python bench/paper_facts.py ... --f4-grid 0.05 0.1 0.2 0.4 0.8 --f4-seeds 0 1
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

GRID = (0.05, 0.1, 0.2, 0.4)  # the test's grid
SMALL_BETA = 0.025


class Runs:
    """(fitness, KL, held-out accuracy) per (instance, loss, beta, seed), computed once."""

    def __init__(self, overrides: list[str]):
        self.overrides = overrides

    @functools.cache  # noqa: B019 (one Runs per script run)
    def task(self, instance: int):
        from discovery.config import load_config
        from discovery.inner_loop.task import get_task

        task = get_task(load_config(None, [*self.overrides, f"task.options.seed={instance}"]))
        task.prepare()
        return task

    @functools.cache  # noqa: B019
    def run(self, instance: int, loss: str | None, beta: float, seed: int = 0) -> tuple[float, float, float]:
        import torch

        from discovery.inner_loop.task import evaluate_library_loss

        torch.set_num_threads(1)
        r = evaluate_library_loss(self.task(instance), loss, seed, beta)
        assert r.ok, r.reason
        return r.fitness, r.metrics["kl"], r.metrics["heldout_accuracy"]

    def mean(self, instance: int, loss: str | None, beta: float, seeds=(0,)) -> tuple[float, float, float]:
        runs = [self.run(instance, loss, beta, s) for s in seeds]
        return tuple(sum(r[i] for r in runs) / len(runs) for i in range(3))


def facts(runs: Runs, instance: int, grid=GRID, small=SMALL_BETA, f4_grid=None,
          f4_seeds=(0,)) -> list[tuple[str, bool, str]]:
    """[(fact, holds, numbers)] for one instance, the checks of test_paper_facts_on_three_task_instances; F4 on
    `f4_grid` (default: `grid`, as the test) and the mean of `f4_seeds` (default: seed 0, as the test)."""
    from discovery.inner_loop.sweep import interpolate

    f4_grid, out = f4_grid or grid, []
    betas = (small, *grid)
    kls = [runs.mean(instance, "dpo", b, (0, 1))[1] for b in betas]
    out.append(("F1 DPO KL falls as beta rises (seeds 0, 1)", all(a > b for a, b in zip(kls, kls[1:], strict=False)),
                "KL " + ", ".join(f"{b:g}: {k:.2f}" for b, k in zip(betas, kls, strict=True))))
    reference = runs.run(instance, None, 0.1)[0]
    rewards = [runs.run(instance, "dpo", b)[0] for b in grid]
    best = max(range(len(grid)), key=lambda i: rewards[i])
    tail = rewards[best:]
    falls, above = len(tail) >= 2 and tail[-1] < tail[0], all(r > reference for r in rewards)
    out.append(("F2 DPO reward falls past its optimum, above the reference", falls and above,
                f"reference {reference:.4f}; DPO " + ", ".join(f"{b:g}: {r:.4f}" for b, r in
                                                           zip(grid, rewards, strict=True))
                + f"; falls past optimum: {falls}, all above reference: {above}"))
    ratio = runs.run(instance, "slic", grid[-1])[1] / runs.run(instance, "dpo", grid[-1])[1]
    out.append((f"F3 KL(slic)/KL(dpo) < 1 at beta {grid[-1]:g}", ratio < 1.0, f"ratio {ratio:.3f}"))
    lrml = {b: runs.mean(instance, "lrml", b, f4_seeds) for b in f4_grid}
    beta = max(lrml, key=lambda b: lrml[b][0])
    fitness, kl, _ = lrml[beta]
    dpo = {b: runs.mean(instance, "dpo", b, f4_seeds) for b in f4_grid}
    frontier = interpolate([(d[1], d[0]) for d in dpo.values()], kl)
    ref2 = runs.mean(instance, None, 0.1, f4_seeds)[0]
    share = (fitness - ref2) / (frontier - ref2)
    out.append((f"F4 LRML at its best beta of {', '.join(f'{b:g}' for b in f4_grid)} > reference, >= 80% of DPO's "
                f"gain at its KL (seeds {', '.join(map(str, f4_seeds))})", fitness > ref2 and share >= 0.8,
                f"LRML {fitness:.4f} at beta {beta:g} (KL {kl:.2f}); DPO frontier there {frontier:.4f}; reference "
                f"{ref2:.4f}; share {share:.0%}; LRML " + ", ".join(f"{b:g}: {v[0]:.4f} (KL {v[1]:.2f})"
                                                          for b, v in lrml.items())
                + "; DPO " + ", ".join(f"{b:g}: {v[0]:.4f} (KL {v[1]:.2f})" for b, v in dpo.items())))
    lrml_small, dpo_small = runs.run(instance, "lrml", small), runs.run(instance, "dpo", small)
    holds = lrml_small[0] < reference and lrml_small[2] < 0.5 and dpo_small[0] > reference
    out.append((f"F5 LRML collapses at beta {small:g} (< reference, acc < 0.5), DPO does not", holds,
                f"LRML {lrml_small[0]:.4f} acc {lrml_small[2]:.3f}; DPO {dpo_small[0]:.4f}; "
                f"reference {reference:.4f}"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--instances", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--grid", type=float, nargs="+", default=list(GRID), help="the facts' beta grid (F2-F4)")
    p.add_argument("--small-beta", type=float, default=SMALL_BETA, help="F1's extra and F5's beta")
    p.add_argument("--f4-grid", type=float, nargs="+", help="F4's beta grid (default: --grid, as the test)")
    p.add_argument("--f4-seeds", type=int, nargs="+", default=[0], help="F4's seeds, averaged (default: 0)")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    opts = p.parse_args(sys.argv[1:] if argv is None else argv)
    runs, start, before = Runs(opts.set), time.perf_counter(), os.getloadavg()
    lines = [f"`python bench/paper_facts.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
             "| instance | fact | holds | numbers |", "|---|---|---|---|"]
    failed = 0
    for instance in opts.instances:
        for fact, holds, numbers in facts(runs, instance, tuple(opts.grid), opts.small_beta,
                                    tuple(opts.f4_grid or opts.grid), tuple(opts.f4_seeds)):
            failed += not holds
            lines.append(f"| {instance} | {fact} | {'yes' if holds else '**NO**'} | {numbers} |")
            print(lines[-1], flush=True)
    after = os.getloadavg()
    lines += ["", f"{failed} fact checks fail. Wall {time.perf_counter() - start:.0f} s; load average before "
              f"{before[0]:.1f}/{before[1]:.1f}/{before[2]:.1f}, after {after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f}."]
    print(lines[-1])
    if opts.markdown:
        opts.markdown.parent.mkdir(parents=True, exist_ok=True)
        opts.markdown.write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
