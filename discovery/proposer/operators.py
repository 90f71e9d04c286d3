"""Which kind of proposal to ask for (`proposer.operators`), chosen per proposal by a seeded rule.

- `diff`: a small SEARCH/REPLACE edit of one parent (`discovery.proposer.diff`);
- `full`: a fresh loss, written whole;
- `crossover`: one loss that combines two parents.

An operator that needs more parents than the context has is skipped (the first proposals of a run have no
parents: they are `full`). The parents are the selection's, or the evaluated baselines before any proposal
was evaluated. The choice is recorded on the candidate (`diagnostics["operator"]`) so that results can be
counted per operator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from discovery.candidate import Candidate
from discovery.proposer.base import ProposalContext, ProposerError

OPERATORS = {"diff": 1, "full": 0, "crossover": 2}  # name -> parents it needs
DEFAULT_MIX = {"diff": 0.5, "full": 0.3, "crossover": 0.2}


@dataclass(frozen=True)
class Choice:
    operator: str
    parents: tuple[Candidate, ...] = ()


def check_mix(mix: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(OPERATORS))
    if unknown:
        raise ProposerError(f"proposer.operators: unknown operator(s) {', '.join(unknown)}; "
                            f"available: {', '.join(OPERATORS)}")
    if any(not isinstance(w, int | float) or w < 0 for w in mix.values()) or not any(w > 0 for w in mix.values()):
        raise ProposerError("proposer.operators: weights must be numbers >= 0, at least one of them > 0")
    return {op: float(w) for op, w in mix.items()}


def pool(context: ProposalContext) -> list[Candidate]:
    """The candidates an edit or a crossover may start from: the parents, else the evaluated baselines."""
    found = [c for c in context.parents if c.code]
    if found:
        return found
    return [c for c in context.baselines if c.code and c.fitness is not None][:3]


def choose(mix: dict[str, float], context: ProposalContext, seed: int, index: int) -> Choice:
    """The operator (and its parents) for proposal `index` of this proposer: the same for the same seed."""
    rng = random.Random(f"operators:{seed}:{index}")
    parents = pool(context)
    usable = {op: w for op, w in mix.items() if w > 0 and OPERATORS[op] <= len(parents)}
    if not usable:
        return Choice("full")
    operator = rng.choices(sorted(usable), weights=[usable[op] for op in sorted(usable)])[0]
    need = OPERATORS[operator]
    if need == 1:
        return Choice(operator, (parents[0] if rng.random() < 0.5 else rng.choice(parents),))
    return Choice(operator, tuple(rng.sample(parents, need)) if need else ())
