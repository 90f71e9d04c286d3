"""`discovery evaluate FILE.py [--task NAME] [--seeds N] [--json]`: validate, then train and score one loss."""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from discovery import stats
from discovery.commands.common import add_config_args, config_from_args, print_json
from discovery.errors import DiscoveryError

SHORTCUTS = {"task": "task.name", "seeds": "eval.seeds"}


def add_eval_args(p) -> None:
    p.add_argument("--task", help="task name (default: the config's task.name)")
    p.add_argument("--seeds", type=int, help="seeds per loss (default: eval.seeds)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_config_args(p)


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="validate one loss file, then train and score it on a task")
    p.add_argument("file", metavar="FILE.py", help="Python source defining one loss function")
    add_eval_args(p)
    p.set_defaults(func=run)


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def start(args):
    """(config, prepared task, warm runner) for the evaluation commands."""
    from discovery.commands.tasks import prepare_with_progress
    from discovery.inner_loop.evaluate import make_runner
    from discovery.inner_loop.task import get_task
    from discovery.sandbox.isolation import SandboxStartError

    if args.seeds is not None and args.seeds < 1:
        raise DiscoveryError("--seeds must be at least 1")
    config = config_from_args(args, SHORTCUTS)
    task = get_task(config)
    config = task.config  # with the task's own settings (imdb: its policy and scorer)
    prepare_with_progress(task)
    try:
        runner = make_runner(config)
    except SandboxStartError as exc:
        raise DiscoveryError(str(exc)) from None
    return config, task, runner


def evaluate_code(task, code: str | None, runner, seeds: list[int], progress: Progress, label: str) -> dict:
    """All betas (eval.betas, else train.beta) x seeds of one loss; a JSON-ready summary."""
    from discovery.inner_loop.evaluate import evaluate_seeds, mean_metrics
    from discovery.inner_loop.sweep import SweepSummary, point
    from discovery.inner_loop.task import Fidelity

    betas = list(task.config.training_betas())
    bar = progress.add_task(label, total=len(betas) * len(seeds))
    per_beta, points = [], []
    for beta in betas:
        fidelity = Fidelity(beta=None if len(betas) == 1 else beta)
        results, fitness = evaluate_seeds(task, code, seeds, fidelity, runner,
                                          on_result=lambda _r: progress.advance(bar))
        points.append(point(beta, results, fitness))
        per_beta.append({"beta": beta, "fitness": dataclasses.asdict(fitness) if fitness else None,
                         "metrics": mean_metrics(results), "failures": points[-1].failures,
                         "seeds": [dataclasses.asdict(r) for r in results]})
    out = {"name": label, "results": per_beta}
    if len(betas) > 1:
        out["sweep"] = SweepSummary(points).to_dict()
    return out


def fitness_text(entry: dict) -> str:
    f = entry["fitness"]
    if f is None:
        return "failed"
    return stats.fitness_text(f["mean"], f["ci_low"], f["ci_high"], f["n"])


def result_table(title: str, rows: list[dict]) -> Table:
    table = Table(title=title)
    for column in ("loss", "beta", "fitness (95% CI)", "KL", "held-out acc", "s/seed", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        for entry in row["results"]:
            m = entry["metrics"]
            table.add_row(row["name"], f"{entry['beta']:g}", fitness_text(entry), _num(m.get("kl")),
                          _num(m.get("heldout_accuracy"), 3), _num(m.get("seconds"), 1),
                          "; ".join(entry["failures"])[:120])
    return table


def _num(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run(args) -> int:
    from discovery.commands.validate import read_candidate
    from discovery.inner_loop.evaluate import seeds_for
    from discovery.sandbox import validate

    code = read_candidate(args.file)
    console = Console(stderr=args.json, width=150)
    config = config_from_args(args, SHORTCUTS)
    report = validate(code, config.sandbox, batch_sizes=(config.train.per_device_train_batch_size,))
    if not report.valid:
        raise DiscoveryError(f"{args.file} is not a valid loss: {report.summary()}")
    config, task, runner = start(args)
    with runner, progress_bar(Console(stderr=True)) as progress:
        row = evaluate_code(task, code, runner, seeds_for(config), progress, args.file)
    row["task"] = task.name
    row["cache_key"] = task.cache_key()
    if args.json:
        print_json(row)
        return 0
    console.print(result_table(f"{args.file} on task '{task.name}'", [row]))
    if "sweep" in row:
        sweep = row["sweep"]
        robust = "-" if sweep["robustness"] is None else f"{sweep['robustness']:.4f}"
        console.print(f"robustness (worst mean fitness over betas): {robust}; failed betas: {sweep['failed_betas']}")
    return 0
