"""Layer 1: the static policy. Parse the candidate and accept only what a pure elementwise loss needs.

An allowlist of AST node types (anything else is refused with its line), real scope analysis with
`symtable` (one function scope, no nested scopes, so a name bound anywhere cannot hide a builtin),
no rebinding of the module names or builtins, and no introspection of the inputs (shape, dtype,
device, grad state): a loss sees the four tensors and beta only as values.
"""

from __future__ import annotations

import ast
import symtable
from dataclasses import asdict, dataclass

from discovery import contract
from discovery.sandbox import policy, values

MODULE_ALIASES = {alias: module for module, aliases in contract.ALLOWED_IMPORTS.items() for alias in aliases}
ADVICE = "use elementwise torch/F/math functions"


@dataclass(frozen=True)
class Violation:
    line: int | None
    rule: str
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return asdict(self)


ALLOWED_NODES = (
    ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Import, ast.ImportFrom, ast.alias,
    ast.Expr, ast.Assign, ast.AugAssign, ast.Return, ast.If, ast.For, ast.While, ast.Break, ast.Continue,
    ast.Pass, ast.Assert, ast.Raise,
    ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Compare, ast.Call, ast.keyword, ast.Constant,
    ast.Attribute, ast.Subscript, ast.Slice, ast.Name, ast.Tuple, ast.List, ast.Load, ast.Store,
    ast.And, ast.Or, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.MatMult,
    ast.BitAnd, ast.BitOr, ast.BitXor, ast.USub, ast.UAdd, ast.Not, ast.Invert, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.Is, ast.IsNot, ast.In, ast.NotIn,
)
# Refusals with a specific message; every other node type outside ALLOWED_NODES gets a generic one.
NODE_MESSAGES = {
    "ClassDef": ("class", "class definitions are not allowed; write one plain function"),
    "FunctionDef": ("nested", "nested functions are not allowed; write one plain function"),
    "Lambda": ("lambda", "`lambda` is not allowed; write the expression inline"),
    "AsyncFunctionDef": ("async", "async functions are not allowed"),
    "Await": ("async", "`await` is not allowed"), "AsyncFor": ("async", "`async for` is not allowed"),
    "AsyncWith": ("async", "`async with` is not allowed"),
    "Global": ("global", "`global` is not allowed; keep all state local"),
    "Nonlocal": ("global", "`nonlocal` is not allowed; keep all state local"),
    "With": ("with", "`with` blocks are not allowed (no context managers, no torch.no_grad)"),
    "Try": ("try", "`try` is not allowed; write code that cannot fail"),
    "TryStar": ("try", "`try` is not allowed; write code that cannot fail"),
    "Delete": ("del", "`del` is not allowed"), "Del": ("del", "`del` is not allowed"),
    "Yield": ("yield", "`yield` is not allowed; return a tensor"),
    "YieldFrom": ("yield", "`yield from` is not allowed; return a tensor"),
    "JoinedStr": ("format", "f-strings are not needed by a loss; remove them"),
    "FormattedValue": ("format", "f-strings are not needed by a loss; remove them"),
    "Match": ("match", "`match` statements are not allowed; use torch.where"),
    "NamedExpr": ("walrus", "`:=` is not allowed; assign on its own line"),
    "ListComp": ("comprehension", "comprehensions are not allowed; use vectorised tensor operations"),
    "SetComp": ("comprehension", "comprehensions are not allowed; use vectorised tensor operations"),
    "DictComp": ("comprehension", "comprehensions are not allowed; use vectorised tensor operations"),
    "GeneratorExp": ("comprehension", "generator expressions are not allowed; use vectorised tensor operations"),
    "Starred": ("starred", "`*` unpacking is not allowed"),
    "AnnAssign": ("annotation", "type annotations are not allowed; remove them"),
}


