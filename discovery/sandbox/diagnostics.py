"""Descriptive properties of a valid loss (recorded, never rejections), and its loss curve."""

from __future__ import annotations

from collections.abc import Callable

import torch

from discovery.sandbox.checks import make_inputs

GRID = torch.linspace(-20, 20, 81)
BETA = 0.1
LOGIT_SWEEP = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SHAPE_LOGITS = (-2.0, 0.0, 2.0, 5.0)  # beta * margin where the prompt shows a loss's value and slope


def _values(fn: Callable, margins, beta: float = BETA, delta=(0.0, 0.0, 0.0, 0.0)) -> torch.Tensor:
    """Loss values on a batch with these margins; `delta` is added to the four inputs afterwards."""
    inputs, b = make_inputs(margins, beta, dtype=torch.float64, grad=False, seed=11)
    inputs = [t + d for t, d in zip(inputs, delta, strict=True)]
    return fn(*inputs, b).detach().double()


def curve(fn: Callable, beta: float, margins) -> dict[str, list[float]]:
    """Loss and d loss / d margin along `margins` (one batch; d/d policy_chosen_logps = d/d margin)."""
    inputs, b = make_inputs(margins, beta, dtype=torch.float64, seed=12)
    out = fn(*inputs, b)
    (grad,) = torch.autograd.grad(out.sum(), inputs[:1], allow_unused=True)
    grad = torch.zeros_like(inputs[0]) if grad is None else grad
    return {"margin": [float(m) for m in margins], "loss": out.detach().double().tolist(),
            "dloss": grad.tolist()}


def shape(fn: Callable, beta: float = BETA) -> dict[str, list[float]]:
    """Loss and d loss / d margin at beta * margin = SHAPE_LOGITS (what the proposer's prompt shows)."""
    found = curve(fn, beta, [logit / beta for logit in SHAPE_LOGITS])
    return {"logit": list(SHAPE_LOGITS), "loss": found["loss"], "dloss": found["dloss"]}


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))


def _sweep_inputs(logit: float) -> list[torch.Tensor]:
    return make_inputs([logit / BETA, -logit / BETA], BETA, seed=13)[0]


def max_finite_logit(fn: Callable, independent: bool = False) -> float:
    """The largest |beta*margin| (float32, beta=0.1) at which loss and gradients stay finite at both signs.

    `independent` (each pair's loss does not depend on the others): the whole sweep in one call."""
    if independent:
        try:
            return _max_finite_logit_at_once(fn)
        except Exception:  # noqa: BLE001 - the sweep below finds where it fails
            pass
    best = 0.0
    for logit in LOGIT_SWEEP:
        inputs, b = _sweep_inputs(logit), BETA
        try:
            out = fn(*inputs, b)
            grads = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True)
        except Exception:  # noqa: BLE001 - a failure simply ends the sweep
            break
        finite = bool(torch.isfinite(out).all()) and all(g is None or bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            break
        best = float(logit)
    return best


def _max_finite_logit_at_once(fn: Callable) -> float:
    """The sweep's pairs (the same inputs) in one batch: the last logit before the first non-finite pair."""
    parts = [_sweep_inputs(logit) for logit in LOGIT_SWEEP]
    inputs = [torch.cat(ts).detach().requires_grad_(i < 2) for i, ts in enumerate(zip(*parts, strict=True))]
    out = fn(*inputs, BETA)
    grads = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True)
    finite = torch.isfinite(out.detach()).reshape(len(LOGIT_SWEEP), 2).all(dim=1)
    for g in grads:
        if g is not None:
            finite &= torch.isfinite(g).reshape(len(LOGIT_SWEEP), 2).all(dim=1)
    best = 0.0
    for logit, ok in zip(LOGIT_SWEEP, finite.tolist(), strict=True):
        if not ok:
            break
        best = float(logit)
    return best


def _values_at_once(fn: Callable, deltas) -> list[torch.Tensor]:
    """`_values(fn, GRID, delta=d)` for each of `deltas`, in one call (a batch-independent loss)."""
    inputs, b = make_inputs(GRID, BETA, dtype=torch.float64, grad=False, seed=11)
    batch = [torch.cat([t + d[k] for d in deltas]) for k, t in enumerate(inputs)]
    return list(fn(*batch, b).detach().double().reshape(len(deltas), len(GRID)).unbind(0))


def batch_dependent(fn: Callable, batch: torch.Tensor) -> bool:
    """Does a pair's loss change when it is computed alone instead of in the batch?"""
    inputs, b = make_inputs(GRID, BETA, dtype=torch.float64, grad=False, seed=11)
    picks = list(range(0, len(GRID), 10))
    alone = torch.cat([fn(*[t[i:i + 1] for t in inputs], b).detach().double().reshape(-1) for i in picks])
    return not _close(alone, batch[picks])


def diagnose(fn: Callable) -> dict:
    batch = _values(fn, GRID)
    diffs = batch[1:] - batch[:-1]
    second = batch[2:] - 2 * batch[1:-1] + batch[:-2]
    scale = float(batch.abs().max()) or 1.0
    at_zero = curve(fn, BETA, [0.0])
    same_logit = _values(fn, GRID / 5, beta=BETA * 5)
    dependent = batch_dependent(fn, batch)
    deltas = ((0, 0, 3.0, 0), (0, 0, 0, 3.0), (2.0, 2.0, 0, 0))
    moved = None
    if not dependent:  # one call instead of three (the same pairs, each on its own row)
        try:
            moved = _values_at_once(fn, deltas)
        except Exception:  # noqa: BLE001 - one call per delta below
            moved = None
    if moved is None or any(m.shape != batch.shape for m in moved):
        moved = [_values(fn, GRID, delta=d) for d in deltas]
    return {
        "slope_at_zero": at_zero["dloss"][0],
        "loss_at_zero": at_zero["loss"][0],
        "monotonic": bool((diffs <= 1e-9 * scale).all()),
        "convex": bool((second >= -1e-7 * scale).all()),
        "batch_dependent": dependent,
        "uses_reference": not (_close(batch, moved[0]) and _close(batch, moved[1])),
        "margin_only": _close(batch, moved[2]),
        "beta_first": _close(batch, same_logit),
        "max_finite_logit": max_finite_logit(fn, independent=not dependent),
        "shape": shape(fn),
    }
