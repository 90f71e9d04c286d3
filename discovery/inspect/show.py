"""`archive show` and `archive list` output: rich renderings and JSON documents of archive views."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from discovery.archive import Archive, CandidateDetail
from discovery.inspect.safe_text import markup, printable, text
from discovery.inspect.views import (
    CandidateRow,
    format_fitness,
    format_number,
    jsonable,
    per_beta,
    row_of,
    train_beta,
)
from discovery.stats import fitness_text

REASON_CHARS = 90  # `archive show` has the whole reason
LIST_COLUMNS = ("id", "gen", "name", "status", "fitness ± CI (n)", "KL", "held-out acc", "parents", "model", "cost")


def list_table(rows: list[CandidateRow], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in LIST_COLUMNS:
        table.add_column(col, overflow="fold", justify="right" if col in ("id", "gen", "KL", "cost") else "left")
    for r in rows:
        name = text(r.name + (" (baseline)" if r.baseline else ""), style="cyan" if r.baseline else "")
        reason = r.reason if len(r.reason) <= REASON_CHARS else r.reason[: REASON_CHARS - 1] + "…"
        status = r.status + (f": {reason}" if reason and r.duplicate_of is None else "")
        if r.duplicate_of is not None:
            status += f" of #{r.duplicate_of}"
        table.add_row(str(r.id), str(r.generation), name, text(status), format_fitness(r), format_number(r.kl),
                      format_number(r.heldout_accuracy), ",".join(f"#{p}" for p in r.parents) or "-",
                      text(r.model or r.proposer or "-"), f"${r.cost_usd:.4f}" if r.llm_calls else "-")
    return table


def detail_document(archive: Archive, detail: CandidateDetail) -> dict[str, Any]:
    """Everything `archive show` knows about one candidate, as JSON-ready data."""
    info = archive.run_info()
    beta = train_beta(info.config if info else {})
    c = detail.candidate
    return {
        "candidate": row_of(detail.summary, detail.llm_calls).to_dict(),
        "thought": c.thought,
        "code": c.code,
        "code_hash": c.code_hash,
        "sympy": c.sympy,
        "latex": c.latex,
        "validation": {"fingerprint": c.fingerprint, "diagnostics": c.diagnostics,
                       "probe_values": archive.probe_values(detail.summary.id)},
        "results": [g.to_dict() for g in per_beta(detail.evaluations, beta)],
        "evaluations": [_evaluation_dict(e) for e in detail.evaluations],
        "lineage": {"parents": [_ref(p) for p in detail.parents], "ancestors": [_ref(p) for p in detail.ancestors],
                    "children": [_ref(p) for p in detail.children],
                    "duplicates": [_ref(p) for p in detail.duplicates]},
        "llm_calls": [_call_dict(x) for x in detail.llm_calls],
        "events": [{"t": e.t, "kind": e.kind, "message": e.message} for e in detail.events],
    }


def _ref(c) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "status": str(c.status)}


def _evaluation_dict(e) -> dict[str, Any]:
    r = e.result
    return {"seed": r.seed, "fidelity": r.fidelity, "beta": r.beta, "ok": r.ok, "fitness": r.fitness,
            "reason": r.reason, "steps": r.steps, "seconds": r.seconds, "metrics": r.metrics}


def _call_dict(x) -> dict[str, Any]:
    return {"id": x.id, "model": x.model, "verdict": x.verdict, "prompt_tokens": x.prompt_tokens,
            "completion_tokens": x.completion_tokens, "latency_s": x.latency_s, "cost_usd": x.cost_usd,
            "reply": x.reply}


def render_detail(doc: dict[str, Any], console: Console) -> None:
    row = doc["candidate"]
    head = markup(f"#{row['id']} {row['name']}  [{row['status']}]" + (" baseline" if row["baseline"] else ""))
    lines = [f"origin {row['origin']}, generation {row['generation']}, proposer {row['proposer'] or '-'}, "
             f"model {row['model'] or '-'}, stage {row['stage'] or '-'}"]
    if row["reason"]:
        lines.append(f"reason: {row['reason']}")
    if doc["thought"]:
        lines.append(f"thought: {doc['thought']}")
    if doc["sympy"]:
        lines.append(f"formula: {doc['sympy']}")
    if doc["latex"]:
        lines.append(f"latex: {doc['latex']}")
    console.print(Panel(text("\n".join(lines), newlines=True), title=head, title_align="left"))
    console.print(Syntax(printable(doc["code"], newlines=True), "python", line_numbers=True, word_wrap=True))
    validation = doc["validation"]
    diag = ", ".join(f"{k}={v}" for k, v in sorted(validation["diagnostics"].items()))
    console.print(Panel(text(f"fingerprint {validation['fingerprint'] or '-'}\n{diag or 'no diagnostics'}",
                             newlines=True), title="validation", title_align="left"))
    console.print(_results_table(doc["results"]))
    console.print(_seeds_table(doc["evaluations"]))
    console.print(_lineage_text(doc["lineage"]))
    console.print(_calls_table(doc["llm_calls"]))


def _results_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="results per fidelity and beta", title_justify="left")
    for col in ("fidelity", "beta", "fitness ± CI (n)", "failed", "KL", "held-out acc", "seeds"):
        table.add_column(col)
    for g in results:
        fit = "-" if g["fitness"] is None else fitness_text(g["fitness"], g["ci_low"], g["ci_high"], g["n"])
        table.add_row(g["fidelity"], format_number(g["beta"], 4), fit, str(g["failed"]), format_number(g["kl"]),
                      format_number(g["heldout_accuracy"]), ",".join(map(str, g["seeds"])))
    return table


def _seeds_table(evals: list[dict[str, Any]]) -> Table:
    table = Table(title="per-seed evaluations", title_justify="left")
    for col in ("seed", "fidelity", "beta", "fitness", "steps", "seconds", "reason"):
        table.add_column(col)
    for e in evals:
        table.add_row(str(e["seed"]), e["fidelity"], format_number(e["beta"], 4), format_number(e["fitness"], 4),
                      str(e["steps"]), f"{e['seconds']:.1f}", text(e["reason"] or ("ok" if e["ok"] else "failed")))
    return table


def _lineage_text(lineage: dict[str, list[dict[str, Any]]]) -> Panel:
    def names(items):
        return ", ".join(f"#{x['id']} {x['name']} ({x['status']})" for x in items) or "-"

    body = "\n".join(f"{k}: {names(v)}" for k, v in lineage.items())
    return Panel(text(body, newlines=True), title="lineage", title_align="left")


def _calls_table(calls: list[dict[str, Any]]) -> Group:
    table = Table(title="LLM calls that produced it (first = proposal, later = fix-up attempts)", title_justify="left")
    for col in ("#", "model", "verdict", "tokens in/out", "latency", "cost"):
        table.add_column(col)
    for i, x in enumerate(calls, 1):
        table.add_row(str(i), text(x["model"]), text(x["verdict"]), f"{x['prompt_tokens']}/{x['completion_tokens']}",
                      f"{x['latency_s']:.1f}s", f"${x['cost_usd']:.4f}")
    replies = [Panel(text(x["reply"][-1500:], newlines=True), title=markup(f"reply {i} ({x['verdict']})"),
                     title_align="left")
               for i, x in enumerate(calls, 1) if x["reply"]]
    return Group(table, *replies)


def dumps(data: Any, indent: int | None = 2) -> str:
    """Strict JSON (non-finite numbers become null), so pandas and jq read it."""
    return json.dumps(jsonable(data), indent=indent, default=str, allow_nan=False)
