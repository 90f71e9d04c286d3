"""`discovery baselines [--task NAME] [--seeds N] [--json]`: the whole reference library in one harness."""

from __future__ import annotations

from rich.console import Console

from discovery import library
from discovery.commands.common import print_json
from discovery.commands.evaluate import add_eval_args, evaluate_code, progress_bar, result_table, start

REFERENCE_ROW = "(reference, untrained)"


def register(subparsers) -> None:
    p = subparsers.add_parser("baselines", help="train and score every library loss; a table sorted by fitness")
    p.add_argument("--only", metavar="NAME", action="append", help="evaluate only this library loss (repeatable)")
    add_eval_args(p)
    p.set_defaults(func=run)


def _sort_key(row: dict) -> float:
    fitness = row["results"][0]["fitness"]
    return -fitness["mean"] if fitness else float("inf")


def run(args) -> int:
    from discovery.errors import DiscoveryError
    from discovery.inner_loop.evaluate import seeds_for

    losses = list(library.LOSSES)
    if args.only:
        unknown = sorted(set(args.only) - set(library.names()))
        if unknown:
            raise DiscoveryError(f"unknown library loss {', '.join(unknown)}; known: {', '.join(library.names())}")
        losses = [x for x in losses if x.name in args.only]
    config, task, runner = start(args)
    seeds = seeds_for(config)
    rows = []
    with runner, progress_bar(Console(stderr=True)) as progress:
        if hasattr(task, "evaluate_reference"):
            rows.append(evaluate_code(task, None, runner, seeds, progress, REFERENCE_ROW))
        for loss in losses:
            rows.append(evaluate_code(task, loss.code, runner, seeds, progress, loss.name))
    rows.sort(key=_sort_key)
    if args.json:
        print_json({"task": task.name, "cache_key": task.cache_key(), "seeds": seeds, "baselines": rows})
        return 0
    title = f"baselines on task '{task.name}' (seeds {seeds[0]}..{seeds[-1]}, sorted by fitness)"
    Console(width=150).print(result_table(title, rows))
    return 0
