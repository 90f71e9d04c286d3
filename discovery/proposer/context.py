"""Archive context for the prompt (ranked by `discovery.selection`), trimmed to fit the model's context window."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from discovery.candidate import Candidate, Status
from discovery.proposer.base import ProposalContext

FULL, BRIEF, DROPPED = 2, 1, 0
REFERENCE = "dpo"  # the baseline whose measured behaviour is shown next to the parents'
_KEY_METRICS = ("kl", "acc", "margin", "reward", "loss")


@dataclass
class Entry:
    """One candidate as the prompt shows it, at a level of detail the trimmer may lower."""

    section: str
    candidate: Candidate
    priority: int  # lower is dropped first
    level: int = FULL
    frontier: list = field(default_factory=list)  # [(beta, reward, kl)] when the behaviour is shown
    detailed: bool = False  # show the measured behaviour (parents, and DPO for reference)

    def view(self) -> dict:
        c = self.candidate
        brief = summary(c, with_metrics=not self.detailed)  # a detailed entry names its metrics in `behaviour`
        return {"name": c.name, "summary": brief, "code": c.code.strip() if self.level == FULL else None,
                "reason": one_line(c.reason), "behaviour": behaviour(c, self.frontier) if self.detailed else []}


def summary(c: Candidate, with_metrics: bool = True) -> str:
    parts = [f"fitness {c.fitness}" if c.fitness else "not evaluated yet" if c.status == Status.PROPOSED
             else f"status {c.status}"]
    if not with_metrics:
        return parts[0]
    metrics = {k: v for k, v in (c.metrics or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)}
    keys = [k for k in metrics if any(tag in k.lower() for tag in _KEY_METRICS)][:4]
    parts += [f"{k} {metrics[k]:.4g}" for k in keys]
    return "; ".join(parts)


def _num(value) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) and math.isfinite(value) else "?"


def behaviour(c: Candidate, frontier=()) -> list[str]:
    """What was measured about a loss, one short line per aspect: the result, the frontier, the curve's shape."""
    metrics = c.metrics or {}
    lines = []
    kl, acc = metrics.get("kl"), metrics.get("heldout_accuracy")
    measured = ([f"KL to the reference {_num(kl)}"] if kl is not None else []) + \
        ([f"held-out accuracy {_num(acc)}"] if acc is not None else [])
    if measured:
        lines.append(", ".join(measured))
    points = [f"beta {_num(b)}: fitness {_num(r)}" + (f", KL {_num(k)}" if k is not None else "")
              for b, r, k in frontier]
    if points:
        lines.append("by beta: " + "; ".join(points))
    shape = (c.diagnostics or {}).get("shape") or {}
    if shape.get("logit"):
        at = "/".join(_num(x) for x in shape["logit"])
        lines.append(f"at beta*margin = {at}: loss {'/'.join(_num(x) for x in shape['loss'])}, "
                     f"d loss/d margin {'/'.join(_num(x) for x in shape['dloss'])}")
    if (c.diagnostics or {}).get("margin_only") is False:
        lines.append("depends on more than the margin (raw log-probs)")
    return lines


def frontier(results, default_beta: float | None = None) -> list[tuple[float, float, float | None]]:
    """(beta, mean fitness, mean KL) per swept beta of a candidate's successful results; [] for one beta."""
    groups: dict[float, list] = {}
    for r in results:
        beta = r.beta if r.beta is not None else default_beta
        if beta is not None and r.ok and r.fitness is not None and math.isfinite(r.fitness):
            groups.setdefault(round(float(beta), 9), []).append(r)
    if len(groups) < 2:
        return []
    out = []
    for beta, rs in sorted(groups.items()):
        kls = [float(r.metrics["kl"]) for r in rs if isinstance(r.metrics.get("kl"), int | float)]
        out.append((beta, sum(r.fitness for r in rs) / len(rs), sum(kls) / len(kls) if kls else None))
    return out


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def entries(context: ProposalContext) -> list[Entry]:
    """Every candidate to show, with a priority: parents > top > best baselines > recent > failures."""
    frontiers = context.frontiers
    out = [Entry("parents", c, 1000 - i, frontier=frontiers.get(c.id, []), detailed=True)
           for i, c in enumerate(context.parents)]
    shown = {c.id for c in context.parents if c.id is not None}  # a parent is shown once, in its own section

    def others(items: list[Candidate]) -> list[tuple[int, Candidate]]:
        return [(i, c) for i, c in enumerate(items) if c.id is None or c.id not in shown]

    out += [Entry("top", c, 900 - i) for i, c in others(context.top)]
    out += [Entry("baselines", c, (800 if i < 2 else 300) - i, FULL if i < 3 else BRIEF,
                  frontier=frontiers.get(c.id, []), detailed=c.name == REFERENCE)
            for i, c in others(context.baselines)]
    out += [Entry("recent", c, 500 - i) for i, c in others(context.recent)]
    out += [Entry("failures", c, 200 - i, BRIEF) for i, c in others(context.failures)]
    if context.top:  # the best found so far always keeps at least its summary line
        next(e for e in out if e.candidate is context.top[0] or (e.candidate.id is not None
                                                                 and e.candidate.id == context.top[0].id)
             ).priority = 10_000
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
