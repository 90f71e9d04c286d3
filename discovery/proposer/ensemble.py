"""Several LLMs in one run (`proposer.models`): a bandit picks the model of each proposal.

Each model is an ordinary LLM proposer (its own client, prices and temperature) sharing one `Ledger`, so
`budget.max_cost_usd` and `budget.max_tokens` count every model's calls together; each call is stored
with its model's name, so the archive totals per model (`Archive.usage_by_model`). The bandit
(`discovery.proposer.bandit`) reads what each model's proposals earned from the context's outcomes.
"""

from __future__ import annotations

import random
import threading
from dataclasses import replace

from discovery.proposer.accounting import Ledger
from discovery.proposer.bandit import Bandit, outcomes, tally
from discovery.proposer.base import Proposal, ProposalContext, Proposer
from discovery.selection import SelectionStrategy


class EnsembleProposer(Proposer):
    name = "ensemble"

    def __init__(self, arms: dict[str, Proposer], bandit: Bandit, ledger: Ledger, seed: int = 0):
        if not arms:
            raise ValueError("an ensemble needs at least one model")
        self.arms, self.bandit, self.ledger = dict(arms), bandit, ledger
        self.chosen: list[str] = []  # the model of each proposal this process started, in order
        self._in_flight = dict.fromkeys(self.arms, 0)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def choose(self, context: ProposalContext) -> str:
        with self._lock:
            stats = tally(list(self.arms), context.outcomes, self._in_flight)
            model = self.bandit.choose(stats, self._rng)
            self._in_flight[model] += 1
            self.chosen.append(model)
        return model

    def propose(self, context: ProposalContext) -> Proposal:
        model = self.choose(context)
        try:
            return self.arms[model].propose(context)
        finally:
            with self._lock:
                self._in_flight[model] -= 1

    def probe(self) -> None:
        for arm in self.arms.values():
            probe = getattr(arm, "probe", None)
            if probe is not None:
                probe()

    def stop_reason(self) -> str | None:
        return self.ledger.exceeded() or next((r for a in self.arms.values() if (r := a.stop_reason())), None)

    def count_spent(self, cost_usd: float, tokens: int) -> None:
        self.ledger.add_spent(cost_usd, tokens)  # once: the arms share this ledger

    def close(self) -> None:
        errors = []
        for arm in self.arms.values():
            try:
                arm.close()
            except Exception as exc:  # every server is stopped even when one fails to
                errors.append(exc)
        if errors:
            raise errors[0]


class WithOutcomes(SelectionStrategy):
    """Another strategy's context plus what each stored LLM proposal earned (the bandit's input)."""

    def __init__(self, inner: SelectionStrategy):
        self.inner, self.name = inner, inner.name

    def select(self, archive, task, generation: int) -> ProposalContext:
        return replace(self.inner.select(archive, task, generation), outcomes=outcomes(archive.summaries()))
