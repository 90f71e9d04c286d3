"""`discovery tasks list` and `discovery tasks prepare NAME`: the inner-loop tasks and their one-time build."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from discovery.commands.common import add_config_args, config_from_args, print_json
from discovery.config import with_values
from discovery.errors import DiscoveryError


def register(subparsers) -> None:
    p = subparsers.add_parser("tasks", help="list inner-loop tasks or build one's shared cache")
    sub = p.add_subparsers(dest="tasks_command", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="the registered tasks, their cost and whether they are prepared")
    lst.add_argument("--json", action="store_true")
    add_config_args(lst)
    lst.set_defaults(func=run_list)
    prep = sub.add_parser("prepare", help="build and cache what every candidate of a task shares")
    prep.add_argument("name", metavar="NAME")
    add_config_args(prep)
    prep.set_defaults(func=run_prepare)


def prepare_with_progress(task, console: Console | None = None) -> None:
    """task.prepare() behind a rich progress bar (stage name and fraction)."""
    console = console or Console(stderr=True)
    columns = (TextColumn("prepare {task.fields[task_name]}: {task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("start", total=1.0, task_name=task.name)

        def report(stage: str, fraction: float) -> None:
            progress.update(bar, description=stage, completed=max(0.0, min(1.0, fraction)))

        task.prepare(report)
        progress.update(bar, completed=1.0)


def _describe(name: str, args) -> dict:
    from discovery.inner_loop.task import get_task

    config = with_values(config_from_args(args), {"task.name": name})
    try:
        task = get_task(config)
        info = task.info()
    except Exception as exc:  # noqa: BLE001 - a task that needs settings still gets a row
        return {"name": name, "cost_class": "-", "prepared": None, "cache_key": None,
                "description": f"(needs configuration: {exc})"}
    prepared = getattr(task, "is_prepared", None)
    try:
        key = task.cache_key()
    except Exception:  # noqa: BLE001
        key = None
    return {"name": name, "cost_class": info.cost_class, "prepared": prepared() if prepared else None,
            "cache_key": key, "description": info.description}


def run_list(args) -> int:
    from discovery.inner_loop.task import TASKS

    rows = [_describe(name, args) for name in sorted(TASKS)]
    if args.json:
        print_json(rows)
        return 0
    table = Table(title="inner-loop tasks")
    for column in ("name", "cost", "prepared", "cache key", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        prepared = {True: "yes", False: "no", None: "-"}[row["prepared"]]
        table.add_row(row["name"], row["cost_class"], prepared, row["cache_key"] or "-", row["description"])
    Console(width=140).print(table)
    return 0


def run_prepare(args) -> int:
    from discovery.inner_loop.task import TASKS, get_task

    if args.name not in TASKS:
        raise DiscoveryError(f"unknown task '{args.name}'; available: {', '.join(sorted(TASKS))}")
    config = with_values(config_from_args(args), {"task.name": args.name})
    task = get_task(config)
    prepare_with_progress(task)
    where = getattr(task, "path", None)
    Console().print(f"task '{task.name}' prepared (cache key {task.cache_key()})" + (f" at {where}" if where else ""))
    return 0
