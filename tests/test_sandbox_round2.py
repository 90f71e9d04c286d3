"""Static policy, the red team's second round: other ways to tell checking from training, to keep state across
calls, to reach attributes or files, and Python control flow steered by a tensor (rule `python-value`).

Each case is a hostile candidate and the rule that must be among its refusals; `ALLOWED` are tensor-level
forms the policy must keep accepting (the dynamic checks judge those by their values).
"""

from __future__ import annotations

import pytest
from hostile.candidates import make

from discovery import library
from discovery.sandbox.static import check_source

DPO = "    return -F.logsigmoid(beta * margin)\n"
ANTI = "        return -F.logsigmoid(-beta * margin)\n"
COUNT = "    n = torch.ones_like(margin).sum()\n"


def with_sig(extra: str, body: str) -> str:
    return make(body).replace("beta):\n", f"beta{extra}):\n", 1)


def module_level(pre: str, body: str) -> str:
    return make(body).replace("\n\ndef loss", f"\n{pre}\n\ndef loss", 1)


CASES = {
    # state across calls: a counter that flips the loss after the checks' few dozen calls
    "counter_in_default_list": (with_sig(", calls=[0]", "    calls[0] += 1\n" + DPO), "signature"),
    "counter_in_default_tensor": (with_sig(", state=torch.zeros(1)", "    state += 1\n" + DPO), "signature"),
    "keyword_only_flag": (with_sig(", *, training=True", DPO), "signature"),
    "module_level_list": (module_level("STATE = [0]", "    STATE[0] = STATE[0] + 1\n" + DPO), "top-level"),
    "module_level_tensor": (module_level("S = torch.zeros(1)", "    S += 1\n" + DPO), "top-level"),
    "module_level_call": (module_level("torch.manual_seed(0)", DPO), "top-level"),
    "attribute_on_torch": (make("    torch.calls = 1\n" + DPO), "attribute"),
    "attribute_on_tensor": (make("    margin.seen = 1\n" + DPO), "attribute"),
    # grad mode, RNG, storage: the introspection that would tell a check from a training step
    "is_grad_enabled": (make("    g = torch.is_grad_enabled()\n" + DPO), "module-attribute"),
    "rng_state": (make("    s = torch.get_rng_state()\n" + DPO), "module-attribute"),
    "rand_like": (make("    return torch.rand_like(margin) * margin\n"), "module-attribute"),
    "is_contiguous": (make("    c = margin.is_contiguous()\n" + DPO), "introspection"),
    "stride": (make("    c = margin.stride()\n" + DPO), "introspection"),
    "data_ptr": (make("    c = margin.data_ptr()\n" + DPO), "introspection"),
    "id_of_tensor": (make("    c = id(margin)\n" + DPO), "introspection"),
    "memory_format": (make("    c = torch.contiguous_format\n" + DPO), "module-attribute"),
    # attribute access and formatting
    "format_dunder": (make("    s = '{0.__class__}'.format(margin)\n" + DPO), "method"),
    "percent_format": (make("    s = '%s' % margin\n" + DPO), "format"),
    "str_of_tensor": (make("    s = str(margin)\n" + DPO), "builtin"),
    "operator_module": (make(DPO, "import torch\nimport torch.nn.functional as F\nimport operator\n"), "import"),
    "functools_module": (make(DPO, "import torch\nimport torch.nn.functional as F\nimport functools\n"), "import"),
    "from_torch_import_ops": (make(DPO, "import torch\nimport torch.nn.functional as F\nfrom torch import ops\n"),
                              "import"),
    # torch entry points to code, files and native state
    "torch_ops": (make("    return torch.ops.aten.neg(margin)\n"), "module-attribute"),
    "torch_library": (make("    lib = torch.library.Library('x', 'DEF')\n" + DPO), "module-attribute"),
    "torch_compile": (make("    f = torch.compile(F.logsigmoid)\n" + DPO), "module-attribute"),
    "torch_utils": (make("    d = torch.utils.data\n" + DPO), "module-attribute"),
    "torch_hub": (make("    m = torch.hub.load('a', 'b')\n" + DPO), "module-attribute"),
    "torch_load": (make("    m = torch.load('x.pt')\n" + DPO), "module-attribute"),
    "torch_save": (make("    torch.save(margin, 'x.pt')\n" + DPO), "module-attribute"),
    "tensor_to_file": (make("    margin.numpy().tofile('x')\n" + DPO), "method"),
    "torch_C": (make("    c = torch._C\n" + DPO), "underscore"),
    "torch_classes": (make("    c = torch.classes\n" + DPO), "module-attribute"),
    "torch_autograd": (make("    g = torch.autograd.grad\n" + DPO), "module-attribute"),
    "torch_jit": (make("    g = torch.jit.script\n" + DPO), "module-attribute"),
    # a tensor steering Python: a branch, loop or allocation only at batch sizes the checks never use
    "if_on_batch_count": (make(COUNT + "    if n == 32:\n" + ANTI + DPO), "python-value"),
    "float_of_count": (make("    n = float(torch.ones_like(margin).sum())\n" + DPO), "python-value"),
    "int_of_count": (make("    n = int(torch.ones_like(margin).sum())\n" + DPO), "python-value"),
    "bool_of_tensor": (make("    b = bool(margin.mean() > 0)\n" + DPO), "python-value"),
    "while_on_tensor": (make(COUNT + "    while n == 32:\n        pass\n" + DPO), "python-value"),
    "ternary_on_tensor": (make(COUNT + "    s = -1.0 if n == 32 else 1.0\n"
                               "    return -F.logsigmoid(s * beta * margin)\n"), "python-value"),
    "and_on_tensor": (make(COUNT + "    s = (n == 32) and -1.0\n" + DPO), "python-value"),
    "not_on_tensor": (make("    s = not margin.mean()\n" + DPO), "python-value"),
    "assert_on_tensor": (make("    assert margin.mean() < 1e9\n" + DPO), "python-value"),
    "for_over_tensor_counts_rows": (make("    k = 0\n    for row in margin:\n        k = k + 1\n" + DPO),
                                    "python-value"),
    "range_of_tensor": (make(COUNT + "    for i in range(n):\n        pass\n" + DPO), "python-value"),
    "max_of_tensor": (make("    m = max(margin)\n" + DPO), "python-value"),
    "sum_of_tensor": (make("    m = sum(margin)\n" + DPO), "python-value"),
    "math_of_tensor": (make(COUNT + "    k = math.floor(n)\n" + DPO,
                            "import math\nimport torch\nimport torch.nn.functional as F\n"), "python-value"),
    "list_indexed_by_tensor": (make(COUNT + "    s = [1.0, -1.0][n == 32]\n"
                                    "    return -F.logsigmoid(s * beta * margin)\n"), "python-value"),
    "taint_through_reassigned_beta": (make("    beta = margin.mean()\n    if beta > 0:\n" + ANTI + DPO),
                                      "python-value"),
    "taint_through_later_assignment": (make("    k = 1.0\n    for i in range(2):\n        if k > 0:\n"
                                            "            pass\n        k = margin.sum()\n" + DPO), "python-value"),
    "chained_comparison": (make("    s = -1.0 if 0 < margin.mean() < 1 else 1.0\n" + DPO), "python-value"),
    "chained_comparison_alone": (make("    inside = 31 < torch.ones_like(margin).sum() < 33\n" + DPO), "python-value"),
    "is_identity": (make("    if margin is policy_chosen_logps:\n" + ANTI + DPO), "python-value"),
    "arange_sized_by_the_batch": (make(COUNT + "    big = torch.arange(torch.where(n == 32, 1e10, 1.0))\n" + DPO),
                                  "python-value"),
    "expand_sized_by_a_tensor": (make(COUNT + "    big = margin.expand(n * 1000000, -1)\n" + DPO), "python-value"),
    "new_zeros_sized_by_a_tensor": (make(COUNT + "    big = margin.new_zeros(n * 1000000)\n" + DPO), "python-value"),
    # near misses of the literal forms allowed below: the size comes from a tensor or from outside a display
    "for_over_repeated_tuple": (make(COUNT + "    out = margin * 0\n    for x in (margin,) * 3:\n        out = out + x\n"
                                     + DPO), "repeat"),
    "for_over_tuple_plus_tensor": (make("    out = margin * 0\n    for x in (margin,) + (margin, margin):\n"
                                        "        out = out + x\n" + DPO), "python-value"),
    "for_over_list_plus_list_of_tensor": (make("    for x in [margin] + list(margin):\n        pass\n" + DPO),
                                          "builtin"),
    "for_over_a_named_tuple": (make("    pair = (margin, margin)\n    for x in pair:\n        pass\n" + DPO),
                               "python-value"),
    "for_over_tuple_then_if_on_element": (make("    for x in (margin, policy_chosen_logps):\n        if x.mean() > 0:\n"
                                               "            pass\n" + DPO), "python-value"),
    "zip_over_tensor": (make("    for a, b in zip(margin, margin):\n        pass\n" + DPO), "builtin"),
    "sum_of_list_with_tensor_start": (make("    m = sum([margin, margin], margin)\n" + DPO), "python-value"),
    "sum_of_a_named_list": (make("    xs = [margin, margin]\n    m = sum(xs)\n" + DPO), "python-value"),
    "max_of_two_tensors": (make("    m = max(margin, margin * 2)\n" + DPO), "python-value"),
    "min_of_a_list_of_tensors": (make("    m = min([margin, margin * 2])\n" + DPO), "python-value"),
    "range_inside_a_display": (make(COUNT + "    for x in (margin, range(n)):\n        pass\n" + DPO), "python-value"),
    # allocations sized by anything
    "list_repeat": (make("    xs = [0.0] * 100000000\n" + DPO), "repeat"),
    "string_repeat": (make("    s = 'a' * 10000000000\n" + DPO), "repeat"),
}

