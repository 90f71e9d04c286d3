"""Robust extraction of {"thought", "name", "code"} from an LLM reply; never raises."""

from __future__ import annotations

import ast
import json
import re
import textwrap
from dataclasses import dataclass

from discovery.proposer import diff

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEF = re.compile(r"^[ \t]*def [A-Za-z_]\w*\s*\(", re.MULTILINE)
_IMPORT = re.compile(r"^(?:import [\w.]+(?: as \w+)?|from [\w.]+ import [\w, ]+)[ \t]*$", re.MULTILINE)


@dataclass
class Extracted:
    """The parts of a reply; `code` is empty and `reason` says why when nothing usable was found."""

    thought: str = ""
    name: str = ""
    code: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.code)


def extract(text: str | None) -> Extracted:
    """JSON object first (whole reply, fenced, or embedded), then fenced code, then the last `def`."""
    text = (text or "").strip()
    if not text:
        return Extracted(reason="empty reply")
    obj = _json_object(text)
    if obj is not None:
        return _from_json(obj, text)
    code = _code_from_text(text)
    if code:
        return Extracted(name=_function_name(code), code=code, thought=_prose(text))
    return Extracted(reason=f"no JSON object and no Python function in the reply (starts: {_head(text)})")


def read(text: str | None, edit_base: str | None = None) -> tuple[Extracted, bool]:
    """The loss in a reply, and whether the reply was an edit: SEARCH/REPLACE blocks are applied to `edit_base`
    (`discovery.proposer.diff`; a block that does not apply is the reason), anything else goes to `extract`."""
    if edit_base is None or not diff.has_edits(text):
        return extract(text), False
    edited = diff.apply(edit_base, text or "")
    if not edited.ok:
        return Extracted(thought=edited.thought, name=edited.name, reason=edited.reason), True
    return Extracted(thought=edited.thought, name=edited.name or _function_name(edited.code), code=edited.code), True


def _from_json(obj: dict, text: str) -> Extracted:
    thought = str(obj.get("thought") or "").strip()
    raw = obj.get("code")
    code = _clean_code(raw) if isinstance(raw, str) else ""
    if not code or not _DEF.search(code):
        fallback = _code_from_text(_without_json(text))
        if fallback:
            code = fallback
        elif not isinstance(raw, str) or not raw.strip():
            return Extracted(thought=thought, reason='the JSON reply has no "code" field with Python source')
        else:
            return Extracted(thought=thought, reason='the "code" field contains no function definition')
    name = _identifier(str(obj.get("name") or "")) or _function_name(code)
    return Extracted(thought=thought, name=name, code=code)


def _json_object(text: str) -> dict | None:
    candidates = [text]
    candidates += [body for lang, body in _FENCE.findall(text) if lang.lower() in ("json", "")]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for chunk in candidates:
        try:
            obj = json.loads(chunk.strip(), strict=False)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _without_json(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    return text[:start] + text[end + 1 :] if 0 <= start < end else text


def _clean_code(code: str) -> str:
    fenced = [body for lang, body in _FENCE.findall(code) if _DEF.search(body)]
    if fenced:
        code = fenced[-1]
    return textwrap.dedent(code).strip("\n") + "\n" if code.strip() else ""


def _code_from_text(text: str) -> str:
    """The last fenced block with a `def`, else the imports plus the last top-level function."""
    fenced = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("python", "py", "") and _DEF.search(body)]
    if fenced:
        return _clean_code(fenced[-1])
    starts = [m.start() for m in _DEF.finditer(text)]
    if not starts:
        return ""
    body = textwrap.dedent(text[starts[-1] :])
    body = _longest_parsable_prefix(body)
    if not body:
        return ""
    imports = "\n".join(dict.fromkeys(m.group(0).strip() for m in _IMPORT.finditer(text[: starts[-1]])))
    return (imports + "\n\n\n" if imports else "") + body


def _longest_parsable_prefix(code: str) -> str:
    lines = code.rstrip().splitlines()
    for end in range(len(lines), 0, -1):
        chunk = "\n".join(lines[:end]) + "\n"
        try:
            ast.parse(chunk)
        except SyntaxError:
            continue
        return chunk
    return ""


def _function_name(code: str) -> str:
    match = re.search(r"def ([A-Za-z_]\w*)\s*\(", code)
    return match.group(1) if match else ""


def _identifier(name: str) -> str:
    name = re.sub(r"\W+", "_", name.strip().lower()).strip("_")
    return name if name and not name[0].isdigit() else ""


def _prose(text: str) -> str:
    return _FENCE.sub("", text).strip()[:2000]


def _head(text: str) -> str:
    return repr(text[:60])


_ALLOWED_BINDINGS = {"torch": "import torch", "F": "import torch.nn.functional as F", "math": "import math"}


def normalize(code: str) -> tuple[str, list[str]]:
    """Mechanical repairs that need no LLM call: add missing allowed imports, drop unused imports.

    Returns the code and a note per edit. Code that does not parse is returned unchanged.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code, []
    drop: set[int] = set()
    notes: list[str] = []
    defs = [i for i, node in enumerate(tree.body) if isinstance(node, ast.FunctionDef)]
    if len(defs) == 1:  # example usage after the one function (calls, prints, test tensors): not part of a loss
        tail = [n for n in tree.body[defs[0] + 1 :] if not isinstance(n, ast.Import | ast.ImportFrom)]
        for node in tail:
            drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if tail:
            notes.append(f"removed {len(tail)} top-level statement(s) after the function (example usage)")
            tree.body = [n for n in tree.body if n not in tail]
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [(a.asname or a.name).split(".")[0] for a in node.names]
            if not any(name in used for name in names):
                drop.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
                notes.append(f"removed unused `{ast.unparse(node)}`")
            bound.update(names)
    lines = [line for i, line in enumerate(code.splitlines(), 1) if i not in drop]
    missing = [stmt for name, stmt in _ALLOWED_BINDINGS.items() if name in used and name not in bound]
    notes += [f"added `{stmt}`" for stmt in missing]
    if not notes:
        return code, []
    return "\n".join(missing + lines).strip("\n") + "\n", notes
