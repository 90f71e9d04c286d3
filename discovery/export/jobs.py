"""The export's sandbox job: the loss and its gradients on the fingerprint probes. Runs only in an isolated child."""

from __future__ import annotations

from discovery.sandbox.checks import make_inputs, time_limit
from discovery.sandbox.fingerprint import PROBE_BETAS, PROBE_MARGINS
from discovery.sandbox.loader import load_loss

PROBE_SEED = 7  # the fingerprint's first probe batch: its gradients are the archive's stored probe values


def selftest_job(payload: dict) -> dict:
    """{"cases": [{beta, inputs (4 lists), loss, grad_chosen, grad_rejected}]} in float64, one per probe beta."""
    import torch

    fn = load_loss(payload["code"])
    cases = []
    with time_limit(10.0):
        for beta in PROBE_BETAS:
            inputs, b = make_inputs(PROBE_MARGINS, beta, dtype=torch.float64, seed=PROBE_SEED)
            out = fn(*inputs, b)
            g_c, g_r = torch.autograd.grad(out.sum(), inputs[:2], allow_unused=True)
            g_c = torch.zeros_like(inputs[0]) if g_c is None else g_c
            g_r = torch.zeros_like(inputs[1]) if g_r is None else g_r
            cases.append({"beta": b, "inputs": [t.detach().tolist() for t in inputs],
                          "loss": out.detach().double().tolist(), "grad_chosen": g_c.tolist(),
                          "grad_rejected": g_r.tolist()})
    return {"cases": cases}


def stored_probe_layout(cases: list[dict]) -> list[float]:
    """The cases' gradients laid out as the archive stores probe values (per beta: chosen, then rejected)."""
    return [g for case in cases for g in case["grad_chosen"] + case["grad_rejected"]]
