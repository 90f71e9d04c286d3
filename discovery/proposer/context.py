"""Archive context for the prompt (ranked by `discovery.selection`), trimmed to fit the model's context window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from discovery.candidate import Candidate, Status
from discovery.proposer.base import ProposalContext

FULL, BRIEF, DROPPED = 2, 1, 0
_KEY_METRICS = ("kl", "acc", "margin", "reward", "loss")


@dataclass
class Entry:
    """One candidate as the prompt shows it, at a level of detail the trimmer may lower."""

    section: str
    candidate: Candidate
    priority: int  # lower is dropped first
    level: int = FULL

    def view(self) -> dict:
        c = self.candidate
        return {"name": c.name, "summary": summary(c), "code": c.code.strip() if self.level == FULL else None,
                "reason": one_line(c.reason)}


def summary(c: Candidate) -> str:
    parts = [f"fitness {c.fitness}" if c.fitness else "not evaluated yet" if c.status == Status.PROPOSED
             else f"status {c.status}"]
    metrics = {k: v for k, v in (c.metrics or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    keys = [k for k in metrics if any(tag in k.lower() for tag in _KEY_METRICS)][:4]
    parts += [f"{k} {metrics[k]:.4g}" for k in keys]
    return "; ".join(parts)


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def entries(context: ProposalContext) -> list[Entry]:
    """Every candidate to show, with a priority: parents > top > best baselines > recent > failures."""
    out: list[Entry] = []
    n_top = len(context.top)
    out += [Entry("parents", c, 1000 - i) for i, c in enumerate(context.parents)]
    out += [Entry("top", c, 900 - i) for i, c in enumerate(context.top)]
    out += [Entry("baselines", c, (800 if i < 2 else 300) - i, FULL if i < 3 else BRIEF)
            for i, c in enumerate(context.baselines)]
    out += [Entry("recent", c, 500 - i) for i, c in enumerate(context.recent)]
    out += [Entry("failures", c, 200 - i, BRIEF) for i, c in enumerate(context.failures)]
    if n_top:  # the best found so far always keeps at least its summary line
        out[len(context.parents)].priority = 10_000
    return out


def sections(items: list[Entry]) -> dict[str, list[dict]]:
    names = ("parents", "top", "baselines", "recent", "failures")
    return {name: [e.view() for e in items if e.section == name and e.level > DROPPED] for name in names}


def fit(items: list[Entry], render: Callable[[dict[str, list[dict]]], int], budget: int) -> dict[str, list[dict]]:
    """Lower the detail of the lowest-priority entries until `render(sections)` (tokens) fits `budget`."""
    order = sorted(items, key=lambda e: e.priority)
    while True:
        shown = sections(items)
        if render(shown) <= budget:
            return shown
        victim = next((e for e in order if e.level > (BRIEF if e.priority >= 10_000 else DROPPED)), None)
        if victim is None:
            return shown
        victim.level -= 1
