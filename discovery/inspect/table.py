"""The candidates table of the HTML views, paged: the first page rendered server-side, every row as JSON.

Each row is a list of cells `[text]`, or `[text, value]` in a numeric column (`value` is the sort key, ""
when there is none), computed once here: the Jinja template renders the first `PAGE` rows from it, and the page's
script renders any other page (after a sort or a filter) from the same data with `textContent`, so a
candidate's text is never parsed as HTML and a 10,000-candidate run is a few MB, not a 10,000-row DOM.
"""

from __future__ import annotations

import json
import math
from typing import Any

from markupsafe import Markup

from discovery.inspect.views import CandidateRow, format_number

PAGE = 200
# (header, numeric?) in column order; the template writes the headers, the rows below fill them
COLUMNS = (("id", True), ("gen", True), ("name", False), ("status", False), ("reason", False),
           ("fitness", True), ("± CI", True), ("n", True), ("LCB", True), ("KL", True), ("held-out acc", True),
           ("parents", False), ("model", False), ("tokens", True), ("cost $", True))


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return str(value) if isinstance(value, int) else repr(float(value))


def _cell(text: Any) -> list[str]:
    return [str(text)]


def _num_cell(text: Any, value: float | None) -> list[str]:
    """A numeric column's cell: [text, sort value] ("" = none, sorted last)."""
    return [str(text), _num(value)]


def table_row(r: CandidateRow) -> dict[str, Any]:
    """One row: its CSS class, id and cells (text shown, sort value for the numeric columns)."""
    half = (r.ci_high - r.ci_low) / 2 if r.ci_low is not None and r.ci_high is not None else None
    status = r.status + (f" of #{r.duplicate_of}" if r.duplicate_of is not None else "")
    return {
        "id": r.id,
        "cls": f"status-{r.status}" + (" baseline" if r.baseline else ""),
        "cells": [
            _num_cell(r.id, r.id), _num_cell(r.generation, r.generation),
            _cell(r.name + (" (baseline)" if r.baseline else "")), _cell(status), _cell(r.reason),
            _num_cell(format_number(r.fitness, 4), r.fitness), _num_cell(format_number(half, 4), half),
            _num_cell(r.n, r.n), _num_cell(format_number(r.lcb, 4), r.lcb), _num_cell(format_number(r.kl), r.kl),
            _num_cell(format_number(r.heldout_accuracy), r.heldout_accuracy),
            _cell(" ".join(f"#{p}" for p in r.parents)), _cell(r.model or r.proposer),
            _num_cell(r.tokens, r.tokens), _num_cell(f"{r.cost_usd:.4f}", r.cost_usd),
        ],
    }


def script_json(value: Any) -> Markup:
    """JSON safe inside `<script type="application/json">`: no `<`, `>` or `&` can end the element."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def table_context(rows: list[CandidateRow]) -> dict[str, Any]:
    """What the template needs: the first page, every row as script-safe JSON, sizes."""
    all_rows = [table_row(r) for r in rows]
    return {"columns": COLUMNS, "table": all_rows[:PAGE], "table_json": script_json(all_rows),
            "table_total": len(all_rows), "page_size": PAGE}
