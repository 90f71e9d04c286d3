"""The `discovery` command line: argparse front, one module per subcommand in discovery/commands/."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from discovery import __version__
from discovery.errors import DiscoveryError

# Each module defines `register(subparsers)`, which adds its subcommand with `set_defaults(func=...)`.
# `func(args)` returns the exit code.
COMMAND_MODULES = [
    "discovery.commands.losses",
    "discovery.commands.config_cmd",
    "discovery.commands.validate",
    "discovery.commands.evaluate",
    "discovery.commands.baselines",
    "discovery.commands.tasks",
    "discovery.commands.run",
    "discovery.commands.mtbench",
    "discovery.commands.archive",
    "discovery.commands.report",
    "discovery.commands.runs",
    "discovery.commands.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discovery",
        description="Let an LLM discover preference-optimization losses; train them with TRL; keep the best.",
    )
    parser.add_argument("--version", action="version", version=f"discovery {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = exit_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except DiscoveryError as exc:
        print(f"discovery: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("discovery: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None and argv is not None:  # called in-process (tests): give the handler back;
            signal.signal(signal.SIGTERM, previous)  # as the program, keep it through the clean-up at exit


def exit_on_sigterm():
    """SIGTERM leaves through SystemExit (143), so context managers and atexit run: the sandbox's folders and
    servers are removed as after Ctrl-C. Returns the handler it replaced (None when not installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return None

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    return previous


if __name__ == "__main__":
    sys.exit(main())
