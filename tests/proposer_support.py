"""Validators for proposer tests: the sandbox's `validate` when it exists, else a small stand-in.

The stand-in checks what the contract says (syntax, one function, the exact signature, allowed imports)
and, with `run=True`, calls the function on probe tensors in a separate Python process.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field

from discovery import contract

_PROBE = r"""
import json, sys, torch
ns = {}
exec(compile(sys.stdin.read(), "<candidate>", "exec"), ns)
fn = [v for k, v in ns.items() if callable(v) and getattr(v, "__module__", None) is None and k != "torch"][-1]
g = torch.Generator().manual_seed(0)
pc = (-torch.rand(8, generator=g) * 10).requires_grad_(); pr = (-torch.rand(8, generator=g) * 10).requires_grad_()
rc = -torch.rand(8, generator=g) * 10; rr = -torch.rand(8, generator=g) * 10
out = fn(pc, pr, rc, rr, 0.1)
ok = isinstance(out, torch.Tensor) and out.shape == (8,) and bool(torch.isfinite(out).all())
if ok:
    out.mean().backward()
print(json.dumps({"ok": ok, "shape": list(out.shape) if isinstance(out, torch.Tensor) else str(type(out)),
                  "values": [round(float(v), 5) for v in out.detach().flatten()[:8]] if ok else []}))
"""


@dataclass
class CheckError:
    check: str
    message: str
    line: int | None = None


@dataclass
class LocalReport:
    valid: bool
    errors: list[CheckError] = field(default_factory=list)
    fingerprint: str | None = None
    diagnostics: dict = field(default_factory=dict)
    sympy: str | None = None
    latex: str | None = None

    def summary(self) -> str:
        return "valid" if self.valid else "; ".join(e.message for e in self.errors)


def static_errors(code: str) -> list[CheckError]:
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [CheckError("syntax", f"line {exc.lineno}: syntax error: {exc.msg}", exc.lineno)]
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(funcs) != 1:
        return [CheckError("contract", f"define exactly one function, found {len(funcs)}")]
    args = tuple(a.arg for a in funcs[0].args.args)
    if args != contract.PARAMS:
        return [CheckError("signature", f"line {funcs[0].lineno}: the function must take ({', '.join(contract.PARAMS)}),"
                                        f" not ({', '.join(args)})", funcs[0].lineno)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [m for m in mods if m not in contract.ALLOWED_IMPORTS]
            if bad:
                return [CheckError("imports", f"line {node.lineno}: import of {bad[0]} is not allowed", node.lineno)]
    return []


def local_validate(code: str, run: bool = False) -> LocalReport:
    errors = static_errors(code)
    if errors:
        return LocalReport(False, errors)
    if not run:
        return LocalReport(True, fingerprint=hashlib.sha256(code.encode()).hexdigest()[:16])
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], input=code, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return LocalReport(False, [CheckError("runtime", "the function did not return within 60 s")])
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["crashed"])[-1]
        return LocalReport(False, [CheckError("runtime", f"calling the function failed: {last}")])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        return LocalReport(False, [CheckError("runtime", f"must return a finite tensor of shape (B,), "
                                                         f"got {result['shape']}")])
    return LocalReport(True, fingerprint=hashlib.sha256(json.dumps(result["values"]).encode()).hexdigest()[:16])


def best_validator(run: bool = True):
    """The real sandbox validator when it is installed, else the stand-in."""
    try:
        from discovery.sandbox import validate
    except ImportError:
        return lambda code: local_validate(code, run=run)
    return validate
