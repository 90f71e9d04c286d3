"""Static rule: a tensor's value may not steer Python (rule `python-value`), and no sequence repetition.

With `float(t)`, `int(t)`, `if t:`, `while t:`, `t and u`, `not t`, `x if t else y`, `assert t`, `a < t < b`, `for v in t`,
`range(t)`, `min/max/sum(t)`, `math.f(t)`, `[a, b][t]` or a size from a tensor (`torch.arange(t)`,
`x.expand(t)`) a loss turns a tensor (its batch size, a value range)
into Python control flow: it could run a different loss, an endless loop or a huge allocation only at batch
sizes the checks never use, and the exported module would do it for its users. Tensor-level choices
(`torch.where`, `torch.minimum`, `torch.clamp`) stay allowed: the consistency checks and the training guard
see their values. `[0] * n` and `"s" * n` (sequence repetition) are refused outright: a loss needs neither.

Allowed with proof that the trip count or result depends only on the code's literals (`static_size`):
`for x in (t1, t2):` / `for x in [t1, t2]:` (iteration over a tuple/list display) and `sum([t1, t2, t3])` (tensor
addition). Anything else that iterates or reduces in Python stays refused: `for x in (t,) * n` (repeat),
`for x in [t] + more`, a name bound to a tuple, `min(t1, t2)`/`max(...)` (they take a tensor's truth value).

Which names hold tensors is found flow-insensitively: the four log-prob inputs, every `torch.`/`F.` call
result, and any name assigned (anywhere in the function) from an expression that uses one of them.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator

MODULES = ("torch", "F")
SIZE_METHODS = frozenset(("expand", "repeat", "view", "reshape", "new_zeros", "new_ones", "new_full"))
CONVERTERS = frozenset(("float", "int", "bool", "range", "min", "max", "sum", "divmod", "round"))
ADVICE = "use tensor operations (torch.where, torch.minimum, torch.clamp) instead of Python control flow on tensors"


def _module_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    current = node.func
    while isinstance(current, ast.Attribute):
        current = current.value
    return isinstance(current, ast.Name) and current.id in MODULES and current is not node.func


def _display(node: ast.AST) -> bool:
    """A tuple/list display: its length is the number of its elements (`*` unpacking is a refused node)."""
    return isinstance(node, ast.Tuple | ast.List)


def static_size(node: ast.AST) -> bool:
    """Python that handles tensors but whose trip count / result depends only on the code's literals:
    `for x in (t1, t2)` (the loop runs len(elts) times whatever the tensors hold) and `sum([t1, t2])`
    (0 + t1 + t2: tensor addition, no truth value taken)."""
    if isinstance(node, ast.For):
        return _display(node.iter)
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sum"
            and len(node.args) == 1 and not node.keywords and _display(node.args[0]))


def _uses(node: ast.AST, tensors: set[str]) -> bool:
    return any((isinstance(sub, ast.Name) and sub.id in tensors) or _module_call(sub) for sub in ast.walk(node))


def _bound_names(target: ast.AST) -> Iterator[str]:
    for sub in ast.walk(target):
        if isinstance(sub, ast.Name):
            yield sub.id


def tensor_names(func: ast.FunctionDef, params: tuple[str, ...]) -> set[str]:
    """The names that may hold a tensor (a fixpoint over every assignment in the function)."""
    tensors = {name for name in params if name != "beta"}
    while True:
        before = len(tensors)
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and _uses(node.value, tensors):
                for target in node.targets:
                    tensors.update(_bound_names(target))
            elif isinstance(node, ast.AugAssign) and (_uses(node.value, tensors) or _uses(node.target, tensors)):
                tensors.update(_bound_names(node.target))
            elif isinstance(node, ast.For) and _uses(node.iter, tensors):
                tensors.update(_bound_names(node.target))
        if len(tensors) == before:
            return tensors


def _steers(node: ast.AST, uses: Callable[[ast.AST], bool]) -> str | None:
    """What Python construct turns a tensor into control flow or a Python value at `node` (None: nothing)."""
    if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert) and uses(node.test):
        return f"`{type(node).__name__.lower().replace('ifexp', 'x if ... else y')}` on a tensor"
    if isinstance(node, ast.BoolOp) and any(uses(v) for v in node.values):
        return "`and`/`or` on a tensor"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and uses(node.operand):
        return "`not` on a tensor"
    if isinstance(node, ast.Compare) and any(isinstance(op, ast.Is | ast.IsNot | ast.In | ast.NotIn) for op in node.ops) \
            and uses(node):
        return "`is`/`in` on a tensor"
    if isinstance(node, ast.Compare) and len(node.ops) > 1 and uses(node):  # `a < t < b` is `(a < t) and (t < b)`
        return "a chained comparison of a tensor"
    if isinstance(node, ast.For) and uses(node.iter) and not static_size(node):
        return "a `for` loop over a tensor"
    arguments = node.args + [k.value for k in node.keywords] if isinstance(node, ast.Call) else []
    if isinstance(node, ast.Call) and not static_size(node) and any(uses(a) for a in arguments):
        if isinstance(node.func, ast.Name) and node.func.id in CONVERTERS:
            return f"`{node.func.id}()` of a tensor"
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) and node.func.value.id == "math":
            return f"`math.{node.func.attr}()` of a tensor (it returns a Python number)"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _sizes(node, uses):
        return f"a size taken from a tensor (`.{node.func.attr}(...)`)"
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.List | ast.Tuple | ast.Constant) \
            and uses(node.slice):
        return "indexing a Python list/tuple with a tensor"
    return None


def _sizes(node: ast.Call, uses: Callable[[ast.AST], bool]) -> bool:
    """`torch.arange(t)`, `x.expand(t)`, `x.new_zeros(t)`...: a tensor's value used as a size (an allocation
    that grows with the batch, or only at one batch size)."""
    attr, receiver = node.func.attr, node.func.value
    if isinstance(receiver, ast.Name) and receiver.id == "torch" and attr == "arange":
        return any(uses(a) for a in node.args)
    if attr in SIZE_METHODS:
        sizes = node.args[:1] if attr == "new_full" else node.args
        return any(uses(a) for a in sizes)
    return False


def _repeats(node: ast.AST) -> bool:
    def sequence(side: ast.AST) -> bool:
        return isinstance(side, ast.List | ast.Tuple) or (isinstance(side, ast.Constant)
                                                          and isinstance(side.value, str | bytes))

    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and (sequence(node.left)
                                                                              or sequence(node.right))


# beta: Python may compute with it (arithmetic, math.log, min/max), never branch, loop, size or step on it
BETA_STEPS = frozenset(("int", "round", "bool", "range", "divmod"))
MATH_STEPS = frozenset(("floor", "ceil", "isfinite", "isnan", "isinf"))


def beta_names(func: ast.FunctionDef, tensors: set[str]) -> set[str]:
    """The names holding a Python value computed from beta (not tensors: those are tensor_names)."""
    found = {"beta"}
    while True:
        before = len(found)
        for node in ast.walk(func):
            value = node.value if isinstance(node, ast.Assign | ast.AugAssign) else None
            if value is not None and _uses(value, found):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found.update(name for t in targets for name in _bound_names(t) if name not in tensors)
        if len(found) == before:
            return found


def _beta_steers(node: ast.AST, on_beta: Callable[[ast.AST], bool]) -> str | None:
    """What turns beta into a Python branch, loop, size or step at `node` (a switch at one untested beta)."""
    if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert) and on_beta(node.test):
        return "a branch on beta"
    if isinstance(node, ast.Compare | ast.BoolOp) and on_beta(node) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and on_beta(node.operand)):
        return "a comparison or truth value of beta"
    if isinstance(node, ast.For) and on_beta(node.iter):
        return "a loop over a range taken from beta"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv | ast.Mod) and on_beta(node):
        return "`//` or `%` of beta (a step function)"
    if isinstance(node, ast.Call) and any(on_beta(a) for a in node.args + [k.value for k in node.keywords]):
        func = node.func
        if isinstance(func, ast.Name) and func.id in BETA_STEPS:
            return f"`{func.id}()` of beta"
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math" \
                and func.attr in MATH_STEPS:
            return f"`math.{func.attr}()` of beta"
        if isinstance(func, ast.Attribute) and _sizes(node, on_beta):
            return f"a size taken from beta (`.{func.attr}(...)`)"
    return None


def violations(func: ast.FunctionDef, params: tuple[str, ...]) -> list[tuple[int | None, str, str]]:
    """(line, rule, message) for each place where a tensor or beta steers Python, or a sequence is repeated."""
    tensors = tensor_names(func, params)
    betas = beta_names(func, tensors)

    def uses(node: ast.AST) -> bool:
        return _uses(node, tensors)

    def on_beta(node: ast.AST) -> bool:  # beta alone: a tensor comparison (`margin > beta`) stays allowed
        return not uses(node) and any(isinstance(sub, ast.Name) and sub.id in betas for sub in ast.walk(node))

    found = []
    for node in ast.walk(func):
        line = getattr(node, "lineno", None)
        what = _steers(node, uses)
        steps = None if what else _beta_steers(node, on_beta)
        if steps:
            found.append((line, "python-value", f"line {line}: {steps} is not allowed: a loss may compute with "
                          "beta but not branch, loop, size or step on it (it could single out a beta no check "
                          "uses); write it as a smooth expression of beta"))
        if what:
            found.append((line, "python-value", f"line {line}: {what} is not allowed: a loss may not turn its "
                          f"inputs into Python values or branches (it could behave differently in training); "
                          f"{ADVICE}"))
        elif _repeats(node):
            found.append((line, "repeat", f"line {line}: repeating a list, tuple or string (`[x] * n`) is not "
                          "needed by a loss; compute with tensors"))
    return found
