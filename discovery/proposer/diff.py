"""SEARCH/REPLACE edits of a parent's code (as in Aider, OpenEvolve, ShinkaEvolve): a strict parser that never raises.

An edit reply looks like

    NAME: smoother_dpo
    THOUGHT: one sentence
    <<<<<<< SEARCH
    lines copied exactly from the parent
    =======
    the lines that replace them
    >>>>>>> REPLACE

Every SEARCH text must occur exactly once in the code (after the blocks before it were applied); lines are
compared without their trailing whitespace, nothing else is forgiven. A block that does not apply is one
reason the model can act on, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLOCK = re.compile(r"^[ \t]*<{5,}[ \t]*SEARCH[ \t]*\n(.*?)^[ \t]*={5,}[ \t]*\n(.*?)^[ \t]*>{5,}[ \t]*REPLACE[ \t]*$",
                    re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"^[ \t]*(<{5,}[ \t]*SEARCH|>{5,}[ \t]*REPLACE)", re.MULTILINE)
_FIELD = re.compile(r"^[ \t*#`]*(NAME|THOUGHT)[ \t*`]*:[ \t]*(.+?)[ \t*`]*$", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Edit:
    search: str
    replace: str


@dataclass(frozen=True)
class Edited:
    """The parent's code with the edits applied; `code` is empty and `reason` says why when they did not apply."""

    code: str = ""
    name: str = ""
    thought: str = ""
    reason: str = ""
    blocks: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.code)


def has_edits(text: str | None) -> bool:
    """Does the reply contain SEARCH/REPLACE markers at all (a broken block still counts)?"""
    return bool(_MARKER.search(text or ""))


def parse(text: str) -> list[Edit]:
    return [Edit(search, replace) for search, replace in _BLOCK.findall(text or "")]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip("\n").split("\n")]


def _apply_one(code: str, edit: Edit, index: int) -> tuple[str, str]:
    """(new code, "") or (code, reason)."""
    search = _lines(edit.search)
    if not any(line.strip() for line in search):
        return code, f"SEARCH block {index} is empty; copy the lines to change from the parent's code"
    lines = _lines(code)
    n = len(search)
    hits = [i for i in range(len(lines) - n + 1) if lines[i : i + n] == search]
    if not hits:
        first = search[0].strip()
        return code, (f"SEARCH block {index} (starting `{first[:60]}`) does not occur in the parent's code; "
                      "copy the lines exactly, with their indentation")
    if len(hits) > 1:
        return code, (f"SEARCH block {index} occurs {len(hits)} times in the parent's code; "
                      "include more lines so that it matches once")
    at = hits[0]
    replace = _lines(edit.replace) if edit.replace.strip() else []
    return "\n".join(lines[:at] + replace + lines[at + n :]) + "\n", ""


def apply(code: str, text: str) -> Edited:
    """Apply every SEARCH/REPLACE block of `text` to `code`, in order, or say why not."""
    name, thought = _fields(text)
    edits = parse(text)
    if not edits:
        reason = ("the SEARCH/REPLACE block is malformed; write `<<<<<<< SEARCH`, the old lines, `=======`, the new "
                  "lines, `>>>>>>> REPLACE`, each marker on its own line") if has_edits(text) else \
            "the answer has no SEARCH/REPLACE block"
        return Edited(name=name, thought=thought, reason=reason)
    for index, edit in enumerate(edits, 1):
        code, reason = _apply_one(code, edit, index)
        if reason:
            return Edited(name=name, thought=thought, reason=reason, blocks=len(edits))
    return Edited(code=code, name=name, thought=thought, blocks=len(edits))


def _fields(text: str) -> tuple[str, str]:
    found = {key.upper(): value.strip() for key, value in _FIELD.findall(text or "")}
    name = re.sub(r"\W+", "_", found.get("NAME", "").lower()).strip("_")
    return (name if name and not name[0].isdigit() else ""), found.get("THOUGHT", "")[:2000]
