"""`discovery losses`: the reference library as a table or JSON."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from discovery import library
from discovery.commands.common import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("losses", help="list the reference library of known losses")
    p.add_argument("--json", action="store_true", help="name, formula, code and citation as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.json:
        print_json([
            {"name": x.name, "kind": x.kind, "description": x.description, "formula": x.latex,
             "citation": x.citation, "code": x.code, "trl_loss_type": x.trl_loss_type}
            for x in library.LOSSES
        ])
        return 0
    table = Table(title="Reference losses (rho = beta-free margin of policy vs reference log-ratios)")
    for col in ("name", "kind", "formula", "citation"):
        table.add_column(col, overflow="fold")
    for x in library.LOSSES:
        table.add_row(x.name, x.kind, x.latex, x.citation)
    Console(width=160).print(table)
    return 0
