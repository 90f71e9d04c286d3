"""The report draws each evaluated proposal's reward-KL frontier beside DPO's (a beta sweep), with no curves asked for."""

from __future__ import annotations

from discovery.archive import Archive
from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.config import from_dict
from discovery.inspect import report

BETAS = (0.05, 0.1, 0.2)


def add(archive: Archive, name: str, origin: Origin, shift: float) -> int:
    cid = archive.add_candidate(Candidate(name=name, code=f"def {name}(a, b, c, d, beta):\n    return a - b\n",
                                          origin=origin), stage="full")
    for beta in BETAS:
        for seed in range(2):
            archive.add_evaluation(cid, EvalResult(seed=seed, fitness=-0.8 + shift - abs(beta - 0.1) + 0.01 * seed,
                                                   fidelity="full", beta=beta, metrics={"kl": 0.5 / beta}))
    archive.transition(cid, Status.EVALUATED, stage="full")
    return cid


def test_every_evaluated_proposal_gets_a_frontier_beside_dpo(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(report.figures, "frontier", lambda points, objective: drawn.update(points) or "data:,")
    config = from_dict({"eval": {"betas": list(BETAS), "reeval_seeds": 0}})
    with Archive.open(tmp_path) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        add(archive, "dpo", Origin.LIBRARY, 0.0)
        ids = [add(archive, f"p{i}", Origin.LLM, 0.01 * i) for i in range(3)]
        context = report.report_context(archive, str(tmp_path), curves=0)  # no loss curves asked for
    points = drawn
    assert context["figures"]["frontier"] == "data:,"
    assert set(points) == {"dpo", *(f"#{cid} p{i}" for i, cid in enumerate(ids))}
    assert sorted(b for _, _, b in points["dpo"]) == list(BETAS)
    kl, fitness, beta = min(points[f"#{ids[2]} p2"], key=lambda p: p[2])
    assert beta == 0.05 and kl == 10.0 and abs(fitness - (-0.8 + 0.02 - 0.05 + 0.005)) < 1e-9
