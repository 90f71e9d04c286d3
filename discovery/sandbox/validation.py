"""`validate(code)`: the three sandbox layers in order, one report an LLM (or a person) can act on."""

from __future__ import annotations

import atexit
import hashlib
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from discovery.config import SandboxConfig
from discovery.sandbox.isolation import IsolatedRunner, JobResult, Limits
from discovery.sandbox.static import check_source, hint_line

CHECK_JOB = "discovery.sandbox.jobs:check_job"
FORMULA_JOB = "discovery.sandbox.jobs:formula_job"  # the sympy form, a job of its own: `validate(formula=True)`
PRELOAD = ("torch", "sympy", "discovery.sandbox.jobs")
WARM_UP = "discovery.sandbox.jobs:warm_up"
WARM_CHILD = "discovery.sandbox.jobs:warm_child"
SPARES = 2  # children forked and hardened ahead of their jobs (spares.py), warmed up while the server idles
# the one-shot sweep (`discovery validate FILE`, `discovery export`; +1.3 s per loss, bench/validate_sweep.py): the consistency checks at every
# batch size up to 512, every multiple of 32 up to 2048, and 4096; the loop's warm validation checks
# consistency.SIZES and the task's own batch size only (its latency goal); the trainer's TrainingGuard watches
# the real batches
SWEEP_BATCH_SIZES = (*range(1, 513), *range(544, 2049, 32), 4096)
SWEEP_TEXT = "every B in 1-512, multiples of 32 up to 2048, 4096"


@dataclass(frozen=True)
class CheckError:
    check: str
    message: str
    line: int | None = None
    rule: str | None = None  # the static rule id, or the check's name; always set by validate()

    def __post_init__(self):
        if self.rule is None:
            object.__setattr__(self, "rule", self.check)


@dataclass(frozen=True)
class ValidationReport:
    valid: bool
    errors: list[CheckError] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None
    probe_values: list[float] = field(default_factory=list)
    sympy: str | None = None
    latex: str | None = None
    isolation: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line: why the loss was rejected (actionable), or that it passed and what it is."""
        if not self.valid:
            return "invalid: " + "; ".join(f"[{e.check}] {e.message}" for e in self.errors[:3])
        form = f"; formula {self.sympy}" if self.sympy else ""
        return f"valid: fingerprint {self.fingerprint}{form}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_formula(self, sympy: str | None, latex: str | None, note: str, seconds: float) -> ValidationReport:
        """This report with the loss's sympy form (`formula_job`); `note` says why there is none."""
        return replace(self, sympy=sympy, latex=latex,
                       diagnostics={**self.diagnostics, "sympy_note": note, "sympy_seconds": seconds})


_DEFAULT: dict[str, IsolatedRunner] = {}
_DEFAULT_LOCK = threading.Lock()


def validation_runner() -> IsolatedRunner:
    """A new runner prepared for `validate` (torch and sympy loaded and warmed up before fork)."""
    return IsolatedRunner(preload=PRELOAD, setup=WARM_UP, threads=1, limits=limits_for(SandboxConfig()),
                          spares=SPARES, child_warm_up=WARM_CHILD)


def default_runner() -> IsolatedRunner:
    """A process-wide warm runner for validation (started on first use, closed at exit)."""
    with _DEFAULT_LOCK:
        runner = _DEFAULT.get("runner")
        if runner is None:
            runner = _DEFAULT["runner"] = validation_runner()
            atexit.register(runner.close)
        return runner


def limits_for(config: SandboxConfig) -> Limits:
    return Limits.from_config(config)


def _job_failure(result: JobResult, config: SandboxConfig) -> CheckError:
    last = result.error.strip().splitlines()[-1] if result.error.strip() else result.kind
    if result.kind == "timeout":
        return CheckError("timeout", f"the checks did not finish within {config.timeout:g} s "
                          "(an endless loop or far too slow); write a vectorised loss that returns quickly")
    if result.kind == "memory":
        return CheckError("memory", f"the loss exceeded the {config.memory_mb} MB memory limit ({last}); "
                          "allocate nothing larger than the inputs")
    if result.kind == "policy":
        return CheckError("policy", f"the loss attempted a forbidden operation ({last}); "
                          "a loss only computes with its inputs")
    return CheckError("crash" if result.kind == "crash" else "internal", f"the check process failed: {last}")


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def with_line(error: CheckError, code: str) -> CheckError:
    """A dynamic failure without a line gets the line the code most likely means (first in-place write, loop)."""
    if error.line is not None:
        return error
    line = hint_line(code, error.check)
    if line is None:
        return error
    message = error.message if error.message.startswith("line ") else f"line {line}: {error.message}"
    return CheckError(error.check, message, line, error.rule)


