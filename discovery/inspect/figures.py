"""The report's figures (matplotlib, Agg), each returned as an inline `data:image/png;base64,...` URI."""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from discovery import ranking  # noqa: E402
from discovery.inspect.views import CandidateRow  # noqa: E402

STATUS_COLORS = {"evaluated": "#2b7bba", "failed": "#d62728", "invalid": "#7f7f7f", "duplicate": "#bcbd22",
                 "queued": "#9467bd", "training": "#9467bd", "proposed": "#9467bd"}
BASELINE_COLORS = ("#ff7f0e", "#2ca02c", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def progress(rows: list[CandidateRow], objective: str, needs_reeval: bool = True) -> str:
    """Every scored proposal with its 95% CI against proposal number, the best so far (`ranking.running_best`:
    the fitness of the proposal that may be called best at that point), baselines as bands.

    One errorbar artist per fidelity (not one per point): 10,000 proposals draw in well under a second.
    """
    fig, ax = plt.subplots(figsize=(8, 4.2))
    proposals = [r for r in rows if not r.baseline]
    points: dict[str, list[tuple[int, float, float, float]]] = {"full": [], "screen": []}
    best_xs = []
    for i, (r, best) in enumerate(zip(proposals, ranking.running_best(proposals, needs_reeval), strict=True), 1):
        if not _finite(r.fitness):
            continue
        low = r.fitness - r.ci_low if _finite(r.ci_low) else 0.0
        high = r.ci_high - r.fitness if _finite(r.ci_high) else 0.0
        points["full" if r.fidelity == "full" else "screen"].append((i, r.fitness, low, high))
        best_xs.append((i, best.fitness if best is not None else -math.inf))
    small = len(proposals) <= 500
    for fidelity, color, marker in (("screen", "#9ecae1", "s"), ("full", "#2b7bba", "o")):
        pts = points[fidelity]
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[[p[2] for p in pts], [p[3] for p in pts]],
                        fmt=marker, color=color, capsize=3 if small else 0, markersize=5 if small else 2,
                        elinewidth=1 if small else 0.4, linestyle="none")
    drawn = [(i, b) for i, b in best_xs if math.isfinite(b)]
    if drawn:
        ax.step([i for i, _ in drawn], [b for _, b in drawn], where="post", color="black", label="best so far")
    for color, r in zip(BASELINE_COLORS, [r for r in rows if r.baseline and _finite(r.fitness)], strict=False):
        if _finite(r.ci_low) and _finite(r.ci_high):
            ax.axhspan(r.ci_low, r.ci_high, color=color, alpha=0.15)
        ax.axhline(r.fitness, color=color, linestyle="--", label=f"baseline {r.name}")
    ax.set_xlabel("proposal number")
    ax.set_ylabel(objective or "fitness")
    ax.set_xlim(0, max(len(proposals), 1) + 1)
    ax.set_title("Fitness (mean, 95% CI) of every scored proposal; squares = screen fidelity only")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def loss_curves(curves: dict[str, dict[str, list[float]]], beta: float) -> str:
    """f(beta * margin) and its derivative for the best candidates next to DPO (as in the paper's figures)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in curves.items():
        x = [beta * m for m in curve["margin"]]
        style = {"color": "black", "linestyle": "--"} if name == "dpo" else {}
        left.plot(x, curve["loss"], label=name, **style)
        # d loss / d rho = (d loss / d margin) / beta
        right.plot(x, [d / beta for d in curve["dloss"]], label=name, **style)
    left.set_title(f"loss f(ρ) at β = {beta:g}")
    right.set_title("derivative df/dρ")
    for ax in (left, right):
        ax.set_xlabel("ρ = β · margin (logits)")
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    return to_data_uri(fig)


def frontier(points: dict[str, list[tuple[float, float, float]]], objective: str) -> str:
    """Reward against KL per candidate, one point per beta of the sweep (beta annotated)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, pts in points.items():
        pts = sorted(pts, key=lambda p: p[0])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name,
                linestyle="--" if name == "dpo" else "-")
        for kl, value, beta in pts:
            ax.annotate(f"β={beta:g}", (kl, value), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("KL to the reference")
    ax.set_ylabel(objective or "fitness")
    ax.set_title("Reward-KL frontier over the beta sweep")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


LABELLED = 40  # a lineage graph with more candidates names only the baselines and the best of the rest


def lineage(rows: list[CandidateRow], needs_reeval: bool = True) -> str:
    """Candidates by generation (x) with edges from parents to children, coloured by status.

    Drawn with one scatter per status and one LineCollection of edges, so it scales to 10,000 candidates;
    beyond LABELLED candidates only the baselines and the first LABELLED proposals in table order are named.
    """
    from matplotlib.collections import LineCollection

    by_gen: dict[int, list[CandidateRow]] = defaultdict(list)
    for r in rows:
        by_gen[r.generation].append(r)
    pos = {r.id: (gen, i) for gen, group in by_gen.items() for i, r in enumerate(group)}
    height = max((len(g) for g in by_gen.values()), default=1)
    fig, ax = plt.subplots(figsize=(8, max(2.5, min(12.0, 0.35 * height + 1.5))))
    edges = [(pos[p], pos[r.id]) for r in rows for p in r.parents if p in pos]
    if len(rows) <= LABELLED:
        for (x0, y0), (x1, y1) in edges:
            ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "#999999", "lw": 0.8})
    elif edges:
        ax.add_collection(LineCollection(edges, colors="#999999", linewidths=0.3, alpha=0.5, zorder=1))
    size = 90 if len(rows) <= LABELLED else 12
    for baseline, marker in ((False, "o"), (True, "D")):
        for status, color in STATUS_COLORS.items():
            group = [pos[r.id] for r in rows if r.baseline == baseline and r.status == status]
            if group:
                ax.scatter([x for x, _ in group], [y for _, y in group], s=size, color=color, marker=marker,
                           zorder=3, edgecolors="black", linewidths=0.5 if size > 20 else 0.1)
        other = [pos[r.id] for r in rows if r.baseline == baseline and r.status not in STATUS_COLORS]
        if other:
            ax.scatter([x for x, _ in other], [y for _, y in other], s=size, color="#333333", marker=marker, zorder=3)
    for r in _named(rows, needs_reeval):
        ax.annotate(f"#{r.id} {r.name[:18]}", pos[r.id], fontsize=7, textcoords="offset points", xytext=(6, -3))
    for status, color in STATUS_COLORS.items():
        if any(r.status == status for r in rows):
            ax.scatter([], [], color=color, label=status)
    ax.set_xlabel("generation")
    ax.set_yticks([])
    named = "" if len(rows) <= LABELLED else f"; {LABELLED} best named"
    ax.set_title(f"Lineage (diamonds = baselines; arrows from parents{named})")
    if rows:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        gens = sorted(by_gen)
        ax.set_xlim(gens[0] - 0.5, gens[-1] + 1.5)
        ax.set_ylim(-0.7, height - 0.3)
    return to_data_uri(fig)


