"""Sandbox, third round: losses that tell checking from training at tensor level, written as hostile candidates.

- a batch-size switch built from tensor ops only (`torch.ones_like(x).sum()`, `(x * 0 + 1).sum()`, a cumsum):
  `discovery validate FILE` runs the export's sweep (`SWEEP_BATCH_SIZES`) and refuses it with exit 1 and its rule;
- switches on input statistics (log-probs of long answers, the policy exactly at the reference as on step 0,
  all-distinct values): the checks' inputs cover those ranges ("long" regime), so the switch shows as another
  fingerprint than DPO's or as an inconsistency;
- what only training shows (an in-place edit of the reference at a training-only size or range) is stopped by
  the trainer's `TrainingGuard` with its rule;
- grad mode is not observable: every introspection of it is refused by the static policy.
"""

from __future__ import annotations

import json

import pytest
import torch
from hostile.candidates import make

from discovery import library
from discovery.cli import main
from discovery.sandbox import checks, fingerprint
from discovery.sandbox.consistency import Inconsistent, TrainingGuard, check_betas
from discovery.sandbox.loader import load_loss
from discovery.sandbox.static import check_source
from discovery.sandbox.validation import SWEEP_BATCH_SIZES, SWEEP_TEXT

DPO = "-F.logsigmoid(beta * margin)"
ANTI = "-F.logsigmoid(-beta * margin)"
DPO_CODE = make(f"    return {DPO}\n")

# a count of the batch from tensor ops only, then anti-DPO at one batch size no default check uses
SIZE_SWITCHES = {
    "ones_like_sum_32": ("    n = torch.ones_like(policy_chosen_logps).sum()\n", 32),
    "times_zero_plus_one_100": ("    n = (margin * 0 + 1).sum()\n", 100),
    "cumsum_last_300": ("    n = torch.ones_like(margin).cumsum(0)[-1]\n", 300),
    "exp_of_zero_sum_5": ("    n = torch.exp(margin * 0).sum()\n", 5),
    "mean_trick_1024": ("    n = (margin - margin + 1).sum()\n", 1024),
}


def _validate_cli(tmp_path, code: str, capsys) -> tuple[int, dict]:
    path = tmp_path / "candidate.py"
    path.write_text(code)
    capsys.readouterr()
    rc = main(["validate", str(path), "--json"])
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(SIZE_SWITCHES))
def test_cli_validate_refuses_a_tensor_level_batch_size_switch(tmp_path, capsys, name):
    count, size = SIZE_SWITCHES[name]
    code = make(count + f"    return torch.where(n == {size}, {ANTI}, {DPO})\n")
    assert check_source(code) == []  # tensor-level: only the sweep sees it
    assert size in SWEEP_BATCH_SIZES
    rc, report = _validate_cli(tmp_path, code, capsys)
    assert rc == 1 and report["valid"] is False
    assert report["errors"][0]["rule"] == "batch-size", report["errors"]


def test_cli_validate_passes_dpo_and_says_what_ran(tmp_path, capsys):
    from discovery.commands.validate import PASSED_CHECKS

    rc, report = _validate_cli(tmp_path, DPO_CODE, capsys)
    assert rc == 0 and report["valid"] is True
    assert any(SWEEP_TEXT in line for line in PASSED_CHECKS)


def test_export_and_cli_share_the_sweep(monkeypatch):
    import discovery.sandbox as sandbox
    from discovery.export.build import revalidate

    seen = {}

    def fake(code, config=None, runner=None, batch_sizes=(), cache=True, sweep=False, formula=False):
        seen.update(sizes=batch_sizes, sweep=sweep)
        return sandbox.ValidationReport(valid=True)

    monkeypatch.setattr(sandbox, "validate", fake)
    revalidate(DPO_CODE, 1)
    assert seen == {"sizes": (), "sweep": True}  # validate(sweep=True): SWEEP_BATCH_SIZES and the betas
    assert set(range(1, 513)) <= set(SWEEP_BATCH_SIZES) and 4096 in SWEEP_BATCH_SIZES