_CACHE: dict[tuple, ValidationReport] = {}  # finished reports by (code, settings): a repeat costs nothing
_FORMULAS: dict[str, tuple] = {}  # formula_job answers by code: (sympy, latex, note, seconds)
CACHE_SIZE = 512


def validate(code: str, config: SandboxConfig | None = None, runner: IsolatedRunner | None = None,
             batch_sizes: tuple[int, ...] = (), cache: bool = True, sweep: bool = False,
             formula: bool = False, betas: tuple[float, ...] = ()) -> ValidationReport:
    """Static policy in this process, then unit checks/diagnostics/fingerprint in an isolated child.

    `batch_sizes`: the batch sizes training will use (per-device train batch size), checked besides TRL's.
    `betas`: the betas training will use (`eval.betas`, else `train.beta`), probed by the fingerprint too.
    `sweep`: the one-shot sweep (`discovery validate FILE`, `discovery export`): every size of
    SWEEP_BATCH_SIZES and the common betas too. `formula`: for a valid loss, its sympy form as well
    (`sympy`, `latex`): a second sandbox job after the verdict, asked for by the consumers that show or store
    it (the loop's archive, `discovery validate`); the verdict is computed without it, and
    `validate` without `formula` returns as soon as the verdict is in.
    `cache`: the same code with the same settings gets the report of its last complete check (an LLM often
    proposes the same code again); a job that timed out or crashed is never cached."""
    config = config or SandboxConfig()
    sizes = tuple(dict.fromkeys((*(SWEEP_BATCH_SIZES if sweep else ()), *(int(b) for b in batch_sizes))))
    digest = hashlib.sha256(code.encode()).hexdigest()
    betas = tuple(sorted({float(b) for b in betas}))
    key = (digest, repr(config), sizes, sweep, betas)
    report = _CACHE.get(key) if cache else None
    if report is None:
        report, complete = _validate(code, config, runner, sizes, sweep, betas)
        if cache and complete:
            _remember(_CACHE, key, report)
    if formula and report.valid:
        report = report.with_formula(*_formula(code, digest, config, runner, cache))
    return report


def _remember(store: dict, key, value) -> None:
    if len(store) >= CACHE_SIZE:
        store.pop(next(iter(store)))
    store[key] = value


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _formula(code: str, digest: str, config: SandboxConfig, runner: IsolatedRunner | None,
             cache: bool) -> tuple[str | None, str | None, str, float]:
    """(sympy, latex, note, seconds) from `formula_job` in the sandbox; a job that failed gives no formula (a
    description, not a check: the verdict stands) and is not cached."""
    if cache and digest in _FORMULAS:
        return _FORMULAS[digest]
    result = (runner or default_runner()).run(FORMULA_JOB, {"code": code}, limits_for(config))
    value = result.value if result.ok and isinstance(result.value, dict) else {}
    seconds = value.get("seconds")
    found = (_text(value.get("sympy")), _text(value.get("latex")),
             _text(value.get("note")) or ("" if result.ok else f"no formula: the formula job failed ({result.kind})"),
             float(seconds) if isinstance(seconds, (int, float)) else result.seconds)
    if cache and result.ok:
        _remember(_FORMULAS, digest, found)
    return found


def _validate(code: str, config: SandboxConfig, runner: IsolatedRunner | None, batch_sizes: tuple[int, ...],
              sweep: bool, betas: tuple[float, ...] = ()) -> tuple[ValidationReport, bool]:
    """The report, and whether it is complete (static refusal, or the check job answered)."""
    start = time.perf_counter()
    violations = check_source(code)
    if violations:
        return ValidationReport(valid=False, errors=[CheckError("static", v.message, v.line, v.rule)
                                                     for v in violations],
                                isolation=["static-policy"], seconds=time.perf_counter() - start), True
    runner = runner or default_runner()
    result = runner.run(CHECK_JOB, {"code": code, "max_call_seconds": config.max_call_seconds,
                                   "batch_sizes": list(batch_sizes), "sweep": sweep, "betas": list(betas)},
                        limits_for(config))
    isolation = ["static-policy", "restricted-builtins", *result.isolation]
    if not result.ok:
        return ValidationReport(valid=False, errors=[with_line(_job_failure(result, config), code)],
                                isolation=isolation, seconds=time.perf_counter() - start), False
    value = result.value or {}
    errors = [with_line(CheckError(str(e.get("check", "?")), str(e.get("message", "")), _int(e.get("line")),
                                   e.get("rule")), code) for e in value.get("errors", [])]
    return ValidationReport(
        valid=not errors, errors=errors, diagnostics=value.get("diagnostics", {}),
        fingerprint=value.get("fingerprint"), probe_values=list(value.get("probe_values") or []),
        isolation=isolation, seconds=time.perf_counter() - start), True
