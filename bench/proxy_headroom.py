"""Headroom on the synthetic proxy: does any published loss beat DPO, each at its own best beta?

Every library loss (and DPO) is trained at every beta of a small grid on fresh seeds, in the real harness
(the executor's isolated workers, the default task unless --set changes it). Each loss is scored at its
own best beta (`eval.fitness = best_beta`, `discovery.inner_loop.sweep`) and compared with DPO at DPO's
best beta, paired by seed, with a paired t-test (n-1 degrees of freedom) and an exact sign-flip
permutation test. "headroom" = the loss beats DPO by more than 3 paired standard errors. Also printed:
seconds per candidate-seed (training + scoring, as the worker measured it) and the machine's load.

Results are cached per (task, train config, code, beta, seed) in --cache, so an interrupted run resumes.

    python bench/proxy_headroom.py                                  # 18 losses x 4 betas x 10 seeds
    python bench/proxy_headroom.py --losses dpo cdpo slic --seeds 1000 1001 1002 --betas 0.1 0.2
    python bench/proxy_headroom.py --set task.options.label_noise=0.2 --markdown out.md
    python bench/proxy_headroom.py --losses dpo nca_pair --extra bench/losses/dpop.py --set task.options.edit_pairs=0.5
    python bench/proxy_headroom.py --extra bench/losses/dpop.py --grid dpo=0.003125,0.00625,0.0125 \
        --grid dpop=0.025,0.05,0.1      # a grid per loss (each around its own optimum); the rest use --betas
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from discovery import library  # noqa: E402
from discovery.candidate import EvalResult  # noqa: E402
from discovery.stats import PAIRED_T, PERMUTATION, paired  # noqa: E402

GRID = [0.05, 0.1, 0.2, 0.4]
SEEDS = list(range(1000, 1010))


UNVERSIONED_BUILD = 2  # the synthetic build whose cache keys were written before the build version entered them


def job_key(config: dict, code: str, beta: float, seed: int) -> str:
    """The cache key of one job: task and train config, code, beta, seed, and the synthetic task's build version
    (so results of another build are never reused; build 2's keys are the ones the committed caches hold)."""
    from discovery.inner_loop.synthetic_build import BUILD_VERSION

    build = [] if BUILD_VERSION == UNVERSIONED_BUILD else [BUILD_VERSION]
    blob = json.dumps([config["task"], config["train"], *build], sort_keys=True) + code
    return f"{hashlib.sha1(blob.encode()).hexdigest()[:16]}:{beta:g}:{seed}"


def run_jobs(config, losses: dict[str, str], grids: dict[str, list[float]], seeds: list[int],
             cache_path: Path) -> dict:
    """{key: EvalResult as dict}; runs what the cache lacks, on the executor's isolated workers."""
    from discovery.executors import make_executor
    from discovery.inner_loop.task import Fidelity, get_task

    raw = config.to_dict()
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    todo = [(code, b, s) for name, code in losses.items() for b in grids[name] for s in seeds
            if job_key(raw, code, b, s) not in cache]
    if todo:
        get_task(config).prepare(None)
        start = time.perf_counter()
        with make_executor(config) as executor:
            futures = [(c, b, s, executor.submit(0, c, s, Fidelity(name="full", beta=b))) for c, b, s in todo]
            for i, (c, b, s, future) in enumerate(futures, 1):
                r = future.result()
                cache[job_key(raw, c, b, s)] = {"seed": s, "beta": b, "ok": r.ok, "fitness": r.fitness,
                                                "kl": r.metrics.get("kl"), "seconds": r.seconds,
                                                "reason": r.reason}
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_text(json.dumps(cache))
                left = (time.perf_counter() - start) / i * (len(futures) - i)
                print(f"  {i}/{len(futures)} jobs, ~{left / 60:.0f} min left, load {os.getloadavg()[0]:.1f}",
                      file=sys.stderr, end="\r")
        print(file=sys.stderr)
    return cache


def results_of(cache: dict, raw: dict, code: str, betas, seeds) -> list[EvalResult]:
    out = []
    for b in betas:
        for s in seeds:
            d = cache[job_key(raw, code, b, s)]
            out.append(EvalResult(seed=s, fitness=d["fitness"], beta=b, ok=d["ok"] and d["fitness"] is not None,
                                  seconds=d["seconds"], metrics={"kl": d["kl"]} if d["kl"] is not None else {},
                                  reason=d["reason"]))
    return out


def table(config, losses: dict[str, str], grids: dict[str, list[float]], seeds, cache: dict) -> list[dict]:
    from discovery.inner_loop.sweep import sweep_fitness

    raw = config.to_dict()
    rated = {name: sweep_fitness(results_of(cache, raw, code, grids[name], seeds), "best_beta")
             for name, code in losses.items()}
    dpo = rated["dpo"]
    rows = []
    for name, r in rated.items():
        res = results_of(cache, raw, losses[name], grids[name], seeds)
        row = {"loss": name, "best_beta": r.beta, "fitness": None if r.fitness is None else r.fitness.mean,
               "kl": r.kl, "n": 0 if r.fitness is None else r.fitness.n,
               "per_beta": {f"{b:g}": None if f is None else f.mean for b, f in sorted(r.per_beta.items())},
               "seconds": sum(x.seconds for x in res) / len(res), "failed": sum(not x.ok for x in res)}
        if name != "dpo" and r.fitness is not None and dpo.fitness is not None:
            t, perm = paired(r.by_seed, dpo.by_seed, PAIRED_T), paired(r.by_seed, dpo.by_seed, PERMUTATION)
            row |= {"diff": t.diff, "se": t.se, "t": t.t, "p_t": t.p_value, "p_perm": perm.p_value,
                    "headroom": t.diff > 3 * t.se and t.n >= 2}
        rows.append(row)
    rows.sort(key=lambda x: -math.inf if x["fitness"] is None else -x["fitness"])
    return rows


def markdown(rows: list[dict], betas, seeds, argv: list[str], load: tuple, wall: float) -> str:
    head = " | ".join(f"β={b:g}" for b in betas)
    lines = [f"`python bench/proxy_headroom.py {' '.join(argv)}`".replace("  ", " "), "",
             f"seeds {seeds[0]}..{seeds[-1]} (n={len(seeds)}), grid {betas}; each loss at its own best β vs DPO at "
             f"its best β, paired by seed: paired t (n-1 df) and exact sign-flip permutation p-values; headroom = "
             f"diff > 3 paired SE. Load average (1/5/15 min) at the end: {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; "
             f"wall {wall:.0f} s.", "",
             f"| loss | best β | fitness | KL | {head} | vs DPO (diff ± SE) | t | p (t) | p (perm) | > 3 SE | s/seed |",
             "|---|---|---|---|" + "---|" * len(betas) + "---|---|---|---|---|---|"]
    for r in rows:
        per = " | ".join("-" if f"{b:g}" not in r["per_beta"] else "fail" if r["per_beta"][f"{b:g}"] is None
                         else f"{r['per_beta'][f'{b:g}']:.4f}" for b in betas)
        fit = "failed" if r["fitness"] is None else f"{r['fitness']:.4f}"
        kl = "-" if r["kl"] is None else f"{r['kl']:.2f}"
        beta = "-" if r["best_beta"] is None else f"{r['best_beta']:g}"
        if "diff" in r:
            vs = (f"{r['diff']:+.4f} ± {r['se']:.4f} | {r['t']:+.1f} | {r['p_t']:.3g} | {r['p_perm']:.3g} | "
                  f"{'**yes**' if r['headroom'] else 'no'}")
        else:
            vs = "- | - | - | - | -"
        lines.append(f"| {r['loss']} | {beta} | {fit} | {kl} | {per} | {vs} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def time_in_process(config, repeats: int) -> list[float]:
    """Seconds per candidate-seed (train + score) of DPO at train.beta, in this process on one thread, with no
    executor overhead: the cost on one core (run it when the machine is idle; the load is printed with it)."""
    import torch

    from discovery.inner_loop.task import Fidelity, get_task
    from discovery.sandbox.loader import load_loss

    task = get_task(config)
    task.prepare(None)
    torch.set_num_threads(1)
    loss_fn = load_loss(library.get("dpo").code)  # library code is ours (trusted): no sandbox needed
    out = []
    for seed in range(repeats):
        r = task.evaluate_fn(loss_fn, seed, Fidelity())
        out.append(r.seconds)
    return out


def parse_grids(specs: list[str], parser: argparse.ArgumentParser) -> dict[str, list[float]]:
    """--grid LOSS=B1,B2,... -> {loss: [betas]}."""
    out = {}
    for spec in specs:
        name, _, betas = spec.partition("=")
        try:
            out[name] = [float(b) for b in betas.split(",")]
        except ValueError:
            parser.error(f"--grid {spec!r}: expected LOSS=B1,B2,...")
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    from discovery.config import load_config

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--losses", nargs="+", default=library.names(), help="library losses (dpo is always added)")
    p.add_argument("--extra", nargs="+", default=[], type=Path, metavar="FILE",
                   help="losses outside the library, one source file each, named by the file (bench/losses/)")
    p.add_argument("--betas", type=float, nargs="+", default=GRID)
    p.add_argument("--grid", action="append", default=[], metavar="LOSS=B1,B2,...",
                   help="this loss's own beta grid instead of --betas (repeatable; '-' in its other columns)")
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--cache", type=Path, default=REPO / "bench/results/headroom/cache.json")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--time", type=int, default=0, metavar="N",
                   help="only time N in-process DPO candidate-seeds on one core (prints s/seed and load)")
    opts = p.parse_args(argv)
    config = load_config(None, [f"executor.workers={opts.workers}", *opts.set])
    if opts.time:
        before = os.getloadavg()
        secs = time_in_process(config, opts.time)
        print(f"s/candidate-seed on one core (DPO, in-process, {len(secs)} seeds): "
              f"{', '.join(f'{x:.2f}' for x in secs)}; mean {sum(secs) / len(secs):.2f}; load average before "
              f"{before[0]:.1f}/{before[1]:.1f}/{before[2]:.1f}, after {os.getloadavg()[0]:.1f}")
        return []
    names = ["dpo", *[n for n in opts.losses if n != "dpo"]]
    unknown = sorted(set(names) - set(library.names()))
    if unknown:
        p.error(f"unknown library loss {', '.join(unknown)}")
    losses = {n: library.get(n).code for n in names} | {f.stem: f.read_text() for f in opts.extra}
    grids = {n: list(opts.betas) for n in losses} | parse_grids(opts.grid, p)
    if set(grids) - set(losses):
        p.error(f"--grid for a loss not run: {', '.join(sorted(set(grids) - set(losses)))}")
    columns = sorted({b for g in grids.values() for b in g})
    start = time.perf_counter()
    cache = run_jobs(config, losses, grids, opts.seeds, opts.cache)
    rows = table(config, losses, grids, opts.seeds, cache)
    text = markdown(rows, columns, opts.seeds, argv, os.getloadavg(), time.perf_counter() - start)
    print(text)
    if opts.markdown:
        opts.markdown.parent.mkdir(parents=True, exist_ok=True)
        opts.markdown.write_text(text)
    wins = [r["loss"] for r in rows if r.get("headroom")]
    print(f"headroom (> 3 paired SE over DPO, n={len(opts.seeds)}): {', '.join(wins) if wins else 'none'}")
    return rows


if __name__ == "__main__":
    main()
