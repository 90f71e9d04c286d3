"""`discovery runs [DIR] [--json]`: every run under a folder with its state, proposals, best, DPO and cost."""

from __future__ import annotations

import datetime as dt
import sys

from discovery.errors import DiscoveryError
from discovery.stats import fitness_text


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list the runs in a folder: state, proposals, best with CI, DPO, cost")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder of run directories (default: runs)")
    p.add_argument("--json", action="store_true", help="one strict JSON list (no NaN/Infinity)")
    p.set_defaults(func=run)


def run(args) -> int:
    from discovery.inspect.runs import UNREADABLE, list_runs

    states = list_runs(args.dir)
    if args.json:
        from discovery.commands.common import print_json

        print_json([s.to_dict() for s in states])
    else:
        _print_table(states)
    bad = [s for s in states if s.state == UNREADABLE]
    if bad:
        raise DiscoveryError(f"{len(bad)} archive(s) could not be read: " + "; ".join(s.reason for s in bad), 1)
    return 0


def _fitness(f: dict | None) -> str:
    if not f:
        return "-"
    return f"#{f['id']} {f['name']}: " + fitness_text(f["mean"], f["ci_low"], f["ci_high"], f["n"])


def printable(text: str) -> str:
    """Candidate text for a terminal: control characters (ESC, ...) shown as escapes, never interpreted."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _print_table(states) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if not states:
        print("no runs found", file=sys.stderr)
        return
    table = Table(title=f"{len(states)} run(s)", title_justify="left")
    for col in ("run", "state", "started", "task", "proposals", "best (95% CI)", "dpo", "tokens", "cost $"):
        table.add_column(col, overflow="fold")
    for s in states:
        state = s.state + (f": {s.reason}" if s.reason else "")
        started = dt.datetime.fromtimestamp(s.started_at).strftime("%Y-%m-%d %H:%M") if s.started_at else "-"
        counts = ", ".join(f"{n} {k}" for k, n in sorted(s.counts.items()))
        table.add_row(*(escape(printable(x)) for x in (
            s.path, state, started, s.task, f"{s.proposals}" + (f" ({counts})" if counts else ""),
            _fitness(s.best), _fitness(s.dpo), str(s.tokens), f"{s.cost_usd:.4f}")))
    Console(width=None if sys.stdout.isatty() else 400).print(table)  # a pipe: one line per run
