"""An archive that holds one piece of code as a valid, evaluated proposal (what an older policy or an edit left)."""

from __future__ import annotations


def archive_with(run_dir, code: str, name: str = "stored") -> int:
    from discovery.archive import Archive
    from discovery.candidate import Candidate, EvalResult, Origin, Status

    with Archive.open(run_dir) as archive:
        archive.start_run({}, "synthetic", "key")
        cid = archive.add_candidate(Candidate(name=name, code=code, origin=Origin.LLM, status=Status.QUEUED))
        archive.add_evaluation(cid, EvalResult(seed=0, fitness=-0.5, ok=True, fidelity="full"))
        archive.transition(cid, Status.EVALUATED, stage="full")
    return cid
