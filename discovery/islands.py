"""Islands (`proposer.selection: islands`): N sub-populations, so one run does not collapse into one family.

As in FunSearch and ShinkaEvolve, each island evolves on its own: proposal g belongs to island (g - 1) mod N
(its stored `generation` says which, so a resumed run keeps its islands), and its context (top, recent,
failures, parents) comes from that island's members only, with the baselines shared by all. Every
`proposer.migrate_every` rounds (a round = one proposal per island) the best proposal of the whole run
migrates: it is shown to every island as a member, so it may be chosen as a parent there.
The context itself is built by the wrapped strategy (`TopKRecent`) over the island's view of the archive.
"""

from __future__ import annotations

from typing import Any

from discovery import ranking
from discovery.archive import Archive
from discovery.inner_loop.task import TaskInfo
from discovery.proposer.base import ProposalContext
from discovery.selection import SelectionStrategy


def island_of(generation: int, islands: int) -> int:
    return (max(1, generation) - 1) % max(1, islands)


def migrates(generation: int, islands: int, every: int) -> bool:
    """Is proposal `generation` in a migration round (round 0 has nothing to migrate)?"""
    rnd = (max(1, generation) - 1) // max(1, islands)
    return every > 0 and rnd > 0 and rnd % every == 0


class IslandView:
    """The archive as one island sees it: its members, the baselines and the migrants; the rest reads through."""

    def __init__(self, archive: Archive, members: set[int]):
        self._archive, self.members = archive, members

    def summaries(self, status: Any = None, origin: Any = None) -> list:
        return [s for s in self._archive.summaries(status=status, origin=origin)
                if s.is_baseline or s.candidate.id in self.members]

    def __getattr__(self, name: str):
        return getattr(self._archive, name)


class Islands(SelectionStrategy):
    name = "islands"

    def __init__(self, inner: SelectionStrategy, islands: int = 4, migrate_every: int = 4):
        self.inner, self.islands, self.migrate_every = inner, max(1, islands), migrate_every

    def members(self, archive: Archive, generation: int) -> set[int]:
        """The ids island(generation) sees: its own proposals, plus the run's best one in a migration round."""
        everything = [s for s in archive.summaries() if not s.is_baseline]
        home = island_of(generation, self.islands)
        own = {s.candidate.id for s in everything if island_of(s.candidate.generation, self.islands) == home}
        if migrates(generation, self.islands, self.migrate_every):
            ranked = ranking.leaderboard(everything, archive.needs_reeval())
            own |= {s.candidate.id for s in ranked[:1]}
        return own

    def select(self, archive: Archive, task: TaskInfo, generation: int) -> ProposalContext:
        view = IslandView(archive, self.members(archive, generation))
        return self.inner.select(view, task, generation)  # type: ignore[arg-type]
