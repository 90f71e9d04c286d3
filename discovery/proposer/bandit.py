"""Which model writes the next proposal: a bandit over the models of `proposer.models`, rewarded by results.

A proposal pays off (reward 1) when it reached full fidelity with a mean fitness above the best of its
parents (above the best baseline when it had none): it improved on what it was shown. Anything else that
is settled (invalid, duplicate, failed, screened out, full but not better) pays 0; proposals still
training are counted as tried, not yet as paid. This follows ShinkaEvolve's LLM-ensemble selection
(SakanaAI/ShinkaEvolve, `shinka/llm/dynamic_sampling.py`, `AsymmetricUCB`: the reward is the child's
score above its parent's, negative gains count as 0, arms are counted when submitted so parallel
proposals spread out, with a UCB1 bonus and a share of uniform exploration), with the gain reduced to
"improved or not" because fitness scales differ between tasks.

The rewards are read from the archive on every proposal (`outcomes`), so a resumed run picks up where it
was, and nothing is kept but the proposals in flight in this process.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from discovery.candidate import Status

SETTLED = (Status.EVALUATED, Status.FAILED, Status.INVALID, Status.DUPLICATE)
FULL_FIDELITY = "full"


@dataclass(frozen=True)
class Outcome:
    """One stored proposal as the bandit sees it: which model wrote it, whether its fate is known, its reward."""

    model: str
    settled: bool
    reward: float = 0.0


@dataclass(frozen=True)
class ArmStats:
    """What one model's proposals have earned: tried (stored or in flight), settled, and the rewards' sum."""

    tried: int = 0
    settled: int = 0
    reward: float = 0.0

    @property
    def mean(self) -> float:
        return self.reward / self.settled if self.settled else 0.0


def outcomes(summaries: Iterable) -> tuple[Outcome, ...]:
    """Each LLM proposal of the archive (`CandidateSummary`s, any order) as an `Outcome`."""
    summaries = list(summaries)
    by_id = {s.candidate.id: s for s in summaries}
    baselines = [s.mean for s in summaries if s.is_baseline and _full(s)]
    reference = max(baselines) if baselines else None
    out = []
    for s in summaries:
        c = s.candidate
        if s.is_baseline or not c.model:
            continue
        settled = c.status in SETTLED
        out.append(Outcome(c.model, settled, _reward(s, [by_id.get(p) for p in c.parent_ids], reference)
                           if settled else 0.0))
    return tuple(out)


def _full(s) -> bool:
    return s is not None and s.fidelity == FULL_FIDELITY and s.mean is not None and math.isfinite(s.mean)


def _reward(s, parents: list, reference: float | None) -> float:
    if s.candidate.status != Status.EVALUATED or not _full(s):
        return 0.0
    scored = [p.mean for p in parents if _full(p)]
    bar = max(scored) if scored else reference
    return 1.0 if bar is None or s.mean > bar else 0.0


def tally(models: Sequence[str], history: Iterable[Outcome], in_flight: dict[str, int]) -> dict[str, ArmStats]:
    """Per model: the archive's outcomes plus this process's proposals not yet stored."""
    stats = {m: [in_flight.get(m, 0), 0, 0.0] for m in models}
    for o in history:
        if o.model in stats:
            stats[o.model][0] += 1
            if o.settled:
                stats[o.model][1] += 1
                stats[o.model][2] += o.reward
    return {m: ArmStats(int(t), int(n), float(r)) for m, (t, n, r) in stats.items()}


class Bandit(ABC):
    name: str = ""

    @abstractmethod
    def choose(self, stats: dict[str, ArmStats], rng: random.Random) -> str: ...


class UCB1(Bandit):
    """Untried models first; then the best mean + c * sqrt(2 ln N / n_i), with `epsilon` uniform exploration."""

    name = "ucb1"

    def __init__(self, exploration: float = 1.0, epsilon: float = 0.1):
        self.exploration, self.epsilon = exploration, epsilon

    def scores(self, stats: dict[str, ArmStats]) -> dict[str, float]:
        total = max(2, sum(a.tried for a in stats.values()))
        return {m: math.inf if not a.tried else a.mean + self.exploration * math.sqrt(2 * math.log(total) / a.tried)
                for m, a in stats.items()}

    def choose(self, stats: dict[str, ArmStats], rng: random.Random) -> str:
        models = list(stats)
        if len(models) > 1 and rng.random() < self.epsilon:
            return rng.choice(models)
        scores = self.scores(stats)
        top = max(scores.values())
        return rng.choice([m for m in models if scores[m] == top])


class Thompson(Bandit):
    """A draw from each model's Beta(1 + paid, 1 + settled - paid); the highest draw wins."""

    name = "thompson"

    def choose(self, stats: dict[str, ArmStats], rng: random.Random) -> str:
        draws = {m: rng.betavariate(1 + a.reward, 1 + a.settled - a.reward) for m, a in stats.items()}
        return max(draws, key=draws.get)


BANDITS = {"ucb1": UCB1, "thompson": Thompson}


def make_bandit(name: str) -> Bandit:
    if name not in BANDITS:
        raise ValueError(f"unknown bandit '{name}'; available: {', '.join(BANDITS)}")
    return BANDITS[name]()
