"""What the evaluation defaults cost: one beta and 3 seeds (old) vs best-of-3 betas, up to 9 seeds raced (new).

For each arm, side by side on this machine, `discovery run --proposer symbolic` (no LLM) is run twice with the
arm's eval settings given explicitly (so the script measures the same thing whatever the defaults are):

1. `--proposals N` (default 6): the baselines of the arm's grid that the shared cache lacks are trained first
   (a fresh machine's first run pays them once; later runs read them from the cache), then N proposals;
2. the README quick start (`--proposals 3`, a new run dir) with the baselines now cached.

Printed per arm: wall of each run, baseline candidate-seeds trained / read from the cache, the proposals'
candidate-seeds (training jobs, every stage), wall per proposal after the baselines were done, how many were
raced out / re-evaluated, and the ratios new / old.

Then, with no training, each arm's decision rule is replayed on the stored per-seed results of the headroom
runs (bench/results/headroom/cache.json, 14 library losses x betas 0.05/0.1/0.2 x seeds 1000..1009, the
machinery of `bench/racing_sim.py`): for random seed orders, each loss races DPO with the arm's grid and
rungs (stop level `discovery.racing.STOP_LEVEL`), and its verdict (worse / tie / better, paired 95% t) is
compared with the verdict on all 10 seeds with each loss at its best beta of the grid.

    nice -n 10 python bench/fitness_defaults.py                      # both arms, 6 + 3 proposals each
    python bench/fitness_defaults.py --proposals 4 --arms new --markdown out.md
    python bench/fitness_defaults.py --replay-only                   # the replay alone (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = {  # name -> the eval settings of that arm (explicit, whatever discovery/config.py's defaults are)
    "old": ["eval.seeds=3", "eval.racing_first_seeds=2", "eval.betas=[]"],
    "new": ["eval.seeds=9", "eval.racing_first_seeds=3", "eval.betas=[0.05,0.1,0.2]"],
}
REPLAY = {"old": ((0.1,), 2, 3), "new": ((0.05, 0.1, 0.2), 3, 9),  # arm -> (grid, first rung, seeds) as above
          "one beta, 9 seeds (replay only)": ((0.1,), 3, 9), "grid, 6 seeds (replay only)": ((0.05, 0.1, 0.2), 3, 6)}


def replay(orders: int = 100) -> dict[str, dict]:
    """Each arm's rule on the headroom runs' stored results: candidate-seeds per decision, agreement with the
    10-seed best-beta verdict (see the module docstring)."""
    import random

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from racing_sim import CONDITIONS, SEEDS, load, race, values, verdict

    from discovery.racing import STOP_LEVEL

    overrides, grid = CONDITIONS["default task (10% flips)"]
    cache = json.loads((Path(__file__).resolve().parent / "results/headroom/cache.json").read_text())
    data = load(cache, overrides, grid)
    truth = {n: verdict(values(data[n], SEEDS), values(data["dpo"], SEEDS)) for n in data if n != "dpo"}
    rng, out = random.Random(0), {}
    perms = [rng.sample(SEEDS, len(SEEDS)) for _ in range(orders)]
    for arm, (betas, first, cap) in REPLAY.items():
        arm_data = {n: {b: data[n][b] for b in betas} for n in data}
        used = agree = 0
        for order in perms:
            for n in truth:
                seeds, v = race(arm_data[n], arm_data["dpo"], order, first, cap, STOP_LEVEL)
                used, agree = used + seeds * len(betas), agree + (v == truth[n])
        decisions = orders * len(truth)
        out[arm] = {"seeds_per_decision": used / decisions, "agree": agree / decisions, "losses": len(truth),
                    "orders": orders}
    return out


def run_once(arm: list[str], run_dir: Path, proposals: int, seed: int) -> float:
    cmd = ["discovery", "run", "--proposer", "symbolic", "--proposals", str(proposals), "--run-dir", str(run_dir),
           "--quiet", "--set", f"seed={seed}", *[x for kv in arm for x in ("--set", kv)]]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall


def measure(run_dir: Path, wall: float) -> dict:
    """Counts from the run's archive: baseline jobs trained vs cached, the proposals' jobs and their outcome."""
    db = sqlite3.connect(run_dir / "archive.sqlite")
    started, end_reason = db.execute("SELECT created_at, end_reason FROM run").fetchone()
    rows = db.execute("SELECT c.id, c.origin, c.stage, c.reason, e.created_at, c.created_at FROM evaluations e "
                      "JOIN candidates c ON c.id = e.candidate_id").fetchall()
    cands = db.execute("SELECT id, origin, stage, reason, status FROM candidates").fetchall()
    db.close()
    base = [r for r in rows if r[1] == "library"]
    mine = [r for r in rows if r[1] != "library"]
    base_done = max((r[4] for r in base), default=started) - started
    # a cache hit is stored as the baseline enters its stage (< 1 s after it was stored); a trained job takes seconds
    trained = sum(1 for r in base if r[4] - r[5] >= 1.0)
    proposals = [c for c in cands if c[1] != "library"]
    return {
        "wall_s": wall, "baseline_jobs": len(base), "baseline_trained": trained,
        "baselines_done_s": base_done, "proposals": len(proposals), "proposal_jobs": len(mine),
        "raced_out": sum(1 for c in proposals if "raced out" in (c[3] or "")),
        "reevaluated": sum(1 for c in proposals if c[2] in ("reeval", "heldout")),
        "promoted": sum(1 for c in proposals if c[2] in ("full", "reeval", "heldout")),
        "s_per_proposal": (wall - base_done) / len(proposals) if proposals else None, "end": end_reason,
    }


def table(results: dict[str, dict[str, dict]]) -> list[str]:
    keys = [("wall_s", "wall, N proposals (s)", "run"), ("baselines_done_s", "baselines done after (s)", "run"),
            ("baseline_trained", "baseline jobs trained", "run"), ("baseline_jobs", "baseline jobs", "run"),
            ("proposals", "proposals stored", "run"), ("proposal_jobs", "proposal jobs (candidate-seeds)", "run"),
            ("promoted", "promoted past the screen", "run"), ("raced_out", "raced out", "run"),
            ("reevaluated", "re-evaluated", "run"),
            ("s_per_proposal", "s / proposal after baselines", "run"), ("end", "stopped by", "run"),
            ("wall_s", "quick start, warm cache (s)", "quick"), ("proposal_jobs", "quick start: proposal jobs", "quick")]
    arms = list(results)
    out = ["| measure | " + " | ".join(arms) + (" | new / old |" if {"old", "new"} <= set(arms) else " |"),
           "|---|" + "---|" * (len(arms) + ({"old", "new"} <= set(arms)))]
    for key, label, which in keys:
        if any(which not in results[a] for a in arms):
            continue
        vals = [results[a][which][key] for a in arms]
        cells = [f"{v:.1f}" if isinstance(v, float) else "-" if v is None else str(v) for v in vals]
        if {"old", "new"} <= set(arms):
            old, new = results["old"][which][key], results["new"][which][key]
            numbers = all(isinstance(v, int | float) for v in (old, new))
            cells.append(f"{new / old:.2f}x" if numbers and old else "-")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def racing_rungs(first: int, cap: int) -> list[int]:
    from discovery.racing import rungs

    return rungs(first, cap)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--proposals", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--replay-only", action="store_true", help="only the replay of the stored results (no runs)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="more settings for both arms, e.g. eval.screen=false (every proposal gets a full evaluation)")
    ap.add_argument("--no-quick", action="store_true", help="skip the quick-start runs")
    ap.add_argument("--orders", type=int, default=100, help="random seed orders in the replay")
    args = ap.parse_args()
    load0 = os.getloadavg()
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="fitness-defaults-") as tmp:
        for arm in [] if args.replay_only else args.arms:
            run_dir, quick_dir = Path(tmp) / f"{arm}-run", Path(tmp) / f"{arm}-quick"
            sets = [*ARMS[arm], *args.extra]
            results[arm] = {"run": measure(run_dir, run_once(sets, run_dir, args.proposals, args.seed))}
            if not args.no_quick:
                results[arm]["quick"] = measure(quick_dir, run_once(sets, quick_dir, 3, args.seed))
            print(arm, json.dumps(results[arm]), flush=True)
    load1 = os.getloadavg()
    flags = "".join(f" --set {x}" for x in args.extra) + (" --no-quick" if args.no_quick else "")
    lines = [f"`python bench/fitness_defaults.py --proposals {args.proposals} --arms {' '.join(args.arms)}{flags}` "
             f"(load {load0[0]:.1f}/{load0[1]:.1f} before, {load1[0]:.1f}/{load1[1]:.1f} after; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             *[f"- {a}: {' '.join(ARMS[a])}" for a in args.arms], "", *(table(results) if results else [])]
    rep = replay(args.orders)
    lines += ["", f"Replay ({rep['old']['orders']} seed orders x {rep['old']['losses']} library losses, "
              "bench/results/headroom/cache.json; truth: each loss at its best beta of 0.05/0.1/0.2 on all 10 seeds):",
              "", "| arm | grid, rungs | candidate-seeds / decision | agrees with the 10-seed verdict |", "|---|---|---|---|"]
    for arm, (betas, first, cap) in REPLAY.items():
        r = rep[arm]
        lines.append(f"| {arm} | {list(betas)}, {racing_rungs(first, cap)} | {r['seeds_per_decision']:.1f} | "
                     f"{r['agree']:.1%} |")
    print("\n".join(lines))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
