"""Jobs that run candidate code; they execute only inside an IsolatedRunner child."""

from __future__ import annotations

import time

from discovery.sandbox import checks, diagnostics, fingerprint, symbolic
from discovery.sandbox.checks import CheckFailure, time_limit
from discovery.sandbox.loader import PolicyError, load_loss

SYMPY_SECONDS = 2.0


def _load(code: str):
    try:
        return load_loss(code), None
    except PolicyError as exc:
        return None, [{"check": "static", "message": v.message, "line": v.line} for v in exc.violations]
    except Exception as exc:  # noqa: BLE001 - e.g. an error raised while defining the function
        line = checks.candidate_line(exc)
        return None, [{"check": "load", "message": f"{type(exc).__name__}: {exc}", "line": line}]


def check_job(payload: dict) -> dict:
    """Unit checks, then (for a valid loss) diagnostics and fingerprint probes: the verdict and what the loop
    compares. The sympy form is `formula_job`, a job of its own (off the verdict's critical path)."""
    fn, errors = _load(payload["code"])
    if errors:
        return {"errors": errors}
    try:
        sizes = tuple(int(b) for b in payload.get("batch_sizes") or ())
        call_seconds, independent = checks.run_unit_checks(fn, float(payload.get("max_call_seconds", 0.25)),
                                                           sizes, sweep=bool(payload.get("sweep")))
        guard = max(1.0, 4 * float(payload.get("max_call_seconds", 0.25)))
        with time_limit(guard * 4):
            diag = diagnostics.diagnose(fn)
            hashed, grads = fingerprint.probe(fn, tuple(float(b) for b in payload.get("betas") or ()))
            grads = grads if independent else grads + fingerprint.alone(fn)
    except CheckFailure as exc:
        return {"errors": [exc.to_dict()]}
    except checks.CallTimeout:
        return {"errors": [{"check": "speed", "message": "diagnostics did not finish in time; the loss is too "
                            "slow", "line": None}]}
    except Exception as exc:  # noqa: BLE001 - a diagnostic probe crashed: report it as a check failure
        line = checks.candidate_line(exc)
        where = f"line {line}: " if line else ""
        return {"errors": [{"check": "runs", "message": f"{where}{type(exc).__name__} on the probe set: {exc}",
                            "line": line}]}
    diag["call_seconds_b64"] = call_seconds
    diag["independent_in_checks"] = independent  # check_consistent; `batch_dependent` is the grid alone
    # a batch-dependent loss is never the duplicate (exact or near) of a batch-independent one: on batches
    # whose statistics the probes do not have (training's), it may be another function (a switch on the spread)
    return {"errors": [], "diagnostics": diag, "fingerprint": fingerprint.digest(hashed + [float(independent)]),
            "probe_values": grads}


def formula_job(payload: dict) -> dict:
    """The sympy form of the code (read, never executed), under SYMPY_SECONDS: adversarial code text can make
    sympy hang, so this too runs only in a sandbox child. Asked for by the consumers that show or store it."""
    start = time.perf_counter()
    try:
        with time_limit(SYMPY_SECONDS):
            form, latex, note = symbolic.to_sympy(payload["code"])
    except checks.CallTimeout:
        form, latex, note = None, None, "no formula: sympy took too long"
    return {"sympy": form, "latex": latex, "note": note, "seconds": time.perf_counter() - start}


def curve_job(payload: dict) -> dict:
    fn, errors = _load(payload["code"])
    if errors:
        raise ValueError(errors[0]["message"])
    with time_limit(10.0):
        return diagnostics.curve(fn, float(payload["beta"]), [float(m) for m in payload["margins"]])


def warm_up(payload: dict) -> None:
    """Setup hook for a validation server: run the checks once on trusted library code so lazy
    initialisation (torch dispatch, sympy caches) happens before fork, not in every child."""
    from discovery import library

    for name in payload.get("losses", ("dpo", "pfl", "aql")):
        check_job({"code": library.get(name).code})
        formula_job({"code": library.get(name).code})


def warm_child() -> None:
    """A spare child's warm-up (trusted library code, before it is hardened): the checks once, so that the
    copy-on-write and first-touch page faults of a fresh fork are paid before the candidate's job arrives."""
    from discovery import library

    check_job({"code": library.get("dpo").code})
    formula_job({"code": library.get("dpo").code})


def cuda_probe(payload: dict) -> dict:
    """Trusted probe (bench/gpu_check.py): does CUDA work inside the sandbox child, and can it compute?"""
    import torch

    available = torch.cuda.is_available()
    value = float((torch.ones(4, device="cuda") * 2).sum()) if available else None
    return {"cuda_available": available, "devices": torch.cuda.device_count() if available else 0, "sum": value}
