"""Which candidate may be called the winner: best lower confidence bound after re-evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from discovery.archive import Archive, CandidateSummary
from discovery.candidate import Status

FULL, REEVAL = "full", "reeval"


@dataclass(frozen=True)
class Winner:
    summary: CandidateSummary
    reevaluated: bool  # False when the run was configured without re-evaluation (eval.reeval_seeds = 0)
    rule: str  # one sentence saying how it was chosen

    @property
    def id(self) -> int:
        return self.summary.id


def rank_key(s: CandidateSummary) -> tuple[float, float]:
    mean = s.fitness.mean if s.fitness and math.isfinite(s.fitness.mean) else -math.inf
    return (s.lcb, mean)


def reeval_required(config: dict) -> bool:
    try:
        return int(config.get("eval", {}).get("reeval_seeds", 5)) > 0
    except (TypeError, ValueError, AttributeError):
        return True


def eligible(archive: Archive, include_baselines: bool = False) -> list[CandidateSummary]:
    """Evaluated at full fidelity and, when the run re-evaluates, through re-evaluation; best first."""
    info = archive.run_info()
    needs_reeval = reeval_required(info.config if info else {})
    found = [s for s in archive.summaries(status=Status.EVALUATED)
             if s.fidelity == FULL and s.fitness is not None
             and (s.candidate.is_baseline and include_baselines
                  or not s.candidate.is_baseline and (s.stage == REEVAL if needs_reeval else s.stage in (FULL, REEVAL)))]
    return sorted(found, key=rank_key, reverse=True)


def winner(archive: Archive, include_baselines: bool = False) -> Winner | None:
    info = archive.run_info()
    needs_reeval = reeval_required(info.config if info else {})
    ranked = eligible(archive, include_baselines)
    if not ranked:
        return None
    rule = ("best by the lower 95% confidence bound of fitness among proposals that completed re-evaluation "
            "on fresh seeds" if needs_reeval else
            "best by the lower 95% confidence bound of fitness at full fidelity (this run did not re-evaluate: "
            "eval.reeval_seeds = 0)")
    return Winner(ranked[0], needs_reeval, rule)