def _digest(code: str) -> str:
    return fingerprint.digest(fingerprint.probe(load_loss(code))[0])


# switches on what training inputs look like and the check grid does not (each passes the static policy)
STAT_SWITCHES = {
    # per pair: summed log-probs of long answers (a 7B model's 200+ tokens: -100..-600 and below)
    "long_answers_per_pair": f"    return torch.where(policy_chosen_logps < -600, {ANTI}, {DPO})\n",
    # per batch: any long answer in the batch
    "long_answers_in_batch": f"    return torch.where(policy_chosen_logps.min() < -600, {ANTI}, {DPO})\n",
    # step 0 of training: the policy is exactly the reference
    "policy_is_reference": "    same = (policy_chosen_logps == reference_chosen_logps) & "
                           "(policy_rejected_logps == reference_rejected_logps)\n"
                           f"    return torch.where(same, {ANTI}, {DPO})\n",
    # the grid's values vs training's all-distinct values
    "all_distinct_values": "    s = torch.sort(policy_chosen_logps.detach())[0]\n"
                           "    distinct = (s[1:] != s[:-1]).all()\n"
                           f"    return torch.where(distinct, {ANTI}, {DPO})\n",
}


@pytest.mark.parametrize("name", sorted(STAT_SWITCHES))
def test_input_statistics_switches_are_not_dpo_to_the_checks(name):
    """DPO on the check grid, anti-DPO on training-like inputs: the checks see the training branch, so the
    loss is refused (inconsistent) or gets another fingerprint than DPO (it is not counted as DPO)."""
    code = make(STAT_SWITCHES[name])
    assert check_source(code) == []
    fn = load_loss(code)
    try:
        checks.check_consistent(fn, 2.0)
    except checks.CheckFailure as failure:
        assert failure.check in ("batch-size", "grad-mode")
        return
    assert _digest(code) != _digest(DPO_CODE)


def test_the_long_regime_reaches_training_ranges():
    pol_c, pol_r, ref_c, ref_r = checks.make_regime("long", 64, 0.1, seed=0, grad=False)
    assert float(ref_c.min()) < -2500 and float(ref_c.max()) > -300
    assert torch.equal(pol_c[:32], ref_c[:32]) and torch.equal(pol_r[:32], ref_r[:32])  # step 0: exactly equal
    assert not torch.equal(pol_c[32:], ref_c[32:])
    assert "long" in checks.REGIMES