class _Checker(ast.NodeVisitor):
    def __init__(self, local_names: set[str]):
        self.locals = local_names
        self.violations: list[Violation] = []

    def flag(self, node: ast.AST | None, rule: str, text: str) -> None:
        line = getattr(node, "lineno", None)
        prefix = f"line {line}: " if line else ""
        self.violations.append(Violation(line, rule, prefix + text))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_import(node, alias.name, alias.asname or alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self._check_import(node, f"{node.module}.{alias.name}", alias.asname or alias.name)

    def _check_import(self, node: ast.AST, module: str, bound: str) -> None:
        allowed = contract.ALLOWED_IMPORTS.get(module)
        if allowed is None:
            self.flag(node, "import", f"importing `{module}` is not allowed; only `import torch`, "
                      "`import torch.nn.functional as F` and `import math`")
        elif bound not in allowed:
            self.flag(node, "import", f"import `{module}` as {allowed[0]} (found `{bound}`)")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.flag(node, "decorator", "decorators are not allowed")
        args = node.args
        if node.returns is not None or any(a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs):
            self.flag(node, "annotation", "type annotations are not allowed; remove them")
        for stmt in node.body:
            self.visit(stmt)

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("_"):
            self.flag(node, "underscore", f"names starting with `_` are not allowed (`{name}`)")
        elif isinstance(node.ctx, ast.Store) and name in MODULE_ALIASES:
            self.flag(node, "shadow", f"do not assign to the module name `{name}`")
        elif isinstance(node.ctx, ast.Store) and (name in policy.SAFE_BUILTINS or name in policy.DANGEROUS_NAMES):
            self.flag(node, "shadow", f"do not rebind the builtin name `{name}`; choose another name")
        elif name in MODULE_ALIASES:
            self.flag(node, "module", f"use `{name}.<function>(...)` directly; `{name}` may not be used as a value")
        elif isinstance(node.ctx, ast.Load) and name not in self.locals and name not in policy.SAFE_BUILTINS:
            if name in policy.INTROSPECTION_BUILTINS:
                self.flag(node, "introspection", f"`{name}` is not allowed: {policy.INTROSPECTION_ADVICE}")
            elif name in policy.DANGEROUS_NAMES:
                self.flag(node, "builtin", f"`{name}` is not allowed; a loss only computes with its inputs")
            else:
                self.flag(node, "name", f"unknown name `{name}`; define it inside the function "
                          f"(allowed builtins: {', '.join(sorted(policy.SAFE_BUILTINS - {'True', 'False', 'None'}))})")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.flag(node, "underscore", f"attributes starting with `_` are not allowed (`.{node.attr}`)")
            return
        if not isinstance(node.ctx, ast.Load):
            self.flag(node, "attribute", f"assigning to attributes (`.{node.attr} = ...`) is not allowed")
            return
        chain, root = _dotted(node)
        if root is not None and root.id in MODULE_ALIASES:
            allowed = policy.MODULE_FUNCTIONS[root.id]
            if ".".join(chain) not in allowed:
                self.flag(node, "module-attribute", f"`{root.id}.{'.'.join(chain)}` is not allowed; {ADVICE}")
            return
        if node.attr in policy.INTROSPECTION:
            self.flag(node, "introspection", f"`.{node.attr}` is not allowed: {policy.INTROSPECTION_ADVICE}")
        elif node.attr not in policy.TENSOR_METHODS:
            hint = " (in-place edits are not allowed)" if node.attr.endswith("_") else ""
            self.flag(node, "method", f"`.{node.attr}` is not allowed{hint}; {ADVICE}")
        self.visit(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg is None:
                self.flag(node, "call", "`**kwargs` in calls is not allowed")
            elif keyword.arg in policy.FORBIDDEN_KEYWORDS:
                self.flag(node, "inplace", f"the `{keyword.arg}=` argument is not allowed (no in-place writes)")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            self.flag(node, "format", "string formatting is not needed by a loss; remove it")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, bytes):
            self.flag(node, "constant", "bytes literals are not needed by a loss")


def _dotted(node: ast.Attribute) -> tuple[list[str], ast.Name | None]:
    """`torch.special.expit` -> (['special', 'expit'], Name('torch')); root None when not a plain chain."""
    parts = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    return list(reversed(parts)), current if isinstance(current, ast.Name) else None


def _node_violations(tree: ast.Module, func: ast.FunctionDef | None) -> list[Violation]:
    """Every AST node outside the allowlist (a nested `def` counts: only the one top-level function)."""
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ALLOWED_NODES) and not (isinstance(node, ast.FunctionDef) and node is not func
                                                    and func is not None):
            continue
        if isinstance(node, ast.FunctionDef) and func is None:
            continue  # the layout check already reports the function count
        kind = type(node).__name__
        rule, text = NODE_MESSAGES.get(kind, ("syntax-node", f"`{kind}` is not allowed in a loss"))
        line = getattr(node, "lineno", None)
        problems.append(Violation(line, rule, (f"line {line}: " if line else "") + text))
    return problems


def _scope_violations(code: str, func: ast.FunctionDef) -> tuple[set[str], list[Violation]]:
    """Local names of the function by real scope analysis; refuses nested scopes and module-name rebinding."""
    try:
        module = symtable.symtable(code, "<candidate>", "exec")
    except SyntaxError as exc:
        return set(), [Violation(exc.lineno, "syntax", f"line {exc.lineno}: syntax error: {exc.msg}")]
    problems = []
    for sym in module.get_symbols():
        name = sym.get_name()
        if sym.is_assigned() and not sym.is_imported() and name != func.name:
            problems.append(Violation(None, "top-level", f"`{name}` is bound at the top level; only imports and "
                                      "one function may appear there"))
    tables = [t for t in module.get_children() if t.get_name() == func.name and t.get_type() == "function"]
    if len(tables) != 1 or len(module.get_children()) != 1:
        problems.append(Violation(None, "nested", "only one function scope is allowed (no classes, lambdas, "
                                  "comprehensions or nested functions)"))
        return set(), problems
    table = tables[0]
    if table.get_children():
        problems.append(Violation(func.lineno, "nested", f"line {func.lineno}: the function may not contain "
                                  "nested scopes (functions, lambdas, classes, comprehensions)"))
    local_names = set()
    for sym in table.get_symbols():
        name = sym.get_name()
        if sym.is_declared_global() or sym.is_nonlocal():
            problems.append(Violation(None, "global", f"`{name}` is declared global/nonlocal; keep all state local"))
        if sym.is_local():
            local_names.add(name)
            if name in MODULE_ALIASES and not sym.is_imported():
                problems.append(Violation(None, "shadow", f"`{name}` is rebound inside the function; "
                                          "the module names torch, F and math may not be reused"))
    return local_names, problems


