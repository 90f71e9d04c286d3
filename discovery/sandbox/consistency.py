"""A loss may not behave differently in training than in the checks.

Two halves, sharing the comparisons:

- `check_consistent` (a unit check, in the sandbox child): 8 watched pairs from the check grid and from
  training's value ranges (policy at the reference; large margins late) get the same per-pair loss with
  and without gradients, alone and at random places among pairs of each range, in batches of 8, 16, 64,
  256, 512, the task's own batch size and one random size per check; a loss that depends on its batch
  must do so through batch statistics only: copying the batch k times (exactly, or each copy moved by a
  hair so that no pair is duplicated) and a batch of copies of one pair leave each pair's loss (nearly)
  unchanged, at every size.
- `TrainingGuard` (in the trainer, on every call): the inputs are not edited in place and not aliased,
  the call returns within a time limit, the loss is the same without gradients, it does not jump at exactly
  the training beta (`jumps_at`; the one-shot sweep checks `SWEEP_BETAS` the same way), and a loss that was
  batch-independent in the checks stays batch-independent on the real batches (halved, and real pairs
  among pairs from the checks: `among_check_pairs`); a batch-dependent one keeps its loss when the real
  batch is copied twice.
"""

from __future__ import annotations

import ctypes
import random
import threading
import time
from collections.abc import Callable

import torch

SIZES = (8, 16, 64, 256, 512)  # TRL's default batch (8) among them; the task's own sizes are added by the caller
RANDOM_SIZES = (257, 511)  # one more size per check, drawn from here: a switch at a fixed size cannot be aimed at
EXACT = {"rtol": 1e-5, "atol": 1e-6}
STATS_RTOL = 0.05  # batch-statistic losses: tolerance relative to the largest per-pair loss
STATS_ATOL = 1e-4
BASE = (("checks", 3), ("start", 3), ("late", 2))  # the 8 watched pairs: the check grid and training's ranges
FILLERS = ("checks", "start", "late", "long")  # what surrounds them, in turn (long answers: -3000..-100)
ALONE = (0, 3, 6)  # one watched pair of each range also computed alone (B=1)


