"""Behavioural fingerprint: loss and gradients on a fixed probe set, rounded and hashed; a distance."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

PROBE_BETAS = (0.05, 0.1, 0.5)
PROBE_MARGINS = (-40.0, -20.0, -10.0, -5.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0)
SINGLE_MARGINS = (-2.0, 0.0, 2.0)
REGIME_PAIRS = 8  # pairs from each of training's ranges (checks.make_regime: policy at the reference, late, near)
DIGITS = 6  # significant digits kept before hashing
ZERO = 1e-8  # smaller values hash as 0: rewrites differ there by rounding (log(sigmoid) far in the tail)


def probe(fn: Callable, betas: Sequence[float] = ()) -> tuple[list[float], list[float]]:
    """(all values hashed into the fingerprint, the gradient values used for distances); float64 inputs.

    `betas`: the betas training will use (the run's sweep), probed besides PROBE_BETAS: a loss that is
    another function only between two probe betas (a window around 0.2) is another loss there."""
    import torch

    from discovery.sandbox.checks import make_inputs, make_regime

    hashed: list[float] = []
    grads: list[float] = []
    for beta in sorted({*PROBE_BETAS, *(float(b) for b in betas)}):
        configs = [(PROBE_MARGINS, 0.0, 7), (PROBE_MARGINS, 40.0, 8)]
        configs += [((m,), 0.0, 9) for m in SINGLE_MARGINS]
        batches = [make_inputs(margins, beta, dtype=torch.float64, seed=seed, shift=shift)[0]
                   for margins, shift, seed in configs]
        # training's ranges: a loss that is another function there is another loss
        batches += [make_regime(regime, REGIME_PAIRS, beta, seed=30 + i, dtype=torch.float64)
                    for i, regime in enumerate(("start", "late", "long", "near"))]
        sizes = [b[0].shape[0] for b in batches]
        inputs = [torch.cat(ts).detach().requires_grad_(k < 2) for k, ts in enumerate(zip(*batches, strict=True))]
        out = fn(*inputs, beta)  # one call per beta (one batch of all probes): the probe's cost is per call
        g_c, g_r = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True)
        g_c = torch.zeros_like(inputs[0]) if g_c is None else g_c
        g_r = torch.zeros_like(inputs[1]) if g_r is None else g_r
        parts = [torch.split(t.detach().double().reshape(-1), sizes) for t in (out, g_c, g_r)]
        for i, (o, c, r) in enumerate(zip(*parts, strict=True)):
            hashed += o.tolist() + c.tolist() + r.tolist()
            if i == 0:
                grads += c.tolist() + r.tolist()
        hashed += _at_reference(fn, beta)
    return hashed, grads


def alone(fn: Callable) -> list[float]:
    """Gradients of the SINGLE_MARGINS pairs each alone (B=1, beta 0.1): a batch-dependent loss's probes get
    these too, so its probe vector is longer than a batch-independent loss's and `distance` between the two
    is inf: never a near-duplicate of DPO however it behaves on the probe batch."""
    import torch

    from discovery.sandbox.checks import make_inputs

    found: list[float] = []
    for m in SINGLE_MARGINS:
        inputs = make_inputs((m,), 0.1, dtype=torch.float64, seed=9)[0]
        grads = torch.autograd.grad(fn(*inputs, 0.1).sum(), inputs[:2], allow_unused=True)
        found += [0.0 if g is None else float(g.reshape(-1)[0]) for g in grads]
    return found


def _at_reference(fn: Callable, beta: float) -> list[float]:
    """Loss and gradients on a batch of its own with every pair exactly at the reference (step 0 of training):
    a loss that switches on "the whole batch at the reference" is another loss, not DPO's duplicate."""
    import torch

    from discovery.sandbox.checks import AT_REFERENCE, make_regime

    inputs = make_regime(AT_REFERENCE, REGIME_PAIRS, beta, seed=40, dtype=torch.float64)
    out = fn(*inputs, beta)
    grads = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs[:2], grads, strict=True)]
    return [v for t in (out, *grads) for v in t.detach().double().reshape(-1).tolist()]


def _token(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) < ZERO:
        return "0"
    return f"{value:.{DIGITS - 1}e}"


def digest(values: Sequence[float]) -> str:
    text = ",".join(_token(float(v)) for v in values)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Scale-free distance of two probe vectors: RMS of the difference after scaling each to unit RMS.

    0 = the same training signal up to a learning-rate factor; ~1.41 = unrelated; 2 = opposite; inf if
    either vector is missing, of another length or not finite.
    """
    if not a or not b or len(a) != len(b):
        return math.inf
    if not all(math.isfinite(x) for x in list(a) + list(b)):
        return math.inf
    rms_a = math.sqrt(sum(x * x for x in a) / len(a))
    rms_b = math.sqrt(sum(x * x for x in b) / len(b))
    if rms_a < ZERO or rms_b < ZERO:
        return 0.0 if rms_a < ZERO and rms_b < ZERO else math.inf
    return math.sqrt(sum((x / rms_a - y / rms_b) ** 2 for x, y in zip(a, b, strict=True)) / len(a))