def _check_layout(tree: ast.Module) -> tuple[ast.FunctionDef | None, list[Violation]]:
    problems: list[Violation] = []
    funcs = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        if not isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef) and not is_doc:
            line = getattr(node, "lineno", None)
            problems.append(Violation(line, "top-level", f"line {line}: only imports and one function may appear "
                                      "at the top level; move constants inside the function"))
    if len(funcs) != 1:
        problems.append(Violation(None, "function", f"define exactly one top-level function, found {len(funcs)}: "
                                  f"{contract.SIGNATURE}"))
        return None, problems
    func = funcs[0]
    args = func.args
    names = tuple(a.arg for a in args.posonlyargs + args.args)
    if (names != contract.PARAMS or args.posonlyargs or args.vararg or args.kwarg or args.kwonlyargs
            or args.defaults or args.kw_defaults):
        problems.append(Violation(func.lineno, "signature", f"line {func.lineno}: the signature must be exactly "
                                  f"`{contract.SIGNATURE.replace('NAME', func.name)}` (found ({', '.join(names)}))"))
    if func.name in MODULE_ALIASES or func.name in policy.SAFE_BUILTINS or func.name in policy.DANGEROUS_NAMES:
        problems.append(Violation(func.lineno, "shadow", f"line {func.lineno}: the function may not be named "
                                  f"`{func.name}`; choose another name"))
    return func, problems


def parse(code: str) -> tuple[ast.Module | None, list[Violation]]:
    if not isinstance(code, str) or not code.strip():
        return None, [Violation(None, "empty", "the candidate is empty; write one loss function")]
    size = len(code.encode())
    lines = code.count("\n") + 1
    if size > contract.MAX_BYTES or lines > contract.MAX_LINES:
        return None, [Violation(None, "size", f"the code is {lines} lines / {size} bytes; the limit is "
                                f"{contract.MAX_LINES} lines and {contract.MAX_BYTES} bytes")]
    try:
        return ast.parse(code), []
    except SyntaxError as exc:
        return None, [Violation(exc.lineno, "syntax", f"line {exc.lineno}: syntax error: {exc.msg}")]
    except (RecursionError, MemoryError, ValueError):
        return None, [Violation(None, "syntax", "the code is nested too deeply to parse; simplify it")]


def check_source(code: str) -> list[Violation]:
    """All policy violations of `code` (empty list = the code may be run in the sandbox)."""
    tree, problems = parse(code)
    if tree is None:
        return problems
    try:
        func, problems = _check_layout(tree)
        problems += _node_violations(tree, func)
        local_names, scope = _scope_violations(code, func) if func else (set(), [])
        checker = _Checker(local_names)
        for node in tree.body:
            checker.visit(node)
        if func is not None:  # a tensor's value may not steer Python (see values.py)
            problems += [Violation(*found) for found in values.violations(func, contract.PARAMS)]
    except RecursionError:
        return problems + [Violation(None, "syntax", "the code is nested too deeply; simplify it")]
    seen, unique = set(), []
    for item in problems + checker.violations + scope:
        if item.message not in seen:
            seen.add(item.message)
            unique.append(item)
    return unique


HINTS = {"inplace": "write", "alias": "return", "speed": "loop", "timeout": "loop",
         "size": None}


def hint_line(code: str, check: str) -> int | None:
    """The line a dynamic failure most likely comes from: first in-place write, loop or `return`."""
    kind = HINTS.get(check)
    tree, _ = parse(code) if kind else (None, None)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if kind == "write" and (isinstance(node, ast.AugAssign) or (
                isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store))):
            return node.lineno
        if kind == "loop" and isinstance(node, ast.For | ast.While):
            return node.lineno
        if kind == "return" and isinstance(node, ast.Return):
            return node.lineno
    return None


def function_name(code: str) -> str | None:
    tree, _ = parse(code)
    funcs = [n for n in (tree.body if tree else []) if isinstance(n, ast.FunctionDef)]
    return funcs[0].name if len(funcs) == 1 else None
