"""Compile a candidate loss with restricted builtins. Only ever called inside an isolated child."""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable

from discovery import contract
from discovery.sandbox import policy
from discovery.sandbox.static import Violation, check_source, function_name

FILENAME = "<candidate>"


class PolicyError(ValueError):
    """The code breaks the static policy; `violations` says where and why."""

    def __init__(self, violations: list[Violation]):
        super().__init__("; ".join(v.message for v in violations))
        self.violations = violations


def _restricted_import(name, globals=None, locals=None, fromlist=(), level=0):
    wanted = [name] if not fromlist else [f"{name}.{item}" for item in fromlist]
    if level != 0 or not all(w in contract.ALLOWED_IMPORTS or w in ("torch.nn", "torch") for w in wanted) or (
            fromlist and name not in contract.ALLOWED_IMPORTS and name != "torch.nn"):
        raise ImportError(f"importing `{name}` is not allowed")
    return importlib.__import__(name, globals, locals, fromlist, level)


def safe_builtins() -> dict:
    table = {name: getattr(builtins, name) for name in policy.SAFE_BUILTINS if hasattr(builtins, name)}
    table["__import__"] = _restricted_import
    return table


def load_loss(code: str) -> Callable:
    """The contract function defined by `code`, executed with restricted builtins after the static check."""
    violations = check_source(code)
    if violations:
        raise PolicyError(violations)
    namespace = {"__builtins__": safe_builtins(), "__name__": "candidate"}
    exec(compile(code, FILENAME, "exec"), namespace)  # noqa: S102 - policy-checked, inside the sandbox child
    return namespace[function_name(code)]
