"""`discovery report`: one self-contained HTML file (figures inline as PNG data URIs, no network assets)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2

from discovery import __version__
from discovery.archive import Archive
from discovery.inspect import figures
from discovery.inspect.best import winner
from discovery.inspect.curves import CurveSet, sandbox_curves, with_dpo
from discovery.inspect.table import table_context
from discovery.inspect.views import (
    CandidateRow,
    candidate_rows,
    per_beta,
    sort_rows,
    train_beta,
)

TEMPLATES = Path(__file__).parent / "templates"


def build_report(run_dir: str | Path, curves: int = 3, runner=None) -> str:
    """The report's HTML; `curves` = how many of the best proposals get loss curves next to DPO."""
    with Archive.open(run_dir, readonly=True) as archive:
        context = report_context(archive, str(run_dir), curves, runner)
    return render(context)


def render(context: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2").render(**context)


def report_context(archive: Archive, run_dir: str, curves: int, runner=None) -> dict[str, Any]:
    info = archive.run_info()
    config = info.config if info else {}
    beta = train_beta(config)
    summaries = archive.summaries()  # read once: the table, the figures and the winner come from them
    rows = candidate_rows(archive, summaries)
    objective = f"fitness ({info.task_name})" if info else "fitness"
    best = winner(archive, summaries=summaries)
    top = _curve_candidates(archive, rows, curves)
    curve_set = sandbox_curves(with_dpo({_label(r): archive.candidate(r.id).code for r in top}), beta, runner) \
        if curves > 0 else CurveSet()
    calls = archive.llm_calls()
    frontier_points = _frontier(archive, rows, _curve_candidates(archive, rows, FRONTIER_CANDIDATES), beta) \
        if len(config.get("eval", {}).get("betas") or []) > 1 else {}
    return {
        "run_dir": run_dir, "info": info, "version": __version__, "beta": beta,
        "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "started": _when(info.created_at) if info else "-", "ended": _when(info.ended_at) if info else "-",
        "counts": _counts(rows), "usage": archive.usage(), "usage_by_model": archive.usage_by_model(), "best": best,
        "best_row": next((r for r in rows if best and r.id == best.id), None),
        "figures": {
            "progress": figures.progress(rows, objective, archive.needs_reeval()),
            "curves": figures.loss_curves(curve_set.curves, beta) if curve_set.curves else None,
            "frontier": figures.frontier(frontier_points, objective) if frontier_points else None,
            "lineage": figures.lineage(rows, archive.needs_reeval()),
            "usage": figures.usage(calls, info.created_at if info else min((c.created_at for c in calls), default=0))
            if calls else None,
        },
        "curve_problems": curve_set.problems, "curve_labels": list(curve_set.curves),
        **table_context(sort_rows(rows, "fitness", archive.needs_reeval())),  # paged: see inspect/table.py
        "config_text": _config_text(config),
    }


FRONTIER_CANDIDATES = 5  # proposals whose reward-KL frontier is drawn beside the baselines' (DPO's dashed)


def _label(r: CandidateRow) -> str:
    return f"#{r.id} {r.name}"


def _curve_candidates(archive: Archive, rows: list[CandidateRow], k: int) -> list[CandidateRow]:
    """The k best evaluated proposals in table order (those that may be called best first)."""
    if k <= 0:
        return []
    return [r for r in sort_rows(rows, "fitness", archive.needs_reeval())
            if not r.baseline and r.fitness is not None and r.status == "evaluated"][:k]


def _frontier(archive: Archive, rows: list[CandidateRow], top: list[CandidateRow],
              beta: float) -> dict[str, list[tuple[float, float, float]]]:
    """(KL, fitness, beta) per swept beta for the baselines and the curve candidates."""
    out = {}
    for r in [x for x in rows if x.baseline] + top:
        pts = [(g.kl, g.fitness, g.beta) for g in per_beta(archive.evaluations(r.id), beta)
               if g.fidelity == "full" and g.kl is not None and g.fitness is not None and g.beta is not None]
        if len(pts) > 1:
            out[r.name if r.baseline else _label(r)] = pts
    return out


def _counts(rows: list[CandidateRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        if not r.baseline:
            out[r.status] = out.get(r.status, 0) + 1
    return out


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _config_text(config: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None) if config else "(no stored config)"
