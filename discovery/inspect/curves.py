"""Loss curves of archived candidates for the report, computed in the sandbox (never in this process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from discovery import library
from discovery.errors import DiscoveryError
from discovery.sandbox.isolation import IsolatedRunner
from discovery.sandbox.probe import loss_curve

RHO_LIMIT = 10.0  # the curves span beta * margin in [-RHO_LIMIT, RHO_LIMIT], as in the DiscoPOP figures
POINTS = 161
PRELOAD = ("torch", "discovery.sandbox.jobs")


@dataclass
class CurveSet:
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # label -> margin/loss/dloss
    problems: list[str] = field(default_factory=list)  # one line per curve that could not be computed


def margin_grid(beta: float, limit: float = RHO_LIMIT, points: int = POINTS) -> list[float]:
    step = 2 * limit / (points - 1)
    return [(-limit + i * step) / beta for i in range(points)]


def sandbox_curves(named_codes: dict[str, str], beta: float, runner: IsolatedRunner | None = None) -> CurveSet:
    """{label: code} -> curves over `margin_grid(beta)`, each computed in an isolated child."""
    out = CurveSet()
    if not named_codes:
        return out
    owned = runner is None
    runner = runner or IsolatedRunner(preload=PRELOAD, threads=1)
    try:
        grid = margin_grid(beta)
        for label, code in named_codes.items():
            try:
                out.curves[label] = loss_curve(code, beta, grid, runner=runner)
            except DiscoveryError as exc:
                out.problems.append(f"{label}: {exc}")
    finally:
        if owned:
            runner.close()
    return out


def with_dpo(named_codes: dict[str, str]) -> dict[str, str]:
    """DPO first (the reference curve), then the given candidates."""
    return {"dpo": library.get("dpo").code, **{k: v for k, v in named_codes.items() if k != "dpo"}}
