"""`export_candidate`: choose the candidate, compute its probe values in the sandbox, render the export."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from discovery.archive import Archive, CandidateSummary
from discovery.candidate import Status
from discovery.errors import DiscoveryError
from discovery.export.jobs import stored_probe_layout
from discovery.export.metadata import build_metadata, clean_name, fitness_line
from discovery.export.module import rename_function, render_json, render_module
from discovery.inspect.best import winner
from discovery.inspect.views import jsonable
from discovery.sandbox.isolation import IsolatedRunner, Limits

SELFTEST_JOB = "discovery.export.jobs:selftest_job"
PRELOAD = ("torch", "discovery.export.jobs")
NOT_EXPORTABLE = (Status.INVALID, Status.DUPLICATE)


@dataclass
class ExportResult:
    text: str
    message: str  # one or two lines for the user: what was exported and why
    candidate_id: int
    metadata: dict


def choose(archive: Archive, candidate_id: int | None, best: bool) -> tuple[CandidateSummary, str]:
    """(the candidate, the sentence saying how it was selected)."""
    if best:
        found = winner(archive)
        if found is None:
            raise DiscoveryError("no proposal has completed evaluation at full fidelity and re-evaluation (the loop "
                                 "re-evaluates only proposals that may beat the best so far); nothing to call "
                                 "best yet: export one by ID (see `discovery archive list`)")
        return found.summary, found.rule
    if candidate_id is None:
        raise DiscoveryError("give a candidate ID or --best")
    summary = archive.summary(candidate_id)
    c = summary.candidate
    if c.status == Status.INVALID:
        raise DiscoveryError(f"candidate #{candidate_id} is invalid ({c.reason or 'failed validation'}); "
                             "only valid losses can be exported")
    if c.status == Status.DUPLICATE:
        raise DiscoveryError(f"candidate #{candidate_id} is a duplicate of #{c.duplicate_of}; export that one")
    return summary, f"chosen by hand: candidate #{candidate_id} (status {c.status})"


def probe_cases(code: str, runner: IsolatedRunner | None = None) -> list[dict]:
    """The loss and its gradients on the fingerprint probes, computed in an isolated child."""
    owned = runner is None
    runner = runner or IsolatedRunner(preload=PRELOAD, threads=1)
    try:
        result = runner.run(SELFTEST_JOB, {"code": code}, Limits(wall_seconds=30.0))
    finally:
        if owned:
            runner.close()
    if not result.ok:
        last = result.error.strip().splitlines()[-1] if result.error.strip() else result.kind
        raise DiscoveryError(f"the loss could not be evaluated on the probes in the sandbox ({result.kind}): {last}")
    return result.value["cases"]


def revalidate(code: str, candidate_id: int) -> None:
    """Refuse to export code that the sandbox would refuse now (an archive from an older policy, or edited).

    The export is what users run with their keys and it checks nothing at run time: the code passes today's
    sandbox checks again, with the one-shot sweep (`SWEEP_BATCH_SIZES` and the common betas, as `discovery
    validate`). The formula the export shows is the archive's (stored when the loop validated it)."""
    from discovery.sandbox import validate
    from discovery.sandbox.validation import SWEEP_TEXT

    report = validate(code, sweep=True)
    if not report.valid:
        first = report.errors[0] if report.errors else None
        detail = f"[{first.rule or first.check}] {first.message}" if first else "invalid"
        raise DiscoveryError(f"candidate #{candidate_id} does not pass the sandbox checks at export (at batch sizes "
                             f"{SWEEP_TEXT}): {detail}; not exported")


def probes_agree(cases: list[dict], stored: list[float]) -> bool | None:
    """Do the gradients computed now match the probe values the archive stored at validation time?"""
    if not stored:
        return None
    now = stored_probe_layout(cases)
    if len(now) != len(stored):
        return False
    return all((math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
               for a, b in zip(now, stored, strict=True))


def export_candidate(run_dir: str | Path, candidate_id: int | None = None, best: bool = False,
                     fmt: str = "module", module_name: str | None = None,
                     runner: IsolatedRunner | None = None) -> ExportResult:
    with Archive.open(run_dir, readonly=True) as archive:
        summary, selection = choose(archive, candidate_id, best)
        function = clean_name(summary.candidate.name)
        code, function = rename_function(summary.candidate.code, function)
        meta = build_metadata(archive, run_dir, summary, function, selection)
        stored = archive.probe_values(summary.id)
        baseline = archive.baseline("dpo")
    revalidate(code, summary.id)
    cases = probe_cases(code, runner)
    meta["selftest"] = {"probe_values_match_archive": probes_agree(cases, stored), "rtol": 1e-5, "atol": 1e-8}
    meta = jsonable(meta)
    text = render_json(meta, code, cases) if fmt == "json" else render_module(meta, code, cases,
                                                                             module_name or function)
    message = (f"exported #{summary.id} {summary.candidate.name} as {function}: fitness "
               f"{fitness_line(meta['fitness'])}\nselection: {selection}")
    if baseline is not None and baseline.fitness is not None:
        message += f"\nfor comparison, baseline dpo in this run: {baseline.fitness}"
    if meta["selftest"]["probe_values_match_archive"] is False:
        message += ("\nwarning: the loss's probe gradients now differ from those stored when it was validated "
                    "(another torch version?)")
    return ExportResult(text=text, message=message, candidate_id=summary.id, metadata=meta)
