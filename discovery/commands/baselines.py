"""`discovery baselines [--task NAME] [--seeds N] [--betas B ...] [--json]`: the whole library in one harness.

With several betas (`--betas`, else `eval.betas`) each loss is trained at every beta; its fitness is then
`eval.fitness` over them (`discovery.inner_loop.sweep.sweep_fitness`: best_beta by default), compared with DPO's
paired by seed (`discovery.stats.paired`, `eval.paired_test`). `--json` has both the per-beta results and
that fitness ("fitness": mode, beta, mean and CI, per-seed values; "vs_dpo": diff, SE, t, p, test).
"""

from __future__ import annotations

from rich.console import Console

from discovery import library
from discovery.commands.common import print_json
from discovery.commands.evaluate import add_eval_args, evaluate_code, progress_bar, result_table, start
from discovery.stats import fitness_text

REFERENCE_ROW = "(reference, untrained)"


def register(subparsers) -> None:
    p = subparsers.add_parser("baselines", help="train and score every library loss; a table sorted by fitness")
    p.add_argument("--only", metavar="NAME", action="append", help="evaluate only this library loss (repeatable)")
    p.add_argument("--betas", type=float, nargs="+", metavar="B",
                   help="train every loss at each of these betas (default: eval.betas, else train.beta)")
    add_eval_args(p)
    p.set_defaults(func=run)


def _sort_key(row: dict) -> float:
    fitness = row["fitness"]["fitness"]
    return -fitness["mean"] if fitness else float("inf")


def rate(rows: list[dict], config) -> None:
    """Add each row's fitness over its betas (`eval.fitness`) and its paired comparison with DPO's."""
    from discovery.candidate import EvalResult
    from discovery.inner_loop.sweep import sweep_fitness
    from discovery.stats import PAIRED_T, PERMUTATION, paired

    def results(row):
        return [EvalResult.from_dict(r)
                for entry in row["results"] for r in entry["seeds"]]

    mode, beta = config.eval.fitness, config.train.beta
    dpo = next((r for r in rows if r["name"] == "dpo"), None)
    target = None
    if dpo is not None:  # matched_kl: DPO's KL at train.beta (else at its only beta)
        at = [e for e in dpo["results"] if abs(e["beta"] - beta) < 1e-9] or dpo["results"][:1]
        target = at[0]["metrics"].get("kl")
    rated = {id(r): sweep_fitness(results(r), mode, beta, target) for r in rows}
    test = PERMUTATION if config.eval.paired_test == "permutation" else PAIRED_T
    for row in rows:
        row["fitness"] = rated[id(row)].to_dict()
        if dpo is not None and row is not dpo and rated[id(row)].fitness is not None:
            row["vs_dpo"] = paired(rated[id(row)].by_seed, rated[id(dpo)].by_seed, test).to_dict()


def run(args) -> int:
    from discovery.errors import DiscoveryError
    from discovery.inner_loop.evaluate import seeds_for

    losses = list(library.LOSSES)
    if args.only:
        unknown = sorted(set(args.only) - set(library.names()))
        if unknown:
            raise DiscoveryError(f"unknown library loss {', '.join(unknown)}; known: {', '.join(library.names())}")
        losses = [x for x in losses if x.name in args.only]
    if args.betas:
        args.overrides = [*(args.overrides or []), f"eval.betas=[{', '.join(f'{b:g}' for b in args.betas)}]"]
    config, task, runner = start(args)
    seeds = seeds_for(config)
    rows = []
    with runner, progress_bar(Console(stderr=True)) as progress:
        if hasattr(task, "evaluate_reference"):
            rows.append(evaluate_code(task, None, runner, seeds, progress, REFERENCE_ROW))
        for loss in losses:
            rows.append(evaluate_code(task, loss.code, runner, seeds, progress, loss.name))
    rate(rows, config)
    rows.sort(key=_sort_key)
    if args.json:
        print_json({"task": task.name, "cache_key": task.cache_key(), "seeds": seeds, "fitness_mode": config.eval.fitness,
                    "betas": list(config.training_betas()), "baselines": rows})
        return 0
    title = f"baselines on task '{task.name}' (seeds {seeds[0]}..{seeds[-1]}, sorted by {config.eval.fitness} fitness)"
    console = Console(width=150)
    console.print(result_table(title, rows))
    console.print(fitness_table(rows, config.eval.fitness))
    return 0


def fitness_table(rows: list[dict], mode: str):
    from rich.table import Table

    table = Table(title=f"fitness = {mode} over the betas; vs DPO paired by seed")
    for column in ("loss", "at beta", "fitness (95% CI)", "vs DPO", "t", "p", "beats DPO"):
        table.add_column(column)
    for row in rows:
        f, c = row["fitness"], row.get("vs_dpo")
        fit = f["fitness"]
        text = "failed" if fit is None else fitness_text(fit["mean"], fit["ci_low"], fit["ci_high"], fit["n"])
        at = "-" if f["beta"] is None else f"{f['beta']:g}"
        if c is None:
            table.add_row(row["name"], at, text, "-", "-", "-", "-")
        else:
            table.add_row(row["name"], at, text, f"{c['diff']:+.4f} ± {c['se']:.4f}", f"{c['t']:+.1f}",
                          f"{c['p_value']:.3g}", "yes" if c["beats"] else "no")
    return table
