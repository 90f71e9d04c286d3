"""`discovery validate FILE.py [--json]`: run the sandbox's three layers on one candidate loss."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from discovery.commands.common import add_config_args, config_from_args, print_json
from discovery.errors import DiscoveryError
from discovery.inspect.safe_text import markup, printable, text

PASSED_CHECKS = ("static policy", "shape (B,) for B in 1,2,7,64",
                 "same per-pair loss with/without grad at every B in 1-512, multiples of 32 up to 2048, 4096 "
                 "and one random B in 257-511, on the check grid and training's log-prob ranges "
                 "(batch statistics only)",
                 "finite loss and gradients on the grid",
                 "gradients w.r.t. both policy log-probs", "inputs untouched, no aliasing", "deterministic",
                 "forward+backward speed at B=64")
JSON_KEYS = ("valid", "errors", "diagnostics", "fingerprint", "sympy", "latex", "isolation", "seconds")


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check a candidate loss file in the sandbox (exit 0 valid, 1 invalid)")
    p.add_argument("file", metavar="FILE.py", help="Python source defining one loss function")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_config_args(p)
    p.set_defaults(func=run)


def read_candidate(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise DiscoveryError(f"no such file: {path}")
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DiscoveryError(f"cannot read {path}: {exc}") from None


def run(args) -> int:
    code = read_candidate(args.file)
    config = config_from_args(args)
    from discovery.sandbox import validate
    from discovery.sandbox.isolation import SandboxStartError

    try:
        report = validate(code, config.sandbox, sweep=True, formula=True,
                          betas=config.training_betas())
    except SandboxStartError as exc:
        raise DiscoveryError(str(exc)) from None
    if args.json:
        data = report.to_dict()
        print_json({key: data[key] for key in JSON_KEYS})
    else:
        print_report(report, args.file)
    return 0 if report.valid else 1


def print_report(report, name: str) -> None:
    console = Console(width=120)
    verdict = "[green]VALID[/green]" if report.valid else "[red]INVALID[/red]"
    console.print(f"{markup(name)}: {verdict}  ({report.seconds * 1000:.0f} ms)")
    table = Table(title="checks", show_header=True)
    for column in ("check", "result", "reason"):
        table.add_column(column, overflow="fold")
    for error in report.errors:
        rule = error.check if error.rule in (None, error.check) else f"{error.check} ({error.rule})"
        table.add_row(text(rule), "[red]fail[/red]", text(error.message))
    if report.valid:
        for check in PASSED_CHECKS:
            table.add_row(check, "[green]pass[/green]", "")
    console.print(table)
    if report.diagnostics:
        diag = Table(title="diagnostics (recorded, not rejections)")
        diag.add_column("property")
        diag.add_column("value", overflow="fold")
        for key, value in report.diagnostics.items():
            diag.add_row(text(key), text(f"{value:.4g}" if isinstance(value, float) else value))
        console.print(diag)
    console.print(text(f"fingerprint: {report.fingerprint or '-'}"))
    console.print(text(f"formula: {printable(report.sympy or '-')}"))
    console.print(text(f"isolation: {', '.join(report.isolation)}"))
