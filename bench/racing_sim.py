"""How much evidence a decision needs: racing schedules and the beta grid, replayed from stored per-seed results.

No training: the per-seed results of `bench/proxy_headroom.py` (bench/results/headroom/cache.json: every
library loss at every beta of its grid on seeds 1000..1009) are replayed through the loop's own rules
(`discovery.racing.decide`, `sweep_fitness` best_beta, the paired t interval) for two questions:

1. Racing (`eval.racing`): for each schedule (first rung, cap) and many random orders of the 10 seeds, each
   loss races DPO rung by rung on the seeds it has so far; it stops when clearly worse (paired 95% upper
   bound < 0). Printed: candidate-seeds per decision (seeds x betas, DPO's not counted: it is run once per
   run) against the same cap without racing, and how often the raced verdict agrees with the verdict on all
   10 seeds (worse / tie / better by the paired 95% interval). A stopped loss counts as "worse".
2. The beta grid (`eval.betas`): the verdict against DPO at one fixed beta (train.beta = 0.1, both at 0.1) vs
   at each one's best beta on the grid, with 10 seeds and with 3 seeds (every 3-seed subset): how often does
   a fixed-beta verdict differ from the best-beta one, at what cost.

    python bench/racing_sim.py                      # both conditions stored in the cache (default, 25% flips)
    python bench/racing_sim.py --orders 500 --markdown bench/results/racing/racing.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from proxy_headroom import job_key  # noqa: E402

from discovery import library  # noqa: E402
from discovery.candidate import EvalResult  # noqa: E402
from discovery.inner_loop.sweep import sweep_fitness  # noqa: E402
from discovery.racing import STOP, decide, rungs  # noqa: E402
from discovery.stats import paired  # noqa: E402

SEEDS = list(range(1000, 1010))
CONDITIONS = {  # name -> (config overrides, grid) as the headroom runs used them (docs/results.md#headroom)
    "default task (10% flips)": ([], [0.05, 0.1, 0.2]),
    "25% label flips": (["task.options.label_noise=0.25"], [0.025, 0.05, 0.1, 0.2]),
}
SCHEDULES = [(3, 3), (2, 4), (2, 8), (3, 6), (3, 9), (2, 10), (3, 10)]  # (first rung, cap); (3, 3): no racing
LEVELS = [0.95, 0.99]


def load(cache: dict, overrides: list[str], grid: list[float]) -> dict[str, dict[float, dict[int, EvalResult]]]:
    """{loss: {beta: {seed: result}}} for the losses the cache holds on every (beta, seed) of the grid."""
    from discovery.config import load_config

    raw = load_config(None, ["executor.workers=2", *overrides]).to_dict()
    out = {}
    for name in library.names():
        code = library.get(name).code
        keys = {(b, s): job_key(raw, code, b, s) for b in grid for s in SEEDS}
        if all(k in cache for k in keys.values()):
            out[name] = {b: {s: _result(cache[keys[b, s]]) for s in SEEDS} for b in grid}
    return out


def _result(d: dict) -> EvalResult:
    return EvalResult(seed=d["seed"], fitness=d["fitness"], beta=d["beta"], ok=d["ok"] and d["fitness"] is not None,
                      metrics={"kl": d["kl"]} if d["kl"] is not None else {})


def values(loss: dict[float, dict[int, EvalResult]], seeds, betas=None) -> dict[int, float]:
    """{seed: fitness} at the best beta of `betas` on these seeds (the loop's best_beta rule)."""
    rs = [loss[b][s] for b in (betas or loss) for s in seeds]
    return sweep_fitness(rs, "best_beta").by_seed


def verdict(a: dict[int, float], b: dict[int, float]) -> str:
    p = paired(a, b)
    return "worse" if p.ci_high < 0 else "better" if p.ci_low > 0 else "tie"


def race(loss, dpo, order: list[int], first: int, cap: int, level: float) -> tuple[int, str]:
    """(seeds used, verdict) of one race on this seed order: 'worse' when stopped, else the cap's verdict."""
    for n in rungs(first, cap):
        seeds = order[:n]
        v = decide(values(loss, seeds), values(dpo, seeds), None, n, cap, level=level)
        if v.action == STOP:
            return n, "worse"
    return cap, verdict(values(loss, order[:cap]), values(dpo, order[:cap]))


def racing_rows(data: dict, orders: int, rng: random.Random, schedules=SCHEDULES, levels=LEVELS) -> list[dict]:
    dpo, losses = data["dpo"], [n for n in data if n != "dpo"]
    full = {n: verdict(values(data[n], SEEDS), values(dpo, SEEDS)) for n in losses}
    perms = [rng.sample(SEEDS, len(SEEDS)) for _ in range(orders)]
    rows = []
    for (first, cap), level in itertools.product(schedules, levels):
        used = agree = same = false_stop = stops = 0
        for order in perms:
            for n in losses:
                seeds, v = race(data[n], dpo, order, first, cap, level)
                plain = verdict(values(data[n], order[:cap]), values(dpo, order[:cap]))  # the same seeds, no racing
                used, stops = used + seeds, stops + (seeds < cap)
                agree += v == full[n]
                same += v == plain
                false_stop += seeds < cap and full[n] != "worse"
        decisions = orders * len(losses)
        betas = len(next(iter(data.values())))
        rows.append({"first": first, "cap": cap, "level": level, "rungs": rungs(first, cap),
                     "seeds_per_decision": used / decisions * betas, "without_racing": cap * betas,
                     "stopped": stops / decisions, "agree": agree / decisions, "same": same / decisions,
                     "false_stop": false_stop / decisions})
    return rows, full


def grid_rows(data: dict, fixed: float = 0.1) -> list[dict]:
    """Fixed-beta vs best-beta verdicts against DPO, n = 10 and every 3-seed subset."""
    dpo, rows = data["dpo"], []
    for n in [x for x in data if x != "dpo"]:
        row = {"loss": n}
        for label, subsets in (("n10", [SEEDS]), ("n3", list(itertools.combinations(SEEDS, 3)))):
            flips = sign_flips = 0
            for seeds in subsets:
                best = verdict(values(data[n], seeds), values(dpo, seeds))
                at = verdict(values(data[n], seeds, [fixed]), values(dpo, seeds, [fixed]))
                fb = paired(values(data[n], seeds), values(dpo, seeds)).diff
                fa = paired(values(data[n], seeds, [fixed]), values(dpo, seeds, [fixed])).diff
                flips += best != at
                sign_flips += (fb > 0) != (fa > 0)
            row[label] = (best, at) if label == "n10" else (flips / len(subsets), sign_flips / len(subsets))
        rows.append(row)
    return rows


def markdown(cond: str, race_rows, full, grid, orders: int) -> str:
    lines = [f"### {cond}", "", "Verdict on all 10 seeds (paired 95% t vs DPO, best beta): "
             + ", ".join(f"{n} {v}" for n, v in sorted(full.items())), "",
             f"Racing ({orders} random seed orders x {len(full)} losses):", "",
             "| rungs | stop level | candidate-seeds / decision | without racing | stopped early | "
             "= cap seeds unraced | = all 10 seeds | stopped, not worse at 10 |", "|---|---|---|---|---|---|---|---|"]
    for r in race_rows:
        lines.append(f"| {r['rungs']} | {r['level']:.0%} | {r['seeds_per_decision']:.1f} | "
                     f"{r['without_racing']} | {r['stopped']:.0%} | {r['same']:.1%} | {r['agree']:.1%} | "
                     f"{r['false_stop']:.1%} |")
    lines += ["", "Fixed beta 0.1 vs best beta on the grid (verdict vs DPO; n = 3: share of the 120 3-seed "
              "subsets where the verdict / the sign of the difference differs):", "",
              "| loss | n=10 best β | n=10 β=0.1 | n=3 verdict differs | n=3 sign differs |", "|---|---|---|---|---|"]
    for g in grid:
        lines.append(f"| {g['loss']} | {g['n10'][0]} | {g['n10'][1]} | {g['n3'][0]:.0%} | {g['n3'][1]:.0%} |")
    n10 = sum(g["n10"][0] != g["n10"][1] for g in grid)
    lines += ["", f"n=10 verdicts that differ between β=0.1 and best β: {n10} of {len(grid)}; mean n=3 verdict "
              f"difference {sum(g['n3'][0] for g in grid) / len(grid):.0%}, sign {sum(g['n3'][1] for g in grid) / len(grid):.0%}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=REPO / "bench/results/headroom/cache.json")
    p.add_argument("--orders", type=int, default=200, help="random seed orders per schedule")
    p.add_argument("--markdown", type=Path)
    p.add_argument("--schedules", nargs="+", default=[f"{a}x{b}" for a, b in SCHEDULES],
                   help="FIRSTxCAP racing schedules (first rung x cap seeds), e.g. 2x8")
    p.add_argument("--levels", type=float, nargs="+", default=LEVELS, help="stop levels of the paired interval")
    opts = p.parse_args(sys.argv[1:] if argv is None else argv)
    cache = json.loads(opts.cache.read_text())
    start, parts = time.perf_counter(), []
    for cond, (overrides, grid) in CONDITIONS.items():
        data = load(cache, overrides, grid)
        if "dpo" not in data or len(data) < 2:
            parts.append(f"### {cond}\n\nnot in the cache\n")
            continue
        schedules = [tuple(int(x) for x in s.split("x")) for s in opts.schedules]
        race_rows, full = racing_rows(data, opts.orders, random.Random(0), schedules, opts.levels)
        parts.append(markdown(cond, race_rows, full, grid_rows(data), opts.orders))
    load_avg = os.getloadavg()
    text = (f"`python bench/racing_sim.py {' '.join(sys.argv[1:] if argv is None else argv)}` "
            f"({time.perf_counter() - start:.0f} s, load {load_avg[0]:.1f}/{load_avg[1]:.1f}/{load_avg[2]:.1f})\n\n"
            + "\n".join(parts))
    print(text)
    if opts.markdown:
        opts.markdown.parent.mkdir(parents=True, exist_ok=True)
        opts.markdown.write_text(text)
    return text


if __name__ == "__main__":
    main()
