"""The hybrid (`proposer.tune_constants: N`): the LLM proposes structure, the symbolic tuner fits its numbers.

Wraps the LLM proposer. Before asking the LLM again, it looks at the evaluated LLM proposals the context
shows (the top ones first, then the recent ones) and, while one of them has had fewer than N tuning
variants, proposes the next variant of it instead: the same code with one or two numeric constants
multiplied by e^N(0, 0.4) (`SymbolicProposer.perturb`), origin `symbolic`, proposer `tune`, parent = the LLM
proposal. A variant costs no LLM call; it is screened at low fidelity like every proposal and counts in
`budget.proposals`. LLM proposals without constants to perturb (none but 0, 1, 2) are not tuned.
"""

from __future__ import annotations

import ast
import threading
from collections import Counter

from discovery.candidate import Candidate, Origin, Status
from discovery.proposer.base import Proposal, ProposalContext, Proposer
from discovery.proposer.symbolic import SymbolicProposer

LABEL = "tune"


def has_constants(code: str) -> bool:
    """Does the code hold a numeric constant the tuner may change (anything but 0, 1 and 2)?"""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.Constant) and type(n.value) in (int, float) and n.value not in (0, 1, 2)
               for n in ast.walk(tree))


class TuningProposer(Proposer):
    def __init__(self, inner: Proposer, tuner: SymbolicProposer, variants: int):
        self.inner, self.tuner, self.variants = inner, tuner, max(0, variants)
        self.name = inner.name
        self.tuned: Counter[int] = Counter()  # LLM proposal id -> tuning variants started
        self._lock = threading.Lock()

    def target(self, context: ProposalContext) -> Candidate | None:
        """The first evaluated LLM proposal shown (top, then recent) still owed a tuning variant."""
        seen: set[int] = set()
        for c in [*context.top, *context.recent]:
            if c.id is None or c.id in seen:
                continue
            seen.add(c.id)
            if (c.origin == Origin.LLM and c.status == Status.EVALUATED and c.fitness is not None
                    and self.tuned[c.id] < self.variants and has_constants(c.code)):
                return c
        return None

    def propose(self, context: ProposalContext) -> Proposal:
        with self._lock:
            parent = self.target(context)
            if parent is not None:
                self.tuned[parent.id] += 1
        if parent is None:
            return self.inner.propose(context)
        return self.tuner.tune(context, parent, LABEL)

    def resume(self, stored: list[Candidate]) -> None:
        for c in stored:
            if c.proposer == LABEL and c.parent_ids:
                self.tuned[c.parent_ids[0]] += 1
        self.inner.resume(stored)

    def probe(self) -> None:
        probe = getattr(self.inner, "probe", None)
        if probe is not None:
            probe()

    def stop_reason(self) -> str | None:
        return self.inner.stop_reason()

    def count_spent(self, cost_usd: float, tokens: int) -> None:
        self.inner.count_spent(cost_usd, tokens)

    def close(self) -> None:
        self.inner.close()
