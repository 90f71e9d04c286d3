"""`discovery config show`: print the fully resolved run config."""

from __future__ import annotations

from discovery.commands.common import add_config_args, config_from_args, print_json
from discovery.config import to_yaml


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="inspect the run configuration")
    sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the fully resolved config (defaults + file + --set)")
    add_config_args(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    show.set_defaults(func=run_show)


def run_show(args) -> int:
    config = config_from_args(args)
    if args.json:
        print_json(config.to_dict())
    else:
        print(to_yaml(config), end="")
    return 0
