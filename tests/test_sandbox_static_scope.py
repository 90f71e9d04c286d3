"""Static policy, second round: scope tricks, `match`, shadowing and introspection are refused."""

from __future__ import annotations

import pytest
from hostile.candidates import SIG, make

from discovery.sandbox.static import check_source

REPRODUCER = SIG + """    def never_called():
        eval = None
    if policy_chosen_logps.shape[0] == 8:
        eval("__import__('os').system('id > PWNED')")
    return policy_chosen_logps - policy_rejected_logps
"""

# name -> (body or full code, a rule that must be among the violations)
CASES = {
    "reproducer": (REPRODUCER, "nested"),
    "reproducer_eval": (REPRODUCER, "builtin"),
    "comprehension_hides_open": (make("    xs = [open for open in range(2)]\n    open('/tmp/x', 'w')\n"
                                      "    return -margin\n"), "comprehension"),
    "generator_hides_getattr": (make("    s = sum(1 for getattr in range(2))\n    g = getattr(torch, 'load')\n"
                                     "    return -margin\n"), "builtin"),
    "lambda_default": (make("    f = lambda eval=None: eval\n    return -margin\n"), "lambda"),
    "nested_class": (make("    class T:\n        pass\n    return -margin\n"), "class"),
    "nested_def_torch": (make("    def torch(x):\n        return x\n    return -margin\n"), "nested"),
    "match_class_pattern": (make("    match beta:\n        case float(__reduce_ex__=r):\n            pass\n"
                                 "    return -margin\n"), "match"),
    "match_capture_torch": (make("    match margin:\n        case torch:\n            pass\n    return -margin\n"),
                            "match"),
    "match_mapping_builtins": (make("    match {}:\n        case {**rest}:\n            pass\n    return -margin\n"),
                               "match"),
    "assign_torch": (make("    torch = margin\n    return -margin\n"), "shadow"),
    "assign_F_tuple": (make("    F, x = margin, margin\n    return -margin\n"), "shadow"),
    "for_target_math": (make("    for math in range(2):\n        pass\n    return -margin\n"), "shadow"),
    "walrus_torch": (make("    y = (torch := margin)\n    return -margin\n"), "walrus"),
    "import_as_torch": (make("    import math as torch\n    return -margin\n"), "import"),
    "import_as_F": (make("    return -margin\n", "import torch as F\n"), "import"),
    "with_as": (make("    with open('x') as torch:\n        pass\n    return -margin\n"), "with"),
    "except_as": (make("    try:\n        pass\n    except Exception as F:\n        pass\n    return -margin\n"), "try"),
    "global_torch": (make("    global torch\n    torch = 1\n    return -margin\n"), "global"),
    "nonlocal": (make("    nonlocal margin\n    return -margin\n"), "syntax"),
    "shadow_builtin": (make("    abs = margin\n    return abs\n"), "shadow"),
    "shadow_eval": (make("    eval = margin\n    return eval\n"), "shadow"),
    "function_named_torch": (make("    return -margin\n").replace("def loss(", "def torch("), "shadow"),
    "top_level_assign": ("import torch\nx = 1\n\n\n" + SIG + "    return -policy_chosen_logps\n", "top-level"),
    "starred": (make("    a, *b = margin, margin\n    return -margin\n"), "starred"),
    "dict_literal": (make("    d = {'a': margin}\n    return -margin\n"), "syntax-node"),
    "set_literal": (make("    d = {margin}\n    return -margin\n"), "syntax-node"),
    "posonly": (make("    return -margin\n").replace("beta):", "beta, /):"), "signature"),
    "kwonly_default": (make("    return -margin\n").replace("beta):", "beta, *, eval=1):"), "signature"),
    "annotation": (make("    x: int = 1\n    return -margin\n"), "annotation"),
}
INTROSPECTION = [
    "policy_chosen_logps.shape[0] == 8", "policy_chosen_logps.size(0)", "policy_chosen_logps.numel()",
    "policy_chosen_logps.requires_grad", "len(policy_chosen_logps)", "policy_chosen_logps.device",
    "policy_chosen_logps.dtype", "policy_chosen_logps.grad_fn", "margin.mean().item()", "margin.tolist()",
    "policy_chosen_logps.is_leaf", "policy_chosen_logps.data", "policy_chosen_logps.grad",
    "policy_chosen_logps.ndim", "policy_chosen_logps.dim()", "torch.is_grad_enabled()",
    "isinstance(margin, float)", "torch.finfo(margin.dtype).eps", "margin.nelement()", "margin.stride()",
    "enumerate(margin)", "torch.numel(margin)", "torch.is_tensor(margin)", "margin.is_floating_point()",
]


@pytest.mark.parametrize("name", sorted(CASES))
def test_scope_and_shadowing_tricks_are_refused(name):
    code, rule = CASES[name]
    violations = check_source(code if code.startswith(("import", "def")) else make(code))
    assert any(v.rule == rule for v in violations), (name, violations)
    for v in violations:
        if v.line is not None:
            assert v.message.startswith(f"line {v.line}: ")


@pytest.mark.parametrize("expr", INTROSPECTION)
def test_introspection_is_refused(expr):
    violations = check_source(make(f"    flag = {expr}\n    return -F.logsigmoid(beta * margin)\n"))
    assert violations, expr
    assert {v.rule for v in violations} & {"introspection", "module-attribute"}, violations
    assert all(v.line == 7 for v in violations if v.line is not None)


def test_locals_are_not_confused_with_builtins_across_statements():
    # `xs` is a plain local; reading it is fine, reading an unbound builtin-like name is not
    ok = make("    xs = margin * 2\n    for k in (1, 2):\n        xs = xs + k\n    return -F.logsigmoid(beta * xs)\n")
    assert check_source(ok) == []
    assert any(v.rule == "builtin" for v in check_source(make("    return vars\n")))


def test_plain_loops_and_conditionals_still_pass():
    code = make("    out = margin * 0\n    for k in range(3):\n        out = out + torch.sigmoid(beta * margin / (k + 1))\n"
                "    return torch.where(margin > 0, out, -F.logsigmoid(beta * margin))\n")
    assert check_source(code) == []


def test_symbolic_proposer_output_passes():
    """Fresh mixes and crossovers of every library loss (the proposer's output) still pass the policy."""
    import random

    from discovery import library
    from discovery.proposer import symbolic

    prop = symbolic.SymbolicProposer.__new__(symbolic.SymbolicProposer)
    rng = random.Random(0)
    parents = library.names()
    for _ in range(30):
        body, result, imports, _ = prop.fresh(rng)
        code = symbolic.assemble("cand", body, result, imports)
        assert check_source(code) == [], code
    for name in library.names():
        try:
            body, imports = symbolic.inline(library.get(name).code, "a_")
        except symbolic.NotInlinable:
            continue
        b, _ = prop._base(rng)
        result, _ = prop._combine(rng, "a_out", b)
        code = symbolic.assemble("cand", body, result, imports)
        assert check_source(code) == [], (name, code)
    assert parents
