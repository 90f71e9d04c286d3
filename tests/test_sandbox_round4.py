"""Sandbox, fourth round: hostile candidates that passed the checks before and are refused or stopped now.

- a loss that is another function only when the whole batch is exactly at the reference (step 0 of
  training): the checks call it on such a batch of its own (`checks.AT_REFERENCE`) and the fingerprint hashes
  it, so a NaN there is refused and a flip there is not DPO's duplicate;
- a per-pair switch on log-ratios of 1e-7..1e-2 (the first steps): the "near" regime;
- a switch on the inputs' precision (`(x + 1e-10) == x`: true in float32, false in float64, the fingerprint's
  dtype): refused as `dtype`;
- Python branches, loops, sizes and steps on beta (a loss that is anti-DPO only between two betas no check
  uses): refused by the static policy (`python-value`);
- a switch on a statistic of the training batches (their spread): DPO in every check, anti-DPO in training;
  the trainer's `TrainingGuard` puts real pairs among pairs from the checks and stops it.

Each of these was valid at 9dded07 (checked by hand with the same code); the library losses stay valid.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hostile.candidates import make

from discovery import library
from discovery.sandbox import checks, fingerprint
from discovery.sandbox.consistency import Inconsistent, TrainingGuard, check_consistent
from discovery.sandbox.fingerprint import distance
from discovery.sandbox.loader import load_loss
from discovery.sandbox.static import check_source

DPO = "-F.logsigmoid(beta * margin)"
ANTI = "-F.logsigmoid(-beta * margin)"
SWITCH = f"    anti = {ANTI}\n    good = {DPO}\n"


def _digest(fn) -> str:
    return fingerprint.digest(fingerprint.probe(fn)[0])


def _consistent(fn) -> None:
    check_consistent(fn, checks.make_inputs, lambda f, inputs, beta: f(*inputs, beta))


@functools.cache
def _dpo_digest() -> str:
    return _digest(load_loss(library.get("dpo").code))


AT_REFERENCE = "    step0 = (policy_chosen_logps - reference_chosen_logps).abs().max() == 0\n"


def test_nan_only_when_the_whole_batch_is_at_the_reference_is_refused():
    code = make(AT_REFERENCE + f"    return torch.where(step0, torch.log(margin * 0 - 1), {DPO})\n")
    assert check_source(code) == []
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_finite_and_gradients(load_loss(code), 2.0)
    assert info.value.check == "finite" and "exactly at the reference" in info.value.message


def test_a_flip_only_when_the_whole_batch_is_at_the_reference_is_not_dpo():
    """Same loss value as DPO there (log 2), opposite gradient: the fingerprint hashes both."""
    fn = load_loss(make(SWITCH + AT_REFERENCE + "    return torch.where(step0, anti, good)\n"))
    checks.check_finite_and_gradients(fn, 2.0)
    assert _digest(fn) != _dpo_digest()


def test_nan_on_tiny_log_ratios_is_refused():
    """Per pair: NaN where the policy moved by less than 1e-5 nats from the reference but not exactly 0."""
    code = make("    d = (policy_chosen_logps - reference_chosen_logps).abs()\n"
                f"    return torch.where((d < 1e-5) & (d > 0), torch.log(margin * 0 - 1), {DPO})\n")
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_finite_and_gradients(load_loss(code), 2.0)
    assert info.value.check == "finite"


def test_a_flip_on_tiny_log_ratios_is_not_dpo():
    fn = load_loss(make(SWITCH + "    d = (policy_chosen_logps - reference_chosen_logps).abs()\n"
                        "    return torch.where((d < 1e-5) & (d > 0), anti, good)\n"))
    assert _digest(fn) != _dpo_digest()


@pytest.mark.parametrize("probe", ["(reference_chosen_logps + 1e-10) == reference_chosen_logps",
                                   "(margin * 0 + 1 + 1e-12) == 1"])
def test_a_switch_on_precision_is_refused(probe):
    """float32 (checks, training) is anti-DPO, float64 (the fingerprint's probes) DPO: it would count as DPO."""
    fn = load_loss(make(SWITCH + f"    return torch.where(({probe}).any(), anti, good)\n"))
    with pytest.raises(Inconsistent) as info:
        _consistent(fn)
    assert info.value.rule == "dtype"


BETA_STEERS = {
    "branch": "    if 0.19 < beta < 0.21:\n        return " + ANTI + "\n    return " + DPO + "\n",
    "ifexp": "    sign = -1.0 if beta > 0.17 else 1.0\n    return -F.logsigmoid(sign * beta * margin)\n",
    "derived_name": "    b = beta * 10\n    flip = b > 1.7\n    return -F.logsigmoid((1 - 2 * flip) * beta * margin)\n",
    "int": "    k = int(beta * 5)\n    return -F.logsigmoid((1 - 2 * k) * beta * margin)\n",
    "round": "    return -F.logsigmoid(round(beta, 1) * margin)\n",
    "floordiv": "    k = beta // 0.15\n    return -F.logsigmoid((1 - 2 * k) * beta * margin)\n",
    "math_floor": "    return -F.logsigmoid(math.floor(beta * 5) * margin)\n",
    "loop": "    out = margin * 0\n    for i in range(int(beta * 10)):\n        out = out + margin\n"
            "    return -F.logsigmoid(beta * margin) + out\n",
    "while": "    b = beta\n    while b < 1:\n        b = b * 2\n    return -F.logsigmoid(b * margin)\n",
    "if_halves_beta": "    if beta > 0.5:\n        beta = beta / 2\n    return " + DPO + "\n",  # allowed in round 2
    "chained": "    ok = 0 < beta < 1\n    return -F.logsigmoid((2 * ok - 1) * beta * margin)\n",
    "equals": "    return -F.logsigmoid(beta * margin * (1 - 2 * (beta == 0.2)))\n",
}


@pytest.mark.parametrize("name", sorted(BETA_STEERS))
def test_python_may_not_branch_loop_or_step_on_beta(name):
    code = make(BETA_STEERS[name], imports="import math\nimport torch\nimport torch.nn.functional as F\n")
    rules = {v.rule for v in check_source(code)}
    assert "python-value" in rules, check_source(code)


BETA_SMOOTH = ("    return -F.logsigmoid(beta * margin) * math.log1p(beta)\n",
               "    b = min(beta, 1.0)\n    return -F.logsigmoid(b * margin)\n",
               "    t = torch.where(margin > beta, margin, margin * 0.5)\n    return -F.logsigmoid(beta * t)\n",
               "    scale = max(beta, 0.01) ** 0.5 / (1 + beta)\n    return -F.logsigmoid(scale * margin)\n")


@pytest.mark.parametrize("body", BETA_SMOOTH)
def test_smooth_use_of_beta_stays_allowed(body):
    assert check_source(make(body, imports="import math\nimport torch\nimport torch.nn.functional as F\n")) == []


def _training_batches(batch: int = 16, steps: int = 6, seed: int = 0):
    """Short answers (reference log-probs -40..-5, spread ~10 nats), the policy drifting from the reference."""
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        ref = torch.empty(2, batch).uniform_(-40, -5, generator=gen)
        drift = 0.05 * (step + 1) * torch.empty(2, batch).uniform_(-0.5, 1.0, generator=gen)
        policy = (ref + torch.stack([drift[0], -drift[1]])).requires_grad_(True)
        yield [policy[0], policy[1], ref[0].clone(), ref[1].clone()]


SPREAD = "(reference_chosen_logps.max() - reference_chosen_logps.min())"
# each is false for a pair alone (the std of one value is NaN), so the loss is batch-independent in the checks
SPREAD_SWITCHES = {
    "std": "reference_chosen_logps.std() < 20.0",
    "range": f"({SPREAD} < 40.0) & ({SPREAD} > 0)",
    "all_above": "(reference_chosen_logps > -60.0).all() & (reference_chosen_logps.std() > 0)",
    "quantile": "(torch.quantile(reference_chosen_logps, 0.9) > -40.0) & (reference_chosen_logps.std() < 15.0)",
}


@pytest.mark.parametrize("name", sorted(SPREAD_SWITCHES))
def test_a_switch_on_the_spread_of_training_batches_is_stopped_in_training(name):
    """DPO on every batch of the checks (their log-probs span -500..-1), anti-DPO on short answers."""
    fn = load_loss(make(SWITCH + f"    return torch.where({SPREAD_SWITCHES[name]}, anti, good)\n"))
    _consistent(fn)  # the checks see DPO, batch-independent
    assert _digest(fn) == _dpo_digest()
    guard = TrainingGuard(fn)
    assert guard.independent
    with pytest.raises(Inconsistent) as info:
        for batch in _training_batches():
            guard(*batch, 0.1)
    assert info.value.rule == "batch-size" and guard.calls == 1


@pytest.mark.parametrize("name", library.names())
def test_library_losses_pass_the_guard_on_short_answers(name):
    guard = TrainingGuard(load_loss(library.get(name).code))
    for beta in (0.05, 0.2):
        for batch in _training_batches(batch=12, steps=3, seed=len(name)):
            out = guard(*batch, beta)
            assert out.shape == (12,) and torch.isfinite(out).all()


def test_a_batch_dependent_switch_is_not_the_duplicate_of_dpo():
    """Anti-DPO when the batch spans under 40 nats, a pair alone included: the checks see a batch-statistic
    loss (a pair alone differs from the pair in a batch, copies keep it) that is DPO on every probe batch; a
    batch-dependent loss never gets the fingerprint of a batch-independent one."""
    from discovery.sandbox import jobs

    code = make(SWITCH + f"    return torch.where({SPREAD} < 40.0, anti, good)\n")
    assert _digest(load_loss(code)) == _dpo_digest()  # the probes alone: DPO's
    found, dpo = jobs.check_job({"code": code}), jobs.check_job({"code": library.get("dpo").code})
    assert found["errors"] == [] and found["diagnostics"]["independent_in_checks"] is False
    assert dpo["diagnostics"]["independent_in_checks"] is True and found["fingerprint"] != dpo["fingerprint"]
    assert distance(found["probe_values"], dpo["probe_values"]) == math.inf  # nor a near-duplicate
    assert distance(found["probe_values"][:len(dpo["probe_values"])], dpo["probe_values"]) < 1e-9


def test_a_switch_on_precision_on_long_answers_is_refused():
    """`(x + 1e-4) == x` holds in float32 only where |x| > ~1000 (long answers); the watched pairs never reach
    it, the long regime does (red-team round 2)."""
    fn = load_loss(make(SWITCH + "    probe = (reference_chosen_logps + 1e-4) == reference_chosen_logps\n"
                        "    return torch.where(probe.any(), anti, good)\n"))
    with pytest.raises(Inconsistent) as info:
        _consistent(fn)
    assert info.value.rule == "dtype"


BETA_WINDOWS = {  # DPO at every probe beta (0.05, 0.1, 0.5), anti-DPO around 0.2 (the default grid's third)
    "tensor": "    b = torch.ones_like(margin) * beta\n    return torch.where((b > 0.17) & (b < 0.23), anti, good)\n",
    "smooth": "    b = torch.ones_like(margin) * beta\n"
              "    w = torch.sigmoid((b - 0.17) * 1e3) * torch.sigmoid((0.23 - b) * 1e3)\n"
              "    return w * anti + (1 - w) * good\n",
    "min_max": "    k = min(max((beta - 0.17) * 1e6, 0.0), 1.0) * min(max((0.23 - beta) * 1e6, 0.0), 1.0)\n"
               "    return -F.logsigmoid((1 - 2 * k) * beta * margin)\n",
}


@pytest.mark.parametrize("name", sorted(BETA_WINDOWS))
def test_a_loss_that_is_another_function_at_a_training_beta_is_not_dpo(name):
    """No jump anywhere (the sweep and the guard's `jumps_at` pass it); the fingerprint probes the betas the run
    trains at (`validate(betas=...)`, the loop and `discovery validate` pass `eval.betas`)."""
    code = make(SWITCH + BETA_WINDOWS[name])
    assert check_source(code) == []
    fn, dpo = load_loss(code), load_loss(library.get("dpo").code)
    assert fingerprint.probe(fn)[0] == pytest.approx(fingerprint.probe(dpo)[0], rel=1e-6, abs=1e-9)
    grid = (0.05, 0.1, 0.2)
    assert fingerprint.digest(fingerprint.probe(fn, grid)[0]) != fingerprint.digest(fingerprint.probe(dpo, grid)[0])


def test_validate_probes_the_betas_it_is_given():
    from discovery.sandbox import validate

    code, grid = make(SWITCH + BETA_WINDOWS["tensor"]), (0.05, 0.1, 0.2)
    dpo = library.get("dpo").code
    assert validate(code).fingerprint == validate(dpo).fingerprint  # the probe betas only: DPO's
    assert validate(code, betas=grid).fingerprint != validate(dpo, betas=grid).fingerprint