class Inconsistent(Exception):
    """The loss behaves differently between two calls that only differ in what a loss may not see."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule
        self.message = message


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().double(), b.detach().double()
    return a.shape == b.shape and bool(torch.allclose(a, b, equal_nan=True, **EXACT))


def stats_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        return False
    scale = float(torch.nan_to_num(a.abs(), nan=0.0, posinf=0.0).max()) if a.numel() else 0.0
    return bool(torch.allclose(a, b, rtol=0.0, atol=STATS_ATOL + STATS_RTOL * scale, equal_nan=True))


def _no_grad(fn: Callable, tensors, beta: float) -> torch.Tensor:
    with torch.no_grad():
        return fn(*[t.detach().clone() for t in tensors], beta)


def _tile(tensors, k: int):
    return [t.detach().repeat(k) for t in tensors]


def _first(out: torch.Tensor, n: int) -> torch.Tensor:
    return out.detach().reshape(-1)[:n] if out.dim() == 1 else out.detach()


def _pick(out: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return out.detach().reshape(-1)[index] if out.dim() == 1 and out.numel() > int(index.max()) else out.detach()


def base_pairs(beta: float, grad: bool = True) -> list[torch.Tensor]:
    """The 8 watched pairs: 3 from the check grid, 3 with the policy at the reference, 2 late in training."""
    from discovery.sandbox.checks import make_regime

    parts = [make_regime(regime, n, beta, seed=21 + i, grad=False) for i, (regime, n) in enumerate(BASE)]
    return [torch.cat(ts).requires_grad_(grad and i < 2) for i, ts in enumerate(zip(*parts, strict=True))]


def embedded(base, size: int, beta: float, turn: int, grad: bool = True):
    """A batch of `size` with the base pairs at random places among filler pairs of one regime (below 8:
    the first `size` base pairs, shuffled).

    Returns (tensors, index of the base pairs in it)."""
    from discovery.sandbox.checks import make_regime

    n = base[0].shape[0]
    if size < n:
        order = torch.randperm(size)
        return [b.detach()[:size][order].requires_grad_(grad and i < 2) for i, b in enumerate(base)], \
            torch.argsort(order)
    filler = make_regime(FILLERS[turn % len(FILLERS)], size - n, beta, seed=size + turn, grad=False)
    order = torch.randperm(size)
    index = torch.argsort(order)[:n]  # base pair j lands where order == j
    tensors = [torch.cat([b.detach(), f])[order].requires_grad_(grad and i < 2)
               for i, (b, f) in enumerate(zip(base, filler, strict=True))]
    return tensors, index


def check_sizes(extra: tuple[int, ...] = ()) -> list[int]:
    """SIZES, the caller's (the task's batch size), and one drawn at random from RANDOM_SIZES."""
    drawn = random.SystemRandom().randint(*RANDOM_SIZES)
    return sorted({*SIZES, *(int(b) for b in extra if 1 < int(b) <= 4096), drawn})


def check_consistent(fn: Callable, make_inputs: Callable, call: Callable, sizes: tuple[int, ...] = ()) -> bool:
    """Raise Inconsistent when the per-pair loss depends on grad state or, beyond batch statistics, on B;
    returns whether it is batch-independent (each pair's loss the same alone and in every batch).

    `make_inputs` is kept for callers; the pairs come from `checks.make_regime` (check grid and training's
    ranges), embedded among pairs of every regime, at random places."""
    from discovery.sandbox.checks import make_regime

    beta = 0.1
    base = base_pairs(beta)
    alone = torch.cat([_first(call(fn, [t[i:i + 1].detach() for t in base], beta), 1) for i in ALONE])
    own = _first(call(fn, base, beta), 8)  # the 8 on their own (B=8): the reference at every other size
    same_in_float64(fn, call, base, beta, own)
    same_in_float64(fn, call, make_regime("long", 8, beta, seed=29), beta)  # float32 steps ~2e-4 at -3000
    independent = close(own[list(ALONE)], alone)
    sizes = check_sizes(sizes)
    for turn, size in enumerate(sizes):
        batch, index = embedded(base, size, beta, turn)
        with_grad = _pick(call(fn, batch, beta), index)
        without = _pick(call(lambda *a: _no_grad(fn, a[:4], a[4]), batch, beta), index)
        if not close(with_grad, without):
            raise Inconsistent("grad-mode", f"at B={size} the loss differs with and without gradients; "
                               "a loss may not depend on whether it is being trained")
        independent = independent and close(with_grad, own[:len(index)])
    if not independent:
        batch_statistics_only(fn, base, beta, call, sizes)
    return independent


def same_in_float64(fn: Callable, call: Callable, tensors, beta: float, own: torch.Tensor | None = None) -> None:
    """The pairs get the same loss (5 % of the largest) in float32 (checks, training) and float64 (the
    fingerprint's probes): no switch on the inputs' precision (`(x + 1e-10) == x`, `(x + 1e-4) == x` on long
    answers)."""
    n = tensors[0].shape[0]
    own = _first(call(fn, tensors, beta), n) if own is None else own
    wide = _first(call(fn, [t.detach().double().requires_grad_(i < 2) for i, t in enumerate(tensors)], beta), n)
    if stats_close(own, wide):
        return
    if not torch.isfinite(own).all():  # an overflow in float32 (exp of a large margin): not a switch
        raise Inconsistent("finite", "the loss is NaN or Inf in float32 on pairs from training's ranges (it "
                           "overflows; finite in float64); keep it finite (e.g. logsigmoid, clamp)")
    raise Inconsistent("dtype", f"the same {n} pairs get different losses in float32 and float64; a loss may "
                       "not depend on the inputs' precision (e.g. `(x + 1e-10) == x`)")


def jittered(tensors, k: int, seed: int):
    """k copies of the batch, each copy but the first moved by a different tiny amount (no exact duplicates)."""
    gen = torch.Generator().manual_seed(seed)
    n = tensors[0].shape[0]
    out = []
    for t in tensors:
        noise = torch.empty(n * k, dtype=torch.float64).uniform_(-1e-3, 1e-3, generator=gen)
        noise[:n] = 0.0
        out.append((t.detach().double().repeat(k) + noise).to(t.dtype))
    return out


def batch_statistics_only(fn: Callable, base, beta: float, call: Callable, sizes: list[int]) -> None:
    """A batch-dependent loss: copying the batch (exactly, or with each copy moved by a hair so that no pair
    is duplicated) and batches of copies of one pair leave each pair's loss (nearly) unchanged, at every
    checked size (copies of the batch where the size is a multiple of 8)."""
    first = _first(call(fn, base, beta), 8)
    ks = sorted({size // 8 for size in sizes if size % 8 == 0 and size > 8})
    for k in ks:
        copies = [("copied", _tile(base, k))]
        if k in (ks[0], ks[-1]):  # no exact duplicates: a loss may not tell copies from other pairs
            copies.append(("copied (not exactly)", jittered(base, k, seed=k)))
        for name, tiled in copies:
            if not stats_close(first, _first(call(fn, tiled, beta), 8)):
                raise Inconsistent("batch-size", f"the same 8 pairs get different losses at B=8 and when the "
                                   f"batch is {name} to B={8 * k}; a loss may depend on its batch only through "
                                   "batch statistics (e.g. `.mean()`, not `.sum()` or the batch size)")
    for i in ALONE:
        pair = [t[i:i + 1].detach() for t in base]
        single = _first(call(fn, pair, beta), 1)
        for size in sizes if i == 0 else (sizes[0], sizes[-1]):
            copies = _first(call(fn, _tile(pair, size), beta), size)
            if not stats_close(single.expand(size), copies):
                raise Inconsistent("batch-size", f"a batch of {size} copies of one pair gives it a different "
                                   "loss than the pair alone; a loss may depend on its batch only through "
                                   "batch statistics (e.g. `.mean()`, not `.sum()` or the batch size)")


# beta: a loss may be any function of beta, but not one that jumps at the exact value training uses
BETA_STEP = 1e-6  # relative: beta -+ this, the loss at beta must be the midpoint of its neighbours
BETA_RTOL = 1e-4  # of the largest per-pair loss; plus STATS_ATOL
SWEEP_BETAS = (0.01, 0.02, 0.025, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8,
               0.9, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.25, 10.0)  # the one-shot sweep's betas (CLI, export)


def jumps_at(fn: Callable, tensors, beta: float, out: torch.Tensor | None = None) -> bool:
    """Does the per-pair loss jump at exactly `beta` (e.g. `beta == 0.2`)? Its neighbours agree, it does not."""
    h = BETA_STEP * (abs(beta) or 1.0)
    here = _no_grad(fn, tensors, beta) if out is None else out.detach()
    up, down = _no_grad(fn, tensors, beta + h), _no_grad(fn, tensors, beta - h)
    if not (isinstance(here, torch.Tensor) and isinstance(up, torch.Tensor) and isinstance(down, torch.Tensor)):
        return False
    if here.shape != up.shape or up.shape != down.shape:
        return True
    mid = (up.double() + down.double()) / 2
    scale = float(torch.nan_to_num(mid.abs(), nan=0.0, posinf=0.0).max()) if mid.numel() else 0.0
    return not bool(torch.allclose(here.double(), mid, rtol=0.0, atol=STATS_ATOL + BETA_RTOL * scale,
                                   equal_nan=True))


def check_betas(fn: Callable, call: Callable, betas: tuple[float, ...] = SWEEP_BETAS) -> None:
    """Raise Inconsistent when the loss jumps at one of `betas` (on the 8 watched pairs)."""
    base = base_pairs(0.1, grad=False)
    for beta in betas:
        if call(lambda *a: torch.tensor(float(jumps_at(fn, a[:4], a[4]))), base, beta):
            raise Inconsistent("beta", f"the loss jumps at exactly beta={beta:g} (its value there is not between "
                               "its values at beta -+ 1e-6); a loss may not single out one beta")


class CallTimeLimit(Exception):
    pass


def _raise_in(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(CallTimeLimit))


class time_limit:  # noqa: N801 - used as a context manager like checks.time_limit
    """Interrupt the calling thread (any thread, not only the main one) after `seconds` of Python code.

    The exception is raised only while the block is active; it may surface in `__exit__` (still inside
    the caller's `try`), never after it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._active = False
        self._fired = False

    def _fire(self, thread_id: int) -> None:
        with self._lock:
            if self._active:
                self._fired = True
                _raise_in(thread_id)

    def __enter__(self):
        self._thread = threading.get_ident()
        self._active = True
        self._timer = threading.Timer(self.seconds, self._fire, args=(self._thread,))
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._active = False
        self._timer.cancel()
        if self._fired and exc[0] is None:  # fired after the block ended: drop the pending exception
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread), None)
        return False


def batch_independent(fn: Callable, make_inputs: Callable | None = None) -> bool:
    """Is each pair's loss the same alone and among other pairs at every size (as `check_consistent` sees)?"""
    beta = 0.1
    base = base_pairs(beta, grad=False)
    with torch.no_grad():
        alone = torch.cat([_first(fn(*[t[i:i + 1] for t in base], beta), 1) for i in ALONE])
        own = _first(fn(*base, beta), 8)
        if not close(own[list(ALONE)], alone):
            return False
        for turn, size in enumerate(check_sizes()):
            batch, index = embedded(base, size, beta, turn, grad=False)
            if not close(_pick(fn(*batch, beta), index), own):
                return False
    return True


AMONG = 64  # real pairs re-computed in a batch of this size, the rest pairs from the checks
WATCHED = 8  # real pairs per training call


def among_check_pairs(fn: Callable, out: torch.Tensor, inputs, beta: float, seed: int = 0) -> bool:
    """Do (up to) 8 real pairs keep their loss when they are put, at places drawn from `seed`, among pairs
    from the checks (the watched pairs and every regime, so the batch's statistics are the checks')?

    A loss that was batch-independent in the checks and switches on a statistic of the training batches
    (their spread, range, count of exact ties) is another loss there; halving the batch keeps that statistic.
    No global RNG is drawn (training's random state stays as it was)."""
    from discovery.sandbox.checks import make_regime

    batch = inputs[0].shape[0]
    pick = torch.linspace(0, batch - 1, min(WATCHED, batch)).round().long()
    gen = torch.Generator().manual_seed(seed)
    fill = AMONG - len(pick) - 8
    parts = [base_pairs(beta, grad=False)] + [make_regime(r, fill // len(FILLERS), beta, seed=90 + i, grad=False)
                                              for i, r in enumerate(FILLERS)]
    checks = [torch.cat(ts) for ts in zip(*parts, strict=True)]
    order = torch.randperm(len(pick) + checks[0].shape[0], generator=gen)
    tensors = [torch.cat([t.detach()[pick], c.to(device=t.device, dtype=t.dtype)])[order]
               for t, c in zip(inputs, checks, strict=True)]
    got = _no_grad(fn, tensors, beta)
    if not isinstance(got, torch.Tensor) or got.shape != tensors[0].shape:
        return False
    return close(out.detach().reshape(-1)[pick], got.reshape(-1)[torch.argsort(order)[:len(pick)]])


class TrainingGuard:
    """Wraps the candidate for the trainer: purity, per-call time limit and check/training consistency."""

    def __init__(self, fn: Callable, call_seconds: float = 5.0):
        from discovery.sandbox.checks import make_inputs

        self.fn = fn
        self.call_seconds = call_seconds
        try:
            with time_limit(call_seconds * 10):
                self.independent = batch_independent(fn, make_inputs)
        except Exception:  # noqa: BLE001 - a broken loss: the trainer's own checks report it on the first call
            self.independent = False
        self.calls = 0

    def __call__(self, chosen, rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
        tensors = [chosen, rejected, ref_chosen, ref_rejected]
        before = [t.detach().clone() for t in tensors]
        versions = [t._version for t in tensors]
        start = time.perf_counter()
        try:
            with time_limit(self.call_seconds):
                out = self.fn(*tensors, beta)
        except CallTimeLimit:
            raise Inconsistent("speed", f"a training call of the loss took over {self.call_seconds:g} s "
                               "(an endless loop?)") from None
        self.calls += 1
        took = time.perf_counter() - start
        for name, t, old, version in zip(("policy_chosen_logps", "policy_rejected_logps",
                                          "reference_chosen_logps", "reference_rejected_logps"),
                                         tensors, before, versions, strict=True):
            if t._version != version or not torch.equal(t.detach(), old):
                raise Inconsistent("inplace", f"in training the loss modified `{name}` in place")
        if not isinstance(out, torch.Tensor) or out.shape != chosen.shape:
            return out  # the trainer reports the type or shape error
        storages = {t.untyped_storage().data_ptr() for t in tensors}
        if out.untyped_storage().data_ptr() in storages:
            raise Inconsistent("alias", "in training the loss returned (a view of) an input tensor")
        try:
            with time_limit(max(self.call_seconds, 8 * took + 1.0)):
                self._compare(out, before, beta)
        except CallTimeLimit:
            raise Inconsistent("speed", "the loss's consistency re-check took too long") from None
        return out

    def _compare(self, out: torch.Tensor, inputs, beta: float) -> None:
        again = _no_grad(self.fn, inputs, beta)
        if not close(out, again):
            raise Inconsistent("grad-mode", "in training the loss differs with and without gradients "
                               "(it behaves differently when trained than when checked)")
        if jumps_at(self.fn, inputs, beta, again):
            raise Inconsistent("beta", f"in training the loss jumps at exactly beta={beta:g} (the training beta): "
                               "its value there is not between its values at beta -+ 1e-6")
        batch = inputs[0].shape[0]
        if out.dim() != 1 or batch < 2:
            return
        if self.independent:
            half = batch // 2
            parts = [_no_grad(self.fn, [t[:half] for t in inputs], beta),
                     _no_grad(self.fn, [t[half:] for t in inputs], beta)]
            if not close(out, torch.cat([p.reshape(-1) for p in parts])):
                raise Inconsistent("batch-size", f"the loss was batch-independent in the checks but depends on "
                                   f"the batch at the training batch size {batch}")
            if not among_check_pairs(self.fn, out, inputs, beta, seed=self.calls):
                raise Inconsistent("batch-size", "the loss was batch-independent in the checks, but real pairs get "
                                   "another loss in a training batch than among pairs from the checks: it switches "
                                   "on something training batches have and the checks' do not (e.g. their spread)")
        elif not stats_close(out, _first(_no_grad(self.fn, _tile(inputs, 2), beta), batch)):
            raise Inconsistent("batch-size", f"at the training batch size {batch} the loss changes when the "
                               "batch is copied twice: it depends on the batch beyond batch statistics")
