"""The live view of a run: `discovery report RUN_DIR --watch` serves it on 127.0.0.1 while the run goes.

Each request opens the archive read-only (SQLite `mode=ro`, the run's lock untouched), renders the
state (best so far, DPO, proposals by status, the in-flight candidates with their stage and jobs done,
the last failures with their reasons, the leaderboard's head, tokens and cost) with Jinja's autoescape
(candidate text is untrusted: every value is HTML-escaped), and closes it. The page fetches `/fragment`
every few seconds and swaps it in; `/state.json` is the same state as strict JSON. Only summaries are
shown, so a 10,000-candidate run renders as fast as a small one (the full table is `discovery report`).
"""

from __future__ import annotations

import datetime as dt
import http.server
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import jinja2

from discovery import jsonout, ranking
from discovery.archive import Archive, ArchiveError, CandidateSummary, db_path
from discovery.inspect.runs import RUNNING, state_of
from discovery.stats import fitness_text

TEMPLATES = Path(__file__).parent / "templates"
FAILURES, LEADERS, IN_FLIGHT = 10, 10, 50


def _fitness(s: CandidateSummary | None) -> dict[str, Any] | None:
    if s is None or s.fitness is None:
        return None
    f = s.fitness
    half = (f.ci_high - f.ci_low) / 2
    return {"id": s.id, "name": s.candidate.name, "mean": f.mean, "half": half if math.isfinite(half) else None,
            "n": f.n, "stage": s.stage, "status": str(s.candidate.status), "baseline": s.candidate.is_baseline,
            "text": fitness_text(f.mean, f.ci_low, f.ci_high, f.n)}


def _planned_jobs(config: dict[str, Any] | None):
    """stage -> number of jobs (seed x fidelity x beta) in this run's plan; {} if the config cannot be read."""
    try:
        from discovery.config import from_dict
        from discovery.executors.plan import FULL, REEVAL, SCREEN, baseline_jobs, stage_jobs

        cfg = from_dict(config or {})
    except Exception:  # a config of another version: the totals are then unknown, the rest still shows
        return {}
    plan = {stage: len(stage_jobs(cfg, 0, stage)) for stage in (SCREEN, FULL, REEVAL)}
    plan["baseline"] = len(baseline_jobs(cfg, 0))
    return plan


def in_flight(archive: Archive, config: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Queued and training candidates: stage, evaluations stored at it and the jobs the stage plans."""
    plan = _planned_jobs(config)
    active = [c for status in ("training", "queued") for c in archive.candidates(status=status)]
    out = []
    for c in sorted(active, key=lambda c: c.id)[:IN_FLIGHT]:
        stage = archive.stage(c.id)
        evals = archive.evaluations(c.id)
        if stage == "baseline":
            done = len(evals)
        elif stage == "reeval":  # fresh full-fidelity seeds beyond those of the full stage
            done = max(0, sum(1 for e in evals if e.result.fidelity == "full") - plan.get("full", 0))
        else:
            done = sum(1 for e in evals if e.result.fidelity == stage)
        out.append({"id": c.id, "name": c.name, "status": str(c.status), "stage": stage or "-", "done": done,
                    "total": plan.get(stage)})
    return out


def last_failures(archive: Archive) -> list[dict[str, Any]]:
    failed = archive.candidates(status="failed") + archive.candidates(status="invalid")
    return [{"id": c.id, "name": c.name, "status": str(c.status), "reason": c.reason}
            for c in sorted(failed, key=lambda c: c.id, reverse=True)[:FAILURES]]


def live_state(archive: Archive, run_dir: str | Path) -> dict[str, Any]:
    info = archive.run_info()
    summaries = archive.summaries()  # read once: the best, the leaderboard and the counts come from it
    state = state_of(archive, run_dir, summaries)
    now = time.time()
    end = now if state.state == RUNNING or not info or info.ended_at is None else info.ended_at
    leaders = ranking.leaderboard(summaries, archive.needs_reeval())[:LEADERS]
    return {
        "run_dir": str(run_dir), "state": state.state, "reason": state.reason, "task": state.task,
        "elapsed_s": (end - info.created_at) if info else None, "proposals": state.proposals,
        "budget": (info.config.get("budget", {}).get("proposals") if info else None), "counts": state.counts,
        "best": state.best, "best_text": _fitness_text(state.best), "dpo": state.dpo,
        "dpo_text": _fitness_text(state.dpo), "in_flight": in_flight(archive, info.config if info else None),
        "failures": last_failures(archive), "leaders": [_fitness(s) for s in leaders],
        "llm_calls": state.llm_calls, "tokens": state.tokens, "cost_usd": state.cost_usd,
        "updated": dt.datetime.fromtimestamp(now).strftime("%H:%M:%S"),
    }


def _fitness_text(f: dict[str, Any] | None) -> str:
    if not f:
        return "-"
    return f"#{f['id']} {f['name']}: " + fitness_text(f["mean"], f["ci_low"], f["ci_high"], f["n"])


def read_state(run_dir: str | Path) -> dict[str, Any]:
    with Archive.open(run_dir, readonly=True) as archive:
        try:
            return live_state(archive, run_dir)
        except sqlite3.DatabaseError as exc:
            raise ArchiveError(f"{db_path(run_dir)} is not a readable archive: {exc}") from None


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def live_fragment(run_dir: str | Path) -> str:
    state = read_state(run_dir)
    return _env().get_template("live_fragment.html.j2").render(s=state, duration=_duration(state["elapsed_s"]))


def live_page(run_dir: str | Path, interval_s: float = 2.0) -> str:
    state = read_state(run_dir)
    return _env().get_template("live.html.j2").render(s=state, duration=_duration(state["elapsed_s"]),
                                                      interval_ms=int(interval_s * 1000))


# ---------------------------------------------------------------- the server


def make_server(run_dir: str | Path, port: int = 0, interval_s: float = 2.0) -> http.server.ThreadingHTTPServer:
    """A server on 127.0.0.1 (never another interface); port 0 = any free port (see `server_address`)."""
    run_dir = str(run_dir)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            path = self.path.split("?", 1)[0]
            try:
                if path == "/":
                    self._send(200, "text/html; charset=utf-8", live_page(run_dir, interval_s))
                elif path == "/fragment":
                    self._send(200, "text/html; charset=utf-8", live_fragment(run_dir))
                elif path == "/state.json":
                    self._send(200, "application/json", jsonout.dumps(read_state(run_dir)))
                else:
                    self._send(404, "text/plain; charset=utf-8", "not found")
            except ArchiveError as exc:
                self._send(503, "text/plain; charset=utf-8", str(exc))

        def _send(self, code: int, kind: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; "
                             "style-src 'unsafe-inline'; connect-src 'self'")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet: the terminal shows the URL, not every poll
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)


def serve_in_thread(run_dir: str | Path, port: int = 0, interval_s: float = 2.0):
    """(server, url) with the server running in a daemon thread (tests and notebooks); `server.shutdown()`."""
    server = make_server(run_dir, port, interval_s)
    threading.Thread(target=server.serve_forever, daemon=True, name="live-view").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