def _named(rows: list[CandidateRow], needs_reeval: bool) -> list[CandidateRow]:
    if len(rows) <= LABELLED:
        return rows
    ranked = ranking.leaderboard((r for r in rows if not r.baseline), needs_reeval)  # table order, scored ones
    return [r for r in rows if r.baseline] + ranked[:LABELLED]


def usage(calls: list[Any], start: float) -> str:
    """Cumulative LLM tokens and cost against minutes since the run started."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    calls = sorted(calls, key=lambda c: c.created_at)
    minutes = [max(0.0, (c.created_at - start) / 60) for c in calls]
    tokens, cost, t, usd = [], [], 0, 0.0
    for c in calls:
        t += c.prompt_tokens + c.completion_tokens
        usd += c.cost_usd
        tokens.append(t)
        cost.append(usd)
    ax.step([0.0, *minutes], [0, *tokens], where="post", color="#2b7bba", label="tokens")
    ax.set_xlabel("minutes since the run started")
    ax.set_ylabel("cumulative tokens", color="#2b7bba")
    twin = ax.twinx()
    twin.step([0.0, *minutes], [0.0, *cost], where="post", color="#d62728", label="cost")
    twin.set_ylabel("cumulative cost (USD)", color="#d62728")
    ax.set_title(f"LLM usage: {len(calls)} calls, {t} tokens, ${usd:.4f}")
    ax.grid(alpha=0.3)
    return to_data_uri(fig)