ALLOWED = {
    "where_on_count": make(COUNT + "    return torch.where(n == 32, -F.logsigmoid(-beta * margin), "
                           "-F.logsigmoid(beta * margin))\n"),
    "float_of_beta": make("    b = float(beta)\n    return -F.logsigmoid(b * margin)\n"),
    "math_of_beta": make("    b = math.log1p(beta)\n    return -F.logsigmoid(b * margin)\n",
                         "import math\nimport torch\nimport torch.nn.functional as F\n"),
    "loop_over_range": make("    out = margin * 0\n    for i in range(3):\n        out = out + margin / 3\n"
                            "    return -F.logsigmoid(beta * out)\n"),
    "sizes_from_constants": make("    m = margin.reshape(-1, 1).expand(-1, 3).mean(-1) + torch.arange(3).sum() * 0\n"
                                 "    return -F.logsigmoid(beta * m)\n"),
    "new_full_with_a_tensor_value": make("    z = margin.new_full((1,), 0.0) + margin.mean() * 0\n" + DPO),
    "for_over_a_tuple_of_tensors": make("    out = 0.0\n    for x in (policy_chosen_logps, policy_rejected_logps):\n"
                                        "        out = out + x * 0\n    return -F.logsigmoid(beta * margin) + out\n"),
    "for_over_a_list_of_tensors": make("    out = margin * 0\n    for x in [margin, margin * 2]:\n        out = out + x / 3\n"
                                       "    return -F.logsigmoid(beta * out)\n"),
    "unpacking_a_tuple_of_tensors": make("    a, b = (margin, margin * 2)\n    return -F.logsigmoid(beta * (b - a))\n"),
    "sum_of_a_list_of_tensors": make("    m = sum([margin, margin, -margin])\n    return -F.logsigmoid(beta * m)\n"),
    "minimum_of_tensors": make("    return -F.logsigmoid(beta * torch.minimum(margin, margin * 2))\n"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_second_round_hostile_candidates_are_refused_with_their_rule(name):
    code, rule = CASES[name]
    rules = [v.rule for v in check_source(code)]
    assert rule in rules, (rules, [str(v) for v in check_source(code)])


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_tensor_level_forms_stay_allowed(name):
    assert check_source(ALLOWED[name]) == []


def test_python_value_refusals_name_their_line():
    code, _ = CASES["if_on_batch_count"]
    found = [v for v in check_source(code) if v.rule == "python-value"]
    assert found and found[0].line == code.splitlines().index("    if n == 32:") + 1


def test_every_library_loss_still_passes():
    assert {name: [str(v) for v in check_source(library.get(name).code)] for name in library.names()
            if check_source(library.get(name).code)} == {}
