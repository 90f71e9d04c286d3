"""Render the standalone module (Jinja2 template) and the JSON export of a loss."""

from __future__ import annotations

import ast
import json
import math
import pprint
import re
from pathlib import Path
from typing import Any

import jinja2

from discovery.export.metadata import class_name, fitness_line
from discovery.sandbox.static import function_name

TEMPLATES = Path(__file__).parent / "templates"


def rename_function(code: str, new: str) -> tuple[str, str]:
    """(code with the contract function renamed to `new`, the name it now has).

    Renames only the `def` line; if the code refers to the old name elsewhere, the old name is kept
    and `new` becomes an alias.
    """
    old = function_name(code)
    tree = ast.parse(code)
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == old]
    if old == new:
        return code.rstrip() + "\n", new
    if uses:
        return code.rstrip() + f"\n\n\n{new} = {old}\n", new
    renamed = re.sub(rf"^(\s*def\s+){re.escape(old)}(\s*\()", rf"\g<1>{new}\g<2>", code, count=1, flags=re.M)
    return renamed.rstrip() + "\n", new


def _docstring_safe(text: str | None, indent: str = "    ") -> str:
    if not text:
        return indent + "-"
    text = text.replace('"""', '""\\"')
    return "\n".join(indent + line for line in text.strip().splitlines())


def _float(x: float) -> str:
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INF" if x > 0 else "-INF"
    return repr(float(x))


def _floats(values: list[float]) -> str:
    return "[" + ", ".join(_float(v) for v in values) + "]"


def cases_literal(cases: list[dict[str, Any]]) -> str:
    """The self-test cases as Python source (exact float64 reprs; NAN/INF names for non-finite values)."""
    parts = []
    for case in cases:
        inputs = ",\n            ".join(_floats(v) for v in case["inputs"])
        parts.append(
            "    {\n"
            f"        \"beta\": {_float(case['beta'])},\n"
            f"        \"inputs\": [\n            {inputs},\n        ],\n"
            f"        \"loss\": {_floats(case['loss'])},\n"
            f"        \"grad_chosen\": {_floats(case['grad_chosen'])},\n"
            f"        \"grad_rejected\": {_floats(case['grad_rejected'])},\n"
            "    }")
    return "[\n" + ",\n".join(parts) + ",\n]"


def _compact(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def split_imports(code: str) -> tuple[str, str]:
    """(the module's import block, the rest of `code`): the candidate's leading imports merged with the module's
    own `import torch`, grouped and sorted as isort does (standard library, a blank line, torch), so an
    exported module passes a linter as written."""
    tree = ast.parse(code)
    lines, imports, end = code.splitlines(), {"import torch"}, 0
    for node in tree.body:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            break
        imports.add(" ".join(ast.get_source_segment(code, node).split()))
        end = node.end_lineno
    order = sorted(imports, key=lambda line: (line.startswith("from "), line.lower()))
    stdlib = [line for line in order if not line.split()[1].startswith("torch")]
    third_party = [line for line in order if line.split()[1].startswith("torch")]
    block = "\n\n".join("\n".join(group) for group in (stdlib, third_party) if group)
    return block, "\n".join(lines[end:]).strip("\n")


def render_module(meta: dict[str, Any], code: str, cases: list[dict[str, Any]], module_name: str) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    config = meta["config"]
    imports, body = split_imports(code)
    return env.get_template("loss_module.py.j2").render(
        meta=meta, imports=imports, code=body, function=meta["function"], trainer_class=class_name(meta["function"]),
        module_name=module_name, thought=_docstring_safe(meta["thought"]),
        plain=_docstring_safe(meta["formula"]["plain"], "").strip(),
        latex=_docstring_safe(meta["formula"]["latex"], "").strip(),
        fitness=fitness_line(meta["fitness"]),
        task_config=_compact(config.get("task", {})), train_config=_compact(config.get("train", {})),
        eval_config=_compact(config.get("eval", {})),
        run_versions=_compact(meta["versions"]["run"]), export_versions=_compact(meta["versions"]["export"]),
        trl_version=meta["versions"]["run"].get("trl") or meta["versions"]["export"].get("trl"),
        metadata_literal=pprint.pformat(meta, width=110, sort_dicts=True),
        cases_literal=cases_literal(cases),
    )


def render_json(meta: dict[str, Any], code: str, cases: list[dict[str, Any]]) -> str:
    from discovery.inspect.views import jsonable

    doc = {**meta, "code": code,
           "selftest": {**meta.get("selftest", {}), "dtype": "float64", "cases": jsonable(cases)}}
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n"
