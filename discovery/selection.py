"""Selection strategies: which archived candidates the proposer sees as context and parents.

A strategy reads the archive's typed read API (never SQL) and returns a `ProposalContext`.
The default, `TopKRecent`, shows the top-k in the order of `discovery.ranking` (confirmed first, then by
the lower 95% confidence bound of fitness), the most recent evaluated proposals, the latest failures with
their reasons, and the baselines; the parents are the best few.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from discovery import ranking
from discovery.archive import Archive
from discovery.candidate import Candidate, Status
from discovery.config import RunConfig
from discovery.inner_loop.task import TaskInfo
from discovery.proposer import context
from discovery.proposer.base import ProposalContext


class SelectionStrategy(ABC):
    name: str = ""

    @abstractmethod
    def select(self, archive: Archive, task: TaskInfo, generation: int) -> ProposalContext: ...


class TopKRecent(SelectionStrategy):
    """Top-k in ranking order + the most recent + the latest failures + baselines."""

    name = "topk_recent"

    def __init__(self, top_k: int = 5, recent: int = 3, failures: int = 3, parents: int = 2):
        self.top_k, self.recent, self.failures, self.parents = top_k, recent, failures, parents

    def select(self, archive: Archive, task: TaskInfo, generation: int) -> ProposalContext:
        everything = archive.summaries()
        ranked = ranking.leaderboard(everything, archive.needs_reeval())
        baselines = [s for s in ranked if s.candidate.is_baseline]
        found = [s for s in ranked if not s.candidate.is_baseline]
        top = [s.candidate for s in found[: self.top_k]]
        top_ids = {c.id for c in top}
        proposals = [s.candidate for s in reversed(everything) if not s.candidate.is_baseline]
        recent = [c for c in proposals if c.status == Status.EVALUATED and c.id not in top_ids][: self.recent]
        failures = [c for c in proposals if c.status in (Status.INVALID, Status.FAILED)][: self.failures]
        parents: list[Candidate] = [s.candidate for s in ranking.parents(found, self.parents)]
        reference = [s.candidate for s in baselines if s.candidate.name == context.REFERENCE]
        return ProposalContext(task=task, top=top, recent=recent, failures=failures,
                               baselines=[s.candidate for s in baselines], generation=generation, parents=parents,
                               frontiers=frontiers(archive, parents + reference, task.beta))


def frontiers(archive: Archive, candidates: list[Candidate], beta: float) -> dict[int, list]:
    """The measured beta sweep of each candidate that has one (the prompt shows it for parents and DPO)."""
    out = {}
    for c in candidates:
        if c.id is not None:
            found = context.frontier([e.result for e in archive.evaluations(c.id, "full")], beta)
            if found:
                out[c.id] = found
    return out


def make_selection(config: RunConfig) -> SelectionStrategy:
    """TopKRecent, per island with `proposer.selection: islands`, plus the bandit's outcomes for proposer.models."""
    p = config.proposer
    strategy: SelectionStrategy = TopKRecent(top_k=p.top_k, recent=p.recent, failures=p.failures)
    if p.selection == "islands":
        from discovery.islands import Islands

        strategy = Islands(strategy, p.islands, p.migrate_every)
    if p.models:
        from discovery.proposer.ensemble import WithOutcomes

        strategy = WithOutcomes(strategy)
    return strategy

