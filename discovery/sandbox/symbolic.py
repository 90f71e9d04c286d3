"""A sympy form of a candidate where its code reduces to one elementwise expression (never executes the code)."""

from __future__ import annotations

import ast

import sympy as sp

from discovery import contract
from discovery.sandbox.static import parse

PC, PR, RC, RR, BETA = sp.symbols("pi_w pi_l ref_w ref_l beta", real=True)
RHO, R_W, R_L = sp.symbols("rho r_w r_l", real=True)
PARAM_SYMBOLS = dict(zip(contract.PARAMS, (PC, PR, RC, RR, BETA), strict=True))


class Untranslatable(Exception):
    pass


def _sigmoid(x):
    return 1 / (1 + sp.exp(-x))


def _relu(x):
    return sp.Max(0, x)


def _clamp(x, lo=None, hi=None):
    if lo is not None:
        x = sp.Max(x, lo)
    if hi is not None:
        x = sp.Min(x, hi)
    return x


UNARY = {
    "exp": sp.exp, "log": sp.log, "log1p": lambda x: sp.log(1 + x), "expm1": lambda x: sp.exp(x) - 1,
    "sigmoid": _sigmoid, "expit": _sigmoid, "logsigmoid": lambda x: -sp.log(1 + sp.exp(-x)),
    "softplus": lambda x: sp.log(1 + sp.exp(x)), "tanh": sp.tanh, "relu": _relu, "abs": sp.Abs,
    "fabs": sp.Abs, "sqrt": sp.sqrt, "square": lambda x: x**2, "neg": lambda x: -x, "sign": sp.sign,
    "sin": sp.sin, "cos": sp.cos, "atan": sp.atan, "erf": sp.erf, "log2": lambda x: sp.log(x, 2),
    "log10": lambda x: sp.log(x, 10), "reciprocal": lambda x: 1 / x, "sinh": sp.sinh, "cosh": sp.cosh,
    "float": lambda x: x, "double": lambda x: x, "clone": lambda x: x, "detach": lambda x: x,
}
BINARY = {"maximum": sp.Max, "minimum": sp.Min, "pow": lambda a, b: a**b, "logaddexp":
          lambda a, b: sp.log(sp.exp(a) + sp.exp(b)), "add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}
CONSTANTS = {"pi": sp.pi, "e": sp.E}
OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
       ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b}
CLAMP_KEYWORDS = frozenset(("min", "max"))
COMPARE = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}


class _Translator:
    def __init__(self):
        self.env = dict(PARAM_SYMBOLS)

    def run(self, func: ast.FunctionDef):
        for stmt in func.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                self.env[stmt.targets[0].id] = self.expr(stmt.value)
            elif isinstance(stmt, ast.Return) and stmt.value is not None:
                return self.expr(stmt.value)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                continue
            else:
                raise Untranslatable(f"line {stmt.lineno}: {type(stmt).__name__} statements have no formula")
        raise Untranslatable("no return statement")

    def expr(self, node: ast.AST):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return sp.nsimplify(node.value, rational=True) if isinstance(node.value, float) else sp.Integer(node.value)
        if isinstance(node, ast.Name) and node.id in self.env:
            return self.env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.expr(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARE:
            return COMPARE[type(node.ops[0])](self.expr(node.left), self.expr(node.comparators[0]))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr in CONSTANTS:
            return CONSTANTS[node.attr]
        if isinstance(node, ast.Call):
            return self.call(node)
        raise Untranslatable(f"line {getattr(node, 'lineno', '?')}: `{ast.unparse(node)}` has no formula")

    def call(self, node: ast.Call):
        func = node.func
        if not isinstance(func, ast.Attribute):
            raise Untranslatable(f"line {node.lineno}: `{ast.unparse(func)}` has no formula")
        name = func.attr
        is_module = isinstance(func.value, ast.Name) and func.value.id in ("torch", "F", "math") or (
            isinstance(func.value, ast.Attribute))
        args = [self.expr(a) for a in node.args] if is_module else [self.expr(func.value)] + [
            self.expr(a) for a in node.args]
        understood = CLAMP_KEYWORDS if name in ("clamp", "clip", "clamp_min", "clamp_max") else frozenset()
        unknown = [k.arg or "**" for k in node.keywords if k.arg not in understood]
        if unknown:  # e.g. F.softplus(x, beta=2): ignoring it would show another loss's formula
            raise Untranslatable(f"line {node.lineno}: `{name}` with keyword {', '.join(unknown)} has no formula")
        kwargs = {k.arg: self.expr(k.value) for k in node.keywords}
        if name in ("to", "type_as"):
            return self._to_number(args[0])
        if name in UNARY and len(args) == 1:
            return UNARY[name](args[0])
        if name in BINARY and len(args) == 2:
            return BINARY[name](*args)
        if name in ("clamp", "clip", "clamp_min", "clamp_max"):
            lo = kwargs.get("min", args[1] if len(args) > 1 and name != "clamp_max" else None)
            hi = kwargs.get("max", args[2] if len(args) > 2 else (args[1] if name == "clamp_max" else None))
            return _clamp(args[0], lo, hi)
        if name == "where" and len(args) == 3:
            return sp.Piecewise((args[1], args[0]), (args[2], True))
        raise Untranslatable(f"line {node.lineno}: `{name}` has no elementwise formula (batch statistics?)")

    @staticmethod
    def _to_number(value):
        if isinstance(value, sp.core.relational.Relational):
            return sp.Piecewise((1, value), (0, True))
        return value


def _readable(expr):
    """Rewrite in the margin rho (or the log-ratios r_w, r_l) when the loss depends only on those.

    xreplace: the inputs are plain symbols, so a structural replacement (rebuilt and evaluated) gives what
    subs gives here for every library loss at a third less time (no pattern matching, no assumptions)."""
    in_rho = expr.xreplace({PC: RHO + RC + PR - RR})
    if in_rho.free_symbols <= {RHO, BETA}:
        return in_rho
    in_ratios = expr.xreplace({PC: R_W + RC, PR: R_L + RR})
    if in_ratios.free_symbols <= {R_W, R_L, BETA}:
        return in_ratios
    return expr


def to_sympy(code: str) -> tuple[str | None, str | None, str]:
    """(canonical string, LaTeX, note); the first two are None when the code has no single formula."""
    tree, problems = parse(code)
    funcs = [n for n in (tree.body if tree else []) if isinstance(n, ast.FunctionDef)]
    if problems or len(funcs) != 1:
        return None, None, "no formula: the code does not parse to one function"
    try:
        expr = _readable(_Translator().run(funcs[0]))
    except Untranslatable as exc:
        return None, None, f"no formula: {exc}"
    except (TypeError, ValueError, AttributeError, RecursionError, ZeroDivisionError) as exc:
        return None, None, f"no formula: sympy could not build it ({type(exc).__name__})"
    return sp.sstr(expr), sp.latex(expr), "ok"
