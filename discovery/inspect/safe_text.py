"""Candidate-produced text (names, reasons, thoughts, replies, exception messages) on a terminal: data only.

`printable` shows control characters (ESC, BEL, CR, ...) as Python escapes so no terminal sequence passes;
`markup` also escapes rich markup (`[/bold]` is shown, never parsed); `text` is a rich `Text`, never parsed.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text


def printable(value: Any, newlines: bool = False) -> str:
    """`value` as text whose control characters are shown as escapes (newlines kept when `newlines`)."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() or (newlines and c == "\n") else repr(c)[1:-1] for c in text)


def markup(value: Any, newlines: bool = False) -> str:
    """For a string that rich parses as markup (titles, f-strings passed to print)."""
    return escape(printable(value, newlines))


def text(value: Any, style: str = "", newlines: bool = False) -> Text:
    """For table cells and panels: a `Text` is never parsed as markup."""
    return Text(printable(value, newlines), style=style)
