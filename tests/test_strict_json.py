"""Every `--json` output is strict JSON (RFC 8259: no NaN, Infinity, -Infinity), as jq and JavaScript demand."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_inspect_fixtures import build_archive

from discovery import jsonout, library
from discovery.cli import build_parser


def strict(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}: {text[:300]}"))


def test_non_finite_numbers_become_null_everywhere():
    data = {"ci": [float("-inf"), float("inf")], "mean": float("nan"), "n": 1, "ok": 0.5,
            "nested": ({"x": np.float64("nan"), "y": np.array([1.0, np.inf])},), "path": Path("/tmp/x")}
    text = jsonout.dumps(data)
    assert strict(text) == {"ci": [None, None], "mean": None, "n": 1, "ok": 0.5,
                            "nested": [{"x": None, "y": [1.0, None]}], "path": "/tmp/x"}
    with pytest.raises(ValueError, match="Infinity"):
        jsonout.loads_strict(json.dumps({"low": -math.inf}))  # what Python's json writes by default


def json_commands() -> dict[str, str]:
    """'archive list' -> its module, for every subcommand that takes --json."""
    found = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
            elif "--json" in action.option_strings:
                found[prefix] = parser.get_default("func").__module__

    walk(build_parser(), "")
    return found


def test_every_json_command_writes_through_a_strict_helper():
    """No command module writes JSON with the json module's own (NaN-writing) defaults."""
    commands = json_commands()
    assert {"evaluate", "validate", "config show", "losses", "archive list"} <= set(commands), commands
    for module in sorted(set(commands.values())):
        tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
        in_fstring = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FormattedValue) for n in ast.walk(f)}
        for node in ast.walk(tree):
            if _is_json_dump(node) and id(node) not in in_fstring:  # (an f-string builds --set text, not output)
                assert any(k.arg == "allow_nan" and getattr(k.value, "value", True) is False for k in node.keywords), \
                    f"{module}:{node.lineno}: {ast.unparse(node)} may write NaN/Infinity; use discovery.jsonout"


def _is_json_dump(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("dump", "dumps")
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "json")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("strict") / "run"
    build_archive(run_dir)
    return run_dir


def test_cheap_commands_print_strict_json(run_dir, tmp_path):
    loss = tmp_path / "loss.py"
    loss.write_text(library.get("dpo").code)
    for args in (["config", "show"], ["losses"], ["tasks", "list"], ["validate", str(loss)],
                 ["archive", "list", str(run_dir)], ["archive", "show", str(run_dir), "1"],
                 ["archive", "diff", str(run_dir), "1", "2"], ["runs", str(run_dir.parent)]):
        out = run_cli(*args, "--json", timeout=300)
        assert out.returncode == 0, (args, out.stderr)
        strict(out.stdout)


def test_evaluate_on_one_seed_prints_null_for_the_missing_confidence_interval(tmp_path):
    """The reported case: one seed has no CI; Python's json wrote -Infinity there."""
    loss = tmp_path / "loss.py"
    loss.write_text(library.get("dpo").code)
    out = run_cli("evaluate", str(loss), "--seeds", "1", "--json", "--set", "train.max_steps=2", timeout=600)
    assert out.returncode == 0, out.stderr
    assert "Infinity" not in out.stdout and "NaN" not in out.stdout
    row = strict(out.stdout)
    assert isinstance(row, dict) and row
