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


def max_finite_logit(fn: Callable) -> float:
    """The largest |beta*margin| (float32, beta=0.1) at which loss and gradients stay finite at both signs."""
    best = 0.0
    for logit in LOGIT_SWEEP:
        inputs, b = make_inputs([logit / BETA, -logit / BETA], BETA, seed=13)
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
    return {
        "slope_at_zero": at_zero["dloss"][0],
        "loss_at_zero": at_zero["loss"][0],
        "monotonic": bool((diffs <= 1e-9 * scale).all()),
        "convex": bool((second >= -1e-7 * scale).all()),
        "batch_dependent": batch_dependent(fn, batch),
        "uses_reference": not (_close(batch, _values(fn, GRID, delta=(0, 0, 3.0, 0)))
                               and _close(batch, _values(fn, GRID, delta=(0, 0, 0, 3.0)))),
        "margin_only": _close(batch, _values(fn, GRID, delta=(2.0, 2.0, 0, 0))),
        "beta_first": _close(batch, same_logit),
        "max_finite_logit": max_finite_logit(fn),
        "shape": shape(fn),
    }
