"""`archive diff A B`: the code diff of two candidates and the deltas of their metrics."""

from __future__ import annotations

import difflib
from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from discovery.archive import Archive
from discovery.inspect.safe_text import markup, printable, text
from discovery.inspect.views import CandidateRow, calls_by_candidate, format_number, row_of

COMPARED = ("fitness", "ci_low", "ci_high", "lcb", "n", "kl", "heldout_accuracy", "tokens", "cost_usd")


def diff_document(archive: Archive, a: int, b: int) -> dict[str, Any]:
    calls = calls_by_candidate(archive.llm_calls())
    rows = [row_of(archive.summary(i), calls.get(i, [])) for i in (a, b)]
    codes = [archive.candidate(i).code for i in (a, b)]
    return {
        "a": rows[0].to_dict(), "b": rows[1].to_dict(),
        "code_diff": code_diff(codes[0], codes[1], rows[0], rows[1]),
        "deltas": metric_deltas(rows[0], rows[1]),
    }


def code_diff(code_a: str, code_b: str, a: CandidateRow, b: CandidateRow) -> str:
    lines = difflib.unified_diff(code_a.splitlines(keepends=True), code_b.splitlines(keepends=True),
                                 fromfile=f"#{a.id} {a.name}", tofile=f"#{b.id} {b.name}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def metric_deltas(a: CandidateRow, b: CandidateRow) -> dict[str, dict[str, float | None]]:
    """Per metric: value of A, value of B and B - A (None where either is unknown)."""
    out = {}
    for key in COMPARED:
        va, vb = getattr(a, key), getattr(b, key)
        delta = vb - va if va is not None and vb is not None else None
        out[key] = {"a": va, "b": vb, "delta": delta}
    return out


def _number(value, sign: bool = False) -> str:
    if isinstance(value, int):
        return f"{value:+d}" if sign else str(value)
    if sign and value is not None:
        return f"{value:+.4f}"
    return format_number(value, 4)


def render_diff(doc: dict[str, Any], console: Console) -> None:
    a, b = doc["a"], doc["b"]
    if doc["code_diff"]:
        console.print(Syntax(printable(doc["code_diff"], newlines=True), "diff", word_wrap=True))
    else:
        console.print("the two candidates have the same code")
    table = Table(title=markup(f"B - A: #{b['id']} {b['name']} minus #{a['id']} {a['name']}"), title_justify="left")
    for col in ("metric", "A", "B", "B - A"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, v in doc["deltas"].items():
        table.add_row(key, _number(v["a"]), _number(v["b"]), _number(v["delta"], sign=True))
    table.add_row("status", text(a["status"]), text(b["status"]), "")
    console.print(table)
