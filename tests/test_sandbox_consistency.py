"""Losses that could tell checking from training: batch size, grad state, in-place edits only in training,
loops only in training. Each is refused by the checks (`check_consistent`) and/or stopped by the trainer's
`TrainingGuard`; the library losses (batch statistics included) stay valid."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from hostile.candidates import make
from test_trainer import _config, setup  # noqa: F401 - the tiny-model fixture

from discovery import library
from discovery.sandbox import checks
from discovery.sandbox.consistency import Inconsistent, TrainingGuard
from discovery.sandbox.loader import FILENAME, load_loss, safe_builtins
from discovery.sandbox.static import check_source, function_name

DPO = "-F.logsigmoid(beta * margin)"
ANTI = "-F.logsigmoid(-beta * margin)"
COUNT = "    n = torch.ones_like(margin).sum()\n"
# losses that switch on something a loss may not depend on (all but STATIC_REFUSED pass the static policy)
SWITCHES = {
    "count_is_8": COUNT + f"    return torch.where(n == 8, {ANTI}, {DPO})\n",
    "count_is_16": COUNT + f"    return torch.where(n == 16, {ANTI}, {DPO})\n",
    "count_at_least_70": COUNT + f"    return torch.where(n >= 70, {ANTI}, {DPO})\n",
    "count_via_cumsum": "    n = torch.ones_like(margin).cumsum(0).max()\n"
                        f"    return torch.where((n > 7) & (n < 9), {ANTI}, {DPO})\n",
    "sum_over_batch": f"    return {DPO} + 0.05 * torch.ones_like(margin).sum()\n",
    "count_via_python_loop": "    n = 0\n    for v in margin:\n        n = n + 1\n"
                             f"    return {ANTI} if n == 8 else {DPO}\n",
}


STATIC_REFUSED = {"count_via_python_loop"}  # Python control flow on a tensor: rule `python-value` since e575ff1


def _fn(body: str, static_refused: bool = False):
    """The loss of `body`; `static_refused`: the static policy refuses it (asserted), and it is loaded past
    that layer (restricted builtins only) to check that the dynamic layers catch it too."""
    code = make(body)
    if not static_refused:
        assert check_source(code) == [], check_source(code)
        return load_loss(code)
    assert "python-value" in {v.rule for v in check_source(code)}, check_source(code)
    namespace = {"__builtins__": safe_builtins(), "__name__": "candidate"}
    exec(compile(code, FILENAME, "exec"), namespace)  # noqa: S102 - trusted test fixture
    return namespace[function_name(code)]


@pytest.mark.parametrize("name", sorted(SWITCHES))
def test_checks_refuse_batch_size_switches(name):
    fn = _fn(SWITCHES[name], static_refused=name in STATIC_REFUSED)
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_consistent(fn, 2.0)
    assert info.value.check == "batch-size"


@pytest.mark.parametrize("name", library.names())
def test_library_losses_are_consistent(name):
    checks.check_consistent(load_loss(library.get(name).code), 2.0)


def _training_batch(batch: int, seed: int = 0):
    """Like the trainer's: policy log-probs are non-leaf tensors with grad, references plain."""
    gen = torch.Generator().manual_seed(seed)
    ref = -torch.rand(2, batch, generator=gen) * 80 - 20
    weights = torch.ones(2, batch, requires_grad=True)
    policy = ref + torch.randn(2, batch, generator=gen) * weights
    return [policy[0], policy[1], ref[0].clone(), ref[1].clone()]


def test_guard_passes_library_losses_in_training_sizes():
    for name in library.names():
        guard = TrainingGuard(load_loss(library.get(name).code))
        for batch in (1, 8, 16, 37):
            out = guard(*_training_batch(batch), 0.1)
            assert out.shape == (batch,)


@pytest.mark.parametrize("batch", [24, 37, 1000])
def test_guard_stops_a_switch_at_the_training_batch_size(batch):
    fn = _fn(COUNT + f"    return torch.where(n == {batch}, {ANTI}, {DPO})\n")
    checks.check_consistent(fn, 2.0)  # a size the checks never use (nor the task's): only the guard sees it
    guard = TrainingGuard(fn)
    with pytest.raises(Inconsistent) as info:
        guard(*_training_batch(batch), 0.1)
    assert info.value.rule == "batch-size"


def test_guard_stops_a_batch_dependent_loss_that_switches_at_the_training_size():
    fn = _fn(COUNT + f"    return torch.where(n == 48, {ANTI}, {DPO}) + 0.01 * margin.mean()\n")
    guard = TrainingGuard(fn)
    assert not guard.independent
    with pytest.raises(Inconsistent) as info:
        guard(*_training_batch(48), 0.1)
    assert info.value.rule == "batch-size"


def test_in_place_edit_only_at_training_size_is_caught_in_checks_and_training():
    fn = _fn(COUNT + "    reference_chosen_logps += torch.where(n == 8, 50.0, 0.0)\n"
                     f"    return {DPO}\n")
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_pure(fn, 2.0)
    assert info.value.check == "inplace"
    with pytest.raises(Inconsistent) as caught:
        TrainingGuard(fn)(*_training_batch(8), 0.1)
    assert caught.value.rule == "inplace"


def test_loop_only_in_training_is_cut_by_the_per_call_limit():
    fn = _fn(COUNT + "    k = 0\n    while (n == 24) & (k < 10 ** 9):\n        k = k + 1\n"
                     f"    return {DPO}\n", static_refused=True)
    guard = TrainingGuard(fn, call_seconds=0.5)
    start = time.perf_counter()
    with pytest.raises(Inconsistent) as info:
        guard(*_training_batch(24), 0.1)
    assert info.value.rule == "speed"
    assert time.perf_counter() - start < 5.0
    assert guard(*_training_batch(8), 0.1).shape == (8,)  # the guard is still usable afterwards


def test_guard_compares_with_and_without_grad():
    with pytest.raises(Inconsistent) as info:
        TrainingGuard(_sneaky)(*_training_batch(8), 0.1)
    assert info.value.rule == "grad-mode"
    with pytest.raises(checks.CheckFailure) as failure:
        checks.check_consistent(_sneaky, 2.0)
    assert failure.value.check == "grad-mode"


def _sneaky(c, r, rc, rr, beta):
    """Trusted test double for a loss that is DPO when checked and anti-DPO when trained."""
    margin = (c - rc) - (r - rr)
    flip = -1.0 if torch.is_grad_enabled() and c.requires_grad else 1.0
    return -torch.nn.functional.logsigmoid(flip * beta * margin)


def test_trainer_stops_a_loss_that_trains_differently(setup):  # noqa: F811 - the imported fixture
    from trl import DPOTrainer

    from discovery.inner_loop.trainer import CandidateDPOTrainer, add_reference_logps

    tok, ds, policy, reference = setup
    trl = DPOTrainer(copy.deepcopy(policy), ref_model=copy.deepcopy(reference), args=_config(),
                     train_dataset=ds, processing_class=tok)
    tokenized = add_reference_logps(reference, trl.train_dataset, tok.pad_token_id)
    trainer = CandidateDPOTrainer(copy.deepcopy(policy), args=_config(max_steps=2, precompute_ref_log_probs=True),
                                  train_dataset=tokenized, processing_class=tok, loss_fn=_sneaky)
    outcome = trainer.run()
    assert not outcome.ok and outcome.steps == 1
    assert outcome.reason.startswith("[grad-mode]")
