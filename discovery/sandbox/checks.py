"""Layer 3: the unit checks (shape, finiteness, gradients, purity, determinism, speed). Run inside the child."""

from __future__ import annotations

import math
import signal
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from discovery.sandbox.loader import FILENAME

BATCH_SIZES = (1, 2, 7, 64)
BETAS = (0.01, 0.05, 0.1, 0.5, 1.0)
LOGP_RANGE = (-500.0, -5.0)
MARGIN_RANGE = (-20.0, 20.0)


@dataclass
class CheckFailure(Exception):
    check: str
    message: str
    line: int | None = None

    def to_dict(self) -> dict:
        return {"check": self.check, "message": self.message, "line": self.line}


class CallTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Interrupt a Python-level endless loop in the candidate after `seconds` (SIGALRM, child only)."""
    previous = None
    if not _ALARM:  # installed once per process: two syscalls less on each of the ~100 calls of a check
        previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if previous is not None:
            if previous in (signal.SIG_DFL, signal.SIG_IGN, None):
                _ALARM.append(True)  # nobody else used SIGALRM: keep ours (harmless without a timer)
            else:
                signal.signal(signal.SIGALRM, previous)


_ALARM: list[bool] = []


def _raise_timeout(signum, frame):
    raise CallTimeout()


def candidate_line(exc: BaseException) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    return frames[-1].lineno if frames else None


_MADE: dict[tuple, list[torch.Tensor]] = {}  # deterministic inputs, built once per process (warm server)


def _fresh(key: tuple, build: Callable[[], list[torch.Tensor]], grad: bool) -> list[torch.Tensor]:
    """Copies of the cached inputs for `key` (a candidate may edit its own copies, never the cache)."""
    made = _MADE.get(key)
    if made is None:
        made = _MADE[key] = [t.detach() for t in build()]
        if len(_MADE) > 512:
            _MADE.pop(next(iter(_MADE)))
    tensors = [t.clone() for t in made]
    for t in tensors[:2]:
        t.requires_grad_(grad)
    return tensors


def make_inputs(margins, beta: float, dtype=torch.float32, grad: bool = True, seed: int = 0,
                shift: float = 0.0) -> tuple[list[torch.Tensor], float]:
    """Realistic summed log-probs in LOGP_RANGE whose margins are exactly `margins`."""
    margins = torch.as_tensor(margins, dtype=torch.float64)
    key = ("grid", tuple(margins.tolist()), dtype, seed, float(shift))
    return _fresh(key, lambda: _build_inputs(margins, dtype, seed, shift), grad), beta


def _build_inputs(margins: torch.Tensor, dtype, seed: int, shift: float) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    low, high = LOGP_RANGE[0] + 25, LOGP_RANGE[1] - 25
    ref_c = torch.empty(len(margins), dtype=torch.float64).uniform_(low, high, generator=gen) + shift
    ref_r = torch.empty(len(margins), dtype=torch.float64).uniform_(low, high, generator=gen) + shift
    drift = torch.empty(len(margins), dtype=torch.float64).uniform_(-3, 3, generator=gen)
    pol_c = ref_c + drift + margins / 2
    pol_r = ref_r + drift - margins / 2
    return [t.to(dtype) for t in (pol_c, pol_r, ref_c, ref_r)]


REGIMES = ("checks", "start", "late", "long", "near")
# step 0 of training: every pair of the batch exactly at the reference (a batch of its own, never mixed)
AT_REFERENCE = "reference"


def make_regime(regime: str, n: int, beta: float, seed: int, grad: bool = True, dtype=torch.float32
                ) -> list[torch.Tensor]:
    """`n` pairs as training produces them: summed log-probs of real completions (-300..-1).

    "start": the policy is still the reference (log-ratios within +-0.05, margins near 0); "late": chosen
    pushed up and rejected down by tens of nats (|beta * margin| up to ~10 at beta 0.1); "checks": the
    check grid (`make_inputs`, margins -12..12); "long": long answers of a 7B model (-3000..-100: up to 1024
    tokens), the first half at step 0 of training (the policy exactly the reference), the rest late; "near":
    the first steps (log-ratios of 1e-7..1e-2 nats, log-uniform, either sign); "reference" (`AT_REFERENCE`):
    step 0, every pair exactly at the reference (a switch on "the whole batch at the reference" sees it)."""
    if regime == "checks":
        return make_inputs(torch.linspace(-12, 12, n), beta, dtype, grad, seed)[0]
    return _fresh((regime, n, dtype, seed), lambda: _build_regime(regime, n, dtype, seed), grad)


def _build_regime(regime: str, n: int, dtype, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def uniform(low, high):
        return torch.empty(n, dtype=torch.float64).uniform_(low, high, generator=gen)

    if regime == "long":
        ref_c, ref_r = uniform(-3000.0, -100.0), uniform(-3000.0, -100.0)
        up, down = uniform(-5.0, 40.0), uniform(-5.0, 60.0)
        up[:n // 2] = 0.0
        down[:n // 2] = 0.0
        return [t.to(dtype) for t in (ref_c + up, ref_r - down, ref_c, ref_r)]
    ref_c, ref_r = uniform(-300.0, -1.0), uniform(-300.0, -1.0)
    if regime == AT_REFERENCE:
        return [t.to(dtype) for t in (ref_c.clone(), ref_r.clone(), ref_c, ref_r)]
    if regime == "near":
        def tiny():
            return torch.exp(uniform(math.log(1e-7), math.log(1e-2))) * torch.sign(uniform(-1.0, 1.0))
        return [t.to(dtype) for t in (ref_c + tiny(), ref_r + tiny(), ref_c, ref_r)]
    if regime == "start":
        pol_c, pol_r = ref_c + uniform(-0.05, 0.05), ref_r + uniform(-0.05, 0.05)
    else:
        pol_c = (ref_c + uniform(-5.0, 40.0)).clamp(max=-0.01)
        pol_r = ref_r - uniform(-5.0, 60.0)
    return [t.to(dtype) for t in (pol_c, pol_r, ref_c, ref_r)]


def call(fn: Callable, inputs: list[torch.Tensor], beta: float, seconds: float):
    try:
        with time_limit(seconds):
            return fn(*inputs, beta)
    except CallTimeout:
        raise CheckFailure("speed", f"the loss did not return within {seconds:g} s (an endless loop?)") from None
    except CheckFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - any candidate error becomes an actionable message
        line = candidate_line(exc)
        where = f"line {line}: " if line else ""
        text = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, MemoryError) or "alloc" in text.lower():
            raise CheckFailure("memory", f"{where}the loss tried to allocate too much memory ({text[-80:]}); "
                               "allocate nothing larger than the inputs", line) from None
        if "in-place" in text or "inplace" in text:
            raise CheckFailure("inplace", f"{where}the loss edits an input in place ({text}); "
                               "compute new tensors instead", line) from None
        raise CheckFailure("runs", f"{where}{type(exc).__name__}: {text}", line) from None


def check_output(out, batch: int) -> torch.Tensor:
    if isinstance(out, float | int) and not isinstance(out, bool):
        raise CheckFailure("type", "the loss returns a Python number; return a torch tensor of per-pair "
                           "losses, shape (B,)")
    if not isinstance(out, torch.Tensor):
        raise CheckFailure("type", f"the loss returns {type(out).__name__}; return a torch tensor of shape (B,)")
    if out.dim() == 0:
        raise CheckFailure("shape", "return per-pair losses, shape (B,), not the mean")
    if tuple(out.shape) != (batch,):
        raise CheckFailure("shape", f"for B={batch} inputs the loss has shape {tuple(out.shape)}; "
                           f"return shape (B,) = ({batch},)")
    if not out.is_floating_point():
        raise CheckFailure("type", f"the loss has dtype {out.dtype}; return a floating tensor")
    return out


def check_pure(fn: Callable, seconds: float) -> None:
    """Inputs not modified in place, output not aliasing an input (B=7, no grad so in-place is possible)."""
    inputs, beta = make_inputs(torch.linspace(-5, 5, 7), 0.1, grad=False, seed=1)
    before = [t.clone() for t in inputs]
    versions = [t._version for t in inputs]
    out = check_output(call(fn, inputs, beta, seconds), 7)
    for name, t, old, version in zip(PARAM_NAMES, inputs, before, versions, strict=True):
        if t._version != version or not torch.equal(t, old):
            raise CheckFailure("inplace", f"the loss modifies `{name}` in place; compute new tensors instead")
    storages = {t.untyped_storage().data_ptr() for t in inputs}
    if out.untyped_storage().data_ptr() in storages:
        raise CheckFailure("alias", "the loss returns (a view of) an input tensor; return a new tensor")


PARAM_NAMES = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps",
               "reference_rejected_logps")


def check_shapes(fn: Callable, seconds: float) -> None:
    for batch in BATCH_SIZES:
        inputs, beta = make_inputs(torch.linspace(-10, 10, batch), 0.1, seed=batch)
        check_output(call(fn, inputs, beta, seconds), batch)


def check_finite_and_gradients(fn: Callable, seconds: float) -> None:
    """Finite loss and gradients on the realistic grid; gradients exist and are not all zero."""
    margins = torch.linspace(*MARGIN_RANGE, 64)
    nonzero = [False, False]
    grid = len(margins)
    for beta in BETAS:  # one batch per beta: the grid, then 16 pairs from each of training's ranges
        parts = [make_inputs(margins, beta, seed=int(beta * 1000))[0]]
        parts += [make_regime(r, 16, beta, seed=int(beta * 1000) + i) for i, r in enumerate(REGIMES[1:])]
        inputs = [torch.cat(ts).detach().requires_grad_(i < 2) for i, ts in enumerate(zip(*parts, strict=True))]
        out = check_output(call(fn, inputs, beta, seconds), inputs[0].shape[0])
        if not torch.isfinite(out).all():
            bad = ~torch.isfinite(out.detach())
            if bad[:grid].any():
                where = f"margins {[round(m, 2) for m in margins[bad[:grid]][:3].tolist()]} (log-probs in {LOGP_RANGE})"
            else:
                where = "training-like inputs (log-probs -3000..-1, policy at the reference or far from it)"
            raise CheckFailure("finite", f"the loss is NaN or Inf at beta={beta:g}, {where}; "
                               "keep it finite (e.g. logsigmoid, clamp)")
        if not out.requires_grad:
            raise CheckFailure("gradient", "the loss has no gradient w.r.t. the policy log-probs "
                               "(constant or detached); it must depend on them")
        try:
            with time_limit(seconds):
                grads = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True)
        except CallTimeout:
            raise CheckFailure("speed", f"the backward pass did not finish within {seconds:g} s; "
                               "use a few vectorised tensor operations, no Python loops") from None
        except RuntimeError as exc:
            text = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise CheckFailure("gradient", f"backward failed: {text}") from None
        for i, (name, g) in enumerate(zip(PARAM_NAMES[:2], grads, strict=True)):
            if g is None:
                raise CheckFailure("gradient", f"the loss does not depend on `{name}` (no gradient); "
                                   "use both policy log-probs")
            if not torch.isfinite(g).all():
                raise CheckFailure("finite", f"the gradient w.r.t. `{name}` is NaN or Inf at beta={beta:g}; "
                                   "keep the loss smooth and bounded")
            nonzero[i] = nonzero[i] or bool((g != 0).any())
    check_at_reference(fn, seconds)
    for name, flag in zip(PARAM_NAMES[:2], nonzero, strict=True):
        if not flag:
            raise CheckFailure("gradient", f"the gradient w.r.t. `{name}` is zero everywhere on the grid; "
                               "the loss must respond to it")


def check_at_reference(fn: Callable, seconds: float) -> None:
    """Step 0 of training: a batch with every pair exactly at the reference gets a finite loss and gradients."""
    for beta in (BETAS[0], 0.1, BETAS[-1]):
        inputs = make_regime(AT_REFERENCE, 16, beta, seed=int(beta * 1000) + 7)
        out = check_output(call(fn, inputs, beta, seconds), 16)
        grads = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True) if out.requires_grad else ()
        if not torch.isfinite(out).all() or not all(g is None or torch.isfinite(g).all() for g in grads):
            raise CheckFailure("finite", f"the loss or its gradient is NaN or Inf at beta={beta:g} on a batch with "
                               "every pair exactly at the reference (step 0 of training); keep it finite")


def check_deterministic(fn: Callable, seconds: float) -> None:
    inputs, beta = make_inputs(torch.linspace(-10, 10, 16), 0.1, grad=False, seed=3)
    first = call(fn, inputs, beta, seconds)
    second = call(fn, inputs, beta, seconds)
    if not torch.equal(first, second):
        raise CheckFailure("deterministic", "two calls with the same inputs give different results; "
                           "no randomness or state")


def check_speed(fn: Callable, max_seconds: float, seconds: float) -> float:
    inputs, beta = make_inputs(torch.linspace(-10, 10, 64), 0.1, seed=4)
    start = time.perf_counter()
    out = call(fn, inputs, beta, seconds)
    out.sum().backward()
    took = time.perf_counter() - start
    if took > max_seconds:
        raise CheckFailure("speed", f"forward+backward at B=64 took {took:.3f} s (limit {max_seconds:g} s); "
                           "use vectorised tensor operations, no Python loops")
    return took


def check_consistent(fn: Callable, seconds: float, sizes: tuple[int, ...] = (), sweep: bool = False) -> bool:
    """Same per-pair loss with and without grad and at B in 8..512, the task's `sizes` and one random size
    (beyond batch statistics), on the check grid and training's value ranges; `sweep` (the one-shot sweep of
    `discovery validate FILE` and `discovery export`): no jump at any of the common betas either. Returns
    whether the loss is batch-independent."""
    from discovery.sandbox.consistency import Inconsistent, check_betas
    from discovery.sandbox.consistency import check_consistent as consistent

    try:
        independent = consistent(fn, make_inputs, lambda f, inputs, beta: call(f, inputs, beta, seconds),
                                 tuple(sizes))
        if sweep:
            check_betas(fn, lambda f, inputs, beta: call(f, inputs, beta, seconds))
    except Inconsistent as exc:
        raise CheckFailure(exc.rule, exc.message) from None
    return independent


def run_unit_checks(fn: Callable, max_call_seconds: float, batch_sizes: tuple[int, ...] = (),
                    sweep: bool = False) -> tuple[float, bool]:
    """Raise CheckFailure at the first failing check; returns the B=64 forward+backward time and whether the
    loss is batch-independent (`check_consistent`).

    `batch_sizes`: the sizes training will call the loss with (the task's batch size), checked too;
    `sweep`: the one-shot sweep's betas too (`check_consistent`)."""
    seconds = max(1.0, 4 * max_call_seconds)
    check_pure(fn, seconds)
    check_shapes(fn, seconds)
    independent = check_consistent(fn, seconds, batch_sizes, sweep)
    check_finite_and_gradients(fn, seconds)
    check_deterministic(fn, seconds)
    return check_speed(fn, max_call_seconds, seconds), independent
