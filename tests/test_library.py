"""Each library loss against an independent formula written here, on a grid of margins and betas."""

import math

import pytest
import torch

from discovery import contract, library


def load(entry):
    namespace: dict = {}
    exec(compile(entry.code, f"<library:{entry.name}>", "exec"), namespace)  # trusted library code
    return namespace[entry.name]


def logsig(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x):
    return 1 / (1 + math.exp(-x))


def inputs(batch, seed):
    g = torch.Generator().manual_seed(seed)
    ref_c = -torch.rand(batch, generator=g, dtype=torch.float64) * 200 - 5
    ref_r = -torch.rand(batch, generator=g, dtype=torch.float64) * 200 - 5
    margins = torch.linspace(-20, 20, batch, dtype=torch.float64) if batch > 1 else torch.tensor([3.0], dtype=torch.float64)
    shift = torch.randn(batch, generator=g, dtype=torch.float64)
    pol_c = ref_c + shift + margins / 2
    pol_r = ref_r + shift - margins / 2
    return pol_c, pol_r, ref_c, ref_r


def reference(name, pc, pr, rc, rr, beta):
    """Independent per-pair formulas, scalar python math, batch statistics computed by hand."""
    n = len(pc)
    cw = [pc[i] - rc[i] for i in range(n)]
    cl = [pr[i] - rr[i] for i in range(n)]
    rho = [cw[i] - cl[i] for i in range(n)]
    z = [beta * r for r in rho]
    out = []
    for i in range(n):
        x = z[i]
        if name == "dpo":
            v = -logsig(x)
        elif name == "slic":
            v = max(0.0, 1 - x)
        elif name == "ipo":
            v = (rho[i] - 1 / (2 * beta)) ** 2
        elif name == "cdpo":
            v = -0.9 * logsig(x) - 0.1 * logsig(-x)
        elif name == "robust":
            v = (-0.9 * logsig(x) + 0.1 * logsig(-x)) / 0.8
        elif name == "bco_pair":
            v = -logsig(beta * cw[i]) - logsig(-beta * cl[i])
        elif name == "sppo_hard":
            v = (cw[i] - 0.5 / beta) ** 2 + (cl[i] + 0.5 / beta) ** 2
        elif name == "nca_pair":
            v = -logsig(beta * cw[i]) - 0.5 * logsig(-beta * cw[i]) - 0.5 * logsig(-beta * cl[i])
        elif name == "apo_zero":
            v = 1 - sig(beta * cw[i]) + sig(beta * cl[i])
        elif name == "apo_down":
            v = sig(beta * cw[i]) + 1 - sig(x)
        elif name == "kto_pair":
            kl_w = max(0.0, sum(cw) / n)
            kl_l = max(0.0, sum(cl) / n)
            v = 0.5 * ((1 - sig(beta * (cw[i] - kl_l))) + (1 - sig(beta * (kl_w - cl[i]))))
        elif name == "lrml":
            m = sig(x / 0.05)
            v = (1 - m) * -logsig(x) + m * math.exp(-x)
        elif name == "padll":
            v = 0.9 * (0.5 if x < 0 else 1.0) * -logsig(x)
        elif name == "cell":
            v = 0.5 * math.exp(-x) + 0.5 * -logsig(x)
        elif name == "aql":
            s = [zz / 0.05 for zz in z]
            q = 0.5 + 0.01 * (sig(sum(s) / n) - 0.5)
            w = sig(-(s[i] - q))
            v = w * -logsig(x) + (1 - w) * max(0.0, 1 - x)
        elif name == "aqfl":
            s = [zz / 0.05 for zz in z]
            mean = sum(s) / n
            std = math.sqrt(sum((a - mean) ** 2 for a in s) / (n - 1)) if n > 1 else 0.0
            q = std * sum(sig(-a) for a in s) / n
            q = q + 0.05 * (sig(mean) - q)
            b = sig(0.1 * abs(s[i] - q))
            v = b * -logsig(x) + (1 - b) * max(0.0, 1 - x)
        elif name == "dbaql":
            s = [zz / 0.05 for zz in z]
            mean = sum(s) / n
            var = sum((a - mean) ** 2 for a in s) / (n - 1) if n > 1 else 0.0
            c = sig(var)
            v = c * -logsig(x / 0.9) + (1 - c) * math.exp(-x * 0.9)
        elif name == "pfl":
            v = -logsig(x) / 2 if pc[i] > pr[i] else 2 * max(0.0, 1 - x)
        else:
            raise AssertionError(f"no independent formula for {name}")
        out.append(v)
    return out


EXPECTED = {
    "dpo", "slic", "ipo", "cdpo", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down",
    "kto_pair", "lrml", "padll", "cell", "aql", "aqfl", "dbaql", "pfl",
}


def test_library_has_every_required_entry():
    assert set(library.names()) == EXPECTED
    for entry in library.LOSSES:
        assert entry.citation and entry.latex and entry.description
        assert f"def {entry.name}(" + ", ".join(contract.PARAMS) + "):" in entry.code


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("beta", [0.01, 0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_library_matches_independent_formula(name, beta, batch):
    fn = load(library.get(name))
    pc, pr, rc, rr = inputs(batch, seed=batch * 31 + int(beta * 100))
    got = fn(pc, pr, rc, rr, beta)
    assert got.shape == (batch,)
    want = reference(name, pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), beta)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-9)


def test_dpo_and_ipo_differ():
    dpo, ipo = load(library.get("dpo")), load(library.get("ipo"))
    pc, pr, rc, rr = inputs(7, 0)
    assert not torch.allclose(dpo(pc, pr, rc, rr, 0.1), ipo(pc, pr, rc, rr, 0.1))