def _training_batch(batch: int, low: float = -100.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ref = -torch.rand(2, batch, generator=gen) * 80 + low
    weights = torch.ones(2, batch, requires_grad=True)
    policy = ref + torch.randn(2, batch, generator=gen) * weights
    return [policy[0], policy[1], ref[0].clone(), ref[1].clone()]


@pytest.mark.parametrize("trigger, batch, low", [("torch.ones_like(margin).sum() == 24", 24, -100.0),
                                                 ("reference_chosen_logps.min() < -5000", 8, -5100.0)])
def test_purity_runs_in_training_too(trigger, batch, low):
    """An in-place edit of the reference (it forges the logged rewards) only at a training-only size or range:
    the checks refuse any in-place write (even of zeros), and the training guard, on its own, stops the first
    training call."""
    fn = load_loss(make(f"    reference_chosen_logps += torch.where({trigger}, 50.0, 0.0)\n    return {DPO}\n"))
    with pytest.raises(checks.CheckFailure) as failure:
        checks.check_pure(fn, 2.0)
    assert failure.value.check == "inplace"
    with pytest.raises(Inconsistent) as info:
        TrainingGuard(fn)(*_training_batch(batch, low), 0.1)
    assert info.value.rule == "inplace"


def test_training_has_a_per_call_time_limit():
    import time

    def slow_in_training(c, r, rc, rr, beta):  # trusted double: a loss that only stalls on real batches
        t0 = time.perf_counter()
        while c.shape[0] == 24 and time.perf_counter() - t0 < 30:
            pass
        return -torch.nn.functional.logsigmoid(beta * ((c - rc) - (r - rr)))

    start = time.perf_counter()
    with pytest.raises(Inconsistent) as info:
        TrainingGuard(slow_in_training, call_seconds=0.5)(*_training_batch(24), 0.1)
    assert info.value.rule == "speed" and time.perf_counter() - start < 10


GRAD_MODE = ("policy_chosen_logps.requires_grad", "policy_chosen_logps.grad_fn", "policy_chosen_logps.is_leaf",
             "policy_chosen_logps._version", "torch.is_grad_enabled()", "torch.is_inference_mode_enabled()",
             "policy_chosen_logps.is_inference()", "policy_chosen_logps.grad", "policy_chosen_logps.retains_grad",
             "margin.output_nr", "margin._base", "torch.set_grad_enabled(False)", "margin.register_hook",
             "margin.requires_grad_()", "torch.no_grad()", "torch.enable_grad()", "margin.data",
             "getattr(margin, 'requires_grad')", "torch.autograd.grad")


@pytest.mark.parametrize("expression", GRAD_MODE)
def test_grad_mode_is_not_observable(expression):
    code = make(f"    g = {expression}\n    return torch.where(torch.ones_like(margin) > 0, {DPO}, {ANTI})\n")
    assert check_source(code), expression


# a loss that singles out one beta: DPO at every beta the loop's checks and fingerprint use, anti-DPO at the beta
# training runs (0.2 is in the default grid)
BETA_SWITCHES = {  # the Python-level `beta == 0.2` is refused statically now (tests/test_sandbox_round4.py)
    "tensor_compare": "    flip = torch.where(torch.ones_like(margin) * beta == 0.2, -1.0, 1.0)\n"
                      "    return -F.logsigmoid(flip * beta * margin)\n",
}


@pytest.mark.parametrize("name", sorted(BETA_SWITCHES))
def test_a_switch_at_one_beta_is_refused_by_the_sweep_and_stopped_in_training(name):
    code = make(BETA_SWITCHES[name])
    assert check_source(code) == []
    fn = load_loss(code)
    checks.check_consistent(fn, 2.0)  # the loop's checks: beta 0.1 only
    with pytest.raises(checks.CheckFailure) as swept:  # the sweep is a flag, not a count of batch sizes
        checks.check_consistent(fn, 2.0, sweep=True)
    assert swept.value.check == "beta"
    with pytest.raises(Inconsistent) as refused:  # the sweep's betas (the CLI test runs the whole sweep)
        check_betas(fn, lambda f, inputs, beta: f(*inputs, beta))
    assert refused.value.rule == "beta"
    guard = TrainingGuard(fn)
    assert guard(*_training_batch(8), 0.1).shape == (8,)
    with pytest.raises(Inconsistent) as info:
        guard(*_training_batch(8), 0.2)
    assert info.value.rule == "beta"


def test_cli_validate_refuses_a_beta_switch(tmp_path, capsys):
    rc, report = _validate_cli(tmp_path, make(BETA_SWITCHES["tensor_compare"]), capsys)
    assert rc == 1 and report["errors"][0]["rule"] == "beta", report["errors"]


@pytest.mark.parametrize("name", library.names())
def test_library_losses_are_continuous_in_beta(name):
    fn = load_loss(library.get(name).code)
    check_betas(fn, lambda f, inputs, beta: f(*inputs, beta))
    guard = TrainingGuard(fn)
    for beta in (0.05, 0.2, 2.5):
        for batch in (1, 37):
            assert guard(*_training_batch(batch, seed=batch), beta).shape == (batch,), beta
