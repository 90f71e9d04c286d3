"""Diagnostics computed in one call for batch-independent losses equal the per-call ones."""

from __future__ import annotations

import pytest

from discovery import library
from discovery.sandbox import diagnostics
from discovery.sandbox.loader import load_loss

EXP = '''import torch

def exp_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return torch.exp(-beta * margin)
'''
MEAN_CENTRED = '''import torch
import torch.nn.functional as F

def centred(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * (margin - margin.mean()))
'''


@pytest.mark.parametrize("name", ["dpo", "ipo", "slic", "robust"])
def test_one_call_equals_one_call_per_probe(name):
    fn = load_loss(library.get(name).code)
    assert diagnostics.max_finite_logit(fn, independent=True) == diagnostics.max_finite_logit(fn)
    deltas = ((0, 0, 3.0, 0), (0, 0, 0, 3.0), (2.0, 2.0, 0, 0))
    at_once = diagnostics._values_at_once(fn, deltas)
    for delta, values in zip(deltas, at_once, strict=True):
        assert diagnostics._close(values, diagnostics._values(fn, diagnostics.GRID, delta=delta))


def test_the_sweep_stops_where_the_loss_overflows():
    fn = load_loss(EXP)  # exp(10) at beta*margin = -100 is fine, exp(100) overflows float32 (> 3.4e38)
    assert diagnostics.max_finite_logit(fn, independent=True) == diagnostics.max_finite_logit(fn) == 50.0


def test_a_batch_dependent_loss_is_diagnosed_per_call():
    fn = load_loss(MEAN_CENTRED)
    diag = diagnostics.diagnose(fn)
    assert diag["batch_dependent"] is True
    batch = diagnostics._values(fn, diagnostics.GRID)
    per_call = [diagnostics._close(batch, diagnostics._values(fn, diagnostics.GRID, delta=d))
                for d in ((0, 0, 3.0, 0), (0, 0, 0, 3.0), (2.0, 2.0, 0, 0))]
    assert diag["uses_reference"] is not (per_call[0] and per_call[1])
    assert diag["margin_only"] is per_call[2]
    assert diag["max_finite_logit"] == diagnostics.max_finite_logit(fn)
