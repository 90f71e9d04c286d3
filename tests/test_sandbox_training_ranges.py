"""Losses that tell checking from training by what training feeds them, round two: value ranges (summed
log-probs of real completions, the policy at the reference at step 0, large margins late), batch sizes the
checks did not use (512, the task's own, TRL's 8, a random one per check) and duplicated pairs. Each is
refused by the checks, stopped by the training guard, or - a loss that is a different function on
training's ranges - no longer shares DPO's fingerprint (it is not counted as a DPO duplicate)."""

from __future__ import annotations

import pytest
import torch
from hostile.candidates import make
from test_sandbox_consistency import _training_batch

from discovery import library
from discovery.sandbox import checks, consistency, fingerprint
from discovery.sandbox.consistency import Inconsistent, TrainingGuard
from discovery.sandbox.loader import load_loss
from discovery.sandbox.static import check_source

DPO = "-F.logsigmoid(beta * margin)"
ANTI = "-F.logsigmoid(-beta * margin)"
COUNT = "    n = torch.ones_like(margin).sum()\n"
RATIO = "    ratio = policy_chosen_logps - reference_chosen_logps\n"
# per-pair functions that are DPO on the old check grid and anti-DPO where training lives
VALUE_SWITCHES = {
    "policy_at_reference": RATIO + f"    return torch.where(ratio.abs() < 0.1, {ANTI}, {DPO})\n",
    "both_at_reference": RATIO + "    other = policy_rejected_logps - reference_rejected_logps\n"
                         f"    return torch.where((ratio.abs() < 0.06) & (other.abs() < 0.06), {ANTI}, {DPO})\n",
    "short_completions": f"    return torch.where(reference_chosen_logps > -40, {ANTI}, {DPO})\n",
    "large_margin": f"    return torch.where(margin.abs() > 30, {ANTI}, {DPO})\n",
}
# batch-level switches on training's value ranges: batch-dependent beyond statistics
BATCH_VALUE_SWITCHES = {
    "batch_near_reference": RATIO + f"    return torch.where(ratio.abs().max() < 0.1, {ANTI} + margin.sum(), {DPO})\n",
    "batch_of_short_completions": "    top = reference_chosen_logps.max()\n"
                                  f"    return torch.where(top > -30, {DPO} * torch.ones_like(margin).sum(), {DPO})\n",
}
DUPLICATES = ("    gap = (margin.unsqueeze(0) - margin.unsqueeze(1)).abs()\n"
              "    copies = (gap == 0).float().sum() > torch.ones_like(margin).sum()\n")


def _fn(body: str):
    code = make(body)
    assert check_source(code) == [], check_source(code)
    return load_loss(code)


def _digest(fn) -> str:
    return fingerprint.digest(fingerprint.probe(fn)[0])


@pytest.mark.parametrize("name", sorted(VALUE_SWITCHES))
def test_value_range_switches_do_not_share_dpos_fingerprint(name):
    fn = _fn(VALUE_SWITCHES[name])
    checks.run_unit_checks(fn, 0.25)  # a legitimate per-pair function: valid
    assert _digest(fn) != _digest(load_loss(library.get("dpo").code))


def test_value_range_switch_is_seen_on_training_like_inputs():
    fn = _fn(VALUE_SWITCHES["policy_at_reference"])
    start = checks.make_regime("start", 16, 0.1, seed=0)
    dpo = load_loss(library.get("dpo").code)
    assert not torch.allclose(fn(*start, 0.1), dpo(*start, 0.1))  # the regime reaches the switch


@pytest.mark.parametrize("name", sorted(BATCH_VALUE_SWITCHES))
def test_batch_level_value_switches_are_refused(name):
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_consistent(_fn(BATCH_VALUE_SWITCHES[name]), 2.0)
    assert info.value.check == "batch-size"


def test_non_finite_only_on_training_ranges_is_refused():
    fn = _fn(RATIO + f"    return {DPO} + torch.log(ratio.abs() - 0.1).clamp(max=0.0) * 0.0\n")
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_finite_and_gradients(fn, 2.0)
    assert info.value.check == "finite" and "training-like" in info.value.message


@pytest.mark.parametrize("size", [512])
def test_switch_at_512_is_refused(size):
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_consistent(_fn(COUNT + f"    return torch.where(n == {size}, {ANTI}, {DPO})\n"), 2.0)
    assert info.value.check == "batch-size"


def test_switch_at_the_tasks_batch_size_is_refused_when_the_task_says_it():
    fn = _fn(COUNT + f"    return torch.where(n == 48, {ANTI}, {DPO})\n")
    checks.check_consistent(fn, 2.0)  # not a size the checks use on their own
    with pytest.raises(checks.CheckFailure) as info:
        checks.run_unit_checks(fn, 0.25, batch_sizes=(48,))
    assert info.value.check == "batch-size"


def test_each_check_adds_a_random_size():
    drawn = [set(consistency.check_sizes((48,))) - {*consistency.SIZES, 48} for _ in range(20)]
    assert all(len(d) == 1 and consistency.RANDOM_SIZES[0] <= d.copy().pop() <= consistency.RANDOM_SIZES[1]
               for d in drawn)
    assert len({d.pop() for d in drawn}) > 1  # not a fixed size a loss could avoid


def test_a_loss_that_recognises_duplicated_pairs_is_refused():
    # batch statistics when the batch holds copies (what the old checks fed), a batch-size switch otherwise
    fn = _fn(DUPLICATES + COUNT + f"    return torch.where(copies, {DPO} + 0.0 * margin.mean(), "
                                  f"torch.where(n == 16, {ANTI}, {DPO}))\n")
    with pytest.raises(checks.CheckFailure) as info:
        checks.check_consistent(fn, 2.0)
    assert info.value.check == "batch-size"
    with pytest.raises(Inconsistent) as caught:  # and in training (the guard copies the real batch)
        TrainingGuard(fn)(*_training_batch(16), 0.1)
    assert caught.value.rule == "batch-size"


def test_the_watched_pairs_sit_at_random_places():
    base = consistency.base_pairs(0.1)
    places = {tuple(consistency.embedded(base, 64, 0.1, turn=0)[1].tolist()) for _ in range(5)}
    assert len(places) > 1


def test_a_position_switch_is_refused():
    # anti-DPO on the first pair only: the watched pairs used to sit at the front of every batch
    fn = _fn(f"    first = torch.ones_like(margin).cumsum(0) == 1\n    return torch.where(first, {DPO}, {ANTI})\n")
    with pytest.raises(checks.CheckFailure):
        checks.run_unit_checks(fn, 0.25)


def test_a_repeated_candidate_is_answered_from_the_cache(monkeypatch):
    from discovery.sandbox import validation

    calls = []
    real = validation._validate
    monkeypatch.setattr(validation, "_validate", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(validation, "_CACHE", {})
    code = make("    return torch.log(margin - 1000)\n")  # refused by a check (complete: cached)
    first = validation.validate(code)
    assert validation.validate(code) is first and len(calls) == 1
    assert validation.validate(code, batch_sizes=(48,)) is not first and len(calls) == 2  # other settings
    assert validation.validate(code, cache=False) is not first and len(calls) == 3
