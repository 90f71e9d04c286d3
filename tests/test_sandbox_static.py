"""Layer 1: the static policy (no process is started here)."""

from __future__ import annotations

import pytest
from hostile.candidates import BROKEN, HOSTILE, make

from discovery import contract, library
from discovery.sandbox import loader
from discovery.sandbox.static import check_source


@pytest.mark.parametrize("name", library.names())
def test_every_library_loss_passes_the_policy(name):
    assert check_source(library.get(name).code) == []


def test_contract_example_passes():
    assert check_source(contract.EXAMPLE) == []


STATIC = {name: code for name, (code, check) in {**BROKEN, **HOSTILE}.items() if check == "static"}


@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_rejections_name_a_line_or_rule(name):
    violations = check_source(STATIC[name])
    assert violations, name
    for v in violations:
        assert v.rule and v.message
        if v.line is not None:
            assert v.message.startswith(f"line {v.line}: ")


@pytest.mark.parametrize("snippet, rule, words", [
    ("x = torch.load('f')", "module-attribute", "`torch.load` is not allowed; use elementwise torch/F/math"),
    ("x = torch.utils.data", "module-attribute", "`torch.utils.data`"),
    ("x = torch.set_grad_enabled(False)", "module-attribute", "torch.set_grad_enabled"),
    ("x = policy_chosen_logps.numpy()", "method", "`.numpy`"),
    ("x = policy_chosen_logps.storage()", "method", "`.storage`"),
    ("x = policy_chosen_logps.register_hook(abs)", "method", "`.register_hook`"),
    ("x = policy_chosen_logps.add_(1)", "method", "in-place"),
    ("x = torch.add(margin, 1, out=margin)", "inplace", "out="),
    ("x = margin._version", "underscore", "`_`"),
    ("_x = 1", "underscore", "`_x`"),
    ("x = globals()", "builtin", "`globals`"),
    ("x = vars(margin)", "builtin", "`vars`"),
    ("x = '%s' % margin", "format", "formatting"),
    ("margin.requires_grad = False", "attribute", "assigning"),
    ("x = lambda: 1", "lambda", "lambda"),
])
def test_rule_and_actionable_message(snippet, rule, words):
    violations = check_source(make("    " + snippet + "\n    return -margin\n"))
    assert any(v.rule == rule and words in v.message and v.line == 7 for v in violations), violations


def test_import_rules():
    assert check_source(make("    return -margin\n", "import numpy as np\n"))[0].rule == "import"
    assert check_source(make("    return -margin\n", "import torch.nn.functional as G\n"))[0].rule == "import"
    assert check_source(make("    return -F.relu(-margin)\n", "from torch.nn import functional as F\n")) == []


def test_size_and_layout_limits():
    huge = make("    return -margin\n" + "# padding\n" * (contract.MAX_LINES + 1))
    assert check_source(huge)[0].rule == "size"
    two = contract.EXAMPLE + "\n\n" + contract.EXAMPLE.split("\n\n\n")[1].replace("def dpo", "def other")
    assert any(v.rule == "function" for v in check_source(two))
    assert check_source("")[0].rule == "empty"
    assert check_source("x = (" * 500 + ")" * 500)[0].rule == "syntax"


def test_restricted_builtins_and_imports():
    table = loader.safe_builtins()
    for name in ("open", "exec", "eval", "compile", "getattr", "globals", "vars", "input", "breakpoint"):
        assert name not in table
    with pytest.raises(ImportError):
        loader._restricted_import("os")
    with pytest.raises(ImportError):
        loader._restricted_import("torch.utils", fromlist=("cpp_extension",))
    assert loader._restricted_import("math").sqrt(4) == 2


def test_loader_refuses_policy_violations():
    with pytest.raises(loader.PolicyError) as info:
        loader.load_loss(make("    return torch.load('x')\n"))
    assert "torch.load" in str(info.value)
