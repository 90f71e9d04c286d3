"""Helpers shared by subcommands: config flags and loading, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from discovery import jsonout
from discovery.config import RunConfig, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML run config")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.beta=0.05 (repeatable)",
    )


def config_from_args(args: argparse.Namespace, shortcuts: dict[str, str] | None = None,
                     base: RunConfig | None = None) -> RunConfig:
    """`base` (default: the defaults), then --config, the short flags (dest -> config key) and --set overrides:
    the one override path (`config.load_config`)."""
    overrides = []
    for dest, key in (shortcuts or {}).items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    overrides.extend(args.overrides or [])
    return load_config(args.config, overrides, base=base)


def print_json(data: Any) -> None:
    """Strict JSON on stdout (NaN and +-Infinity become null): see discovery.jsonout."""
    jsonout.print_json(data, sys.stdout)
