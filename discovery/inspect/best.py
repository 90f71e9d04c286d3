"""Which candidate may be called the winner, with the sentence saying why (the rule is `discovery.ranking`)."""

from __future__ import annotations

from dataclasses import dataclass

from discovery import ranking
from discovery.archive import Archive, CandidateSummary
from discovery.candidate import Status


@dataclass(frozen=True)
class Winner:
    summary: CandidateSummary
    reevaluated: bool  # False when the run was configured without re-evaluation (eval.reeval_seeds = 0)
    rule: str  # one sentence saying how it was chosen

    @property
    def id(self) -> int:
        return self.summary.id


def eligible(archive: Archive, include_baselines: bool = False,
             summaries: list[CandidateSummary] | None = None) -> list[CandidateSummary]:
    """Those that may be called best (`ranking.may_be_called_best`), best first; `summaries` = the archive's
    summaries when the caller has read them already (a large report reads them once)."""
    found = archive.summaries(status=Status.EVALUATED) if summaries is None else summaries
    return ranking.best(found, archive.needs_reeval(), include_baselines)


def winner(archive: Archive, include_baselines: bool = False,
           summaries: list[CandidateSummary] | None = None) -> Winner | None:
    needs_reeval = archive.needs_reeval()
    ranked = eligible(archive, include_baselines, summaries)
    if not ranked:
        return None
    rule = ("best by the lower 95% confidence bound of fitness among proposals that completed re-evaluation "
            "on fresh seeds and beat or tied DPO on the held-out task instances (eval.heldout_instances)"
            if needs_reeval == ranking.HELDOUT else
            "best by the lower 95% confidence bound of fitness among proposals that completed re-evaluation "
            "on fresh seeds" if needs_reeval else
            "best by the lower 95% confidence bound of fitness at full fidelity (this run did not re-evaluate: "
            "eval.reeval_seeds = 0)")
    return Winner(ranked[0], needs_reeval, rule)
