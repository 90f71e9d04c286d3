"""Loss curves of candidate code, computed in the sandbox (for report plots and the export self-test)."""

from __future__ import annotations

from discovery.errors import DiscoveryError
from discovery.sandbox.isolation import IsolatedRunner, Limits

CURVE_JOB = "discovery.sandbox.jobs:curve_job"


def loss_curve(code: str, beta: float, margins, runner: IsolatedRunner | None = None) -> dict[str, list[float]]:
    """{"margin": [...], "loss": [...], "dloss": [...]} (dloss = d loss / d margin), run in an isolated child."""
    from discovery.sandbox.validation import default_runner

    runner = runner or default_runner()
    result = runner.run(CURVE_JOB, {"code": code, "beta": float(beta), "margins": [float(m) for m in margins]},
                        Limits(wall_seconds=30.0))
    if not result.ok:
        last = result.error.strip().splitlines()[-1] if result.error.strip() else result.kind
        raise DiscoveryError(f"could not compute the loss curve ({result.kind}): {last}")
    return result.value
