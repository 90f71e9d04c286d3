"""Live progress of `discovery run` (rich), its quiet variant, and the closing summary."""

from __future__ import annotations

import math
import os
import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from discovery.archive import CandidateSummary
from discovery.loop import LoopResult, Snapshot
from discovery.loop_progress import duration

QUIET_ENV = {  # read at import by each library, and inherited by the training workers
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub, and transformers' "Writing model shards"
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' "Saving the dataset", "Map", "Filter"
    "TQDM_DISABLE": "1",  # any other tqdm bar
}


def quiet_third_party_progress() -> None:
    """No third-party progress bars in `discovery run`: its own progress shows the stage instead.

    A variable the user set explicitly wins; libraries already imported are switched off directly.
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def activity(s: Snapshot) -> str:
    """What the run is doing now: preparing, baselines, proposing, training, stopping."""
    if s.phase != "discovery":
        return s.phase
    doing = [name for name, busy in (("proposing", s.proposing), ("training", s.in_flight)) if busy]
    return " + ".join(doing) or "waiting"


def fitness_text(s: CandidateSummary | None) -> str:
    if s is None or s.fitness is None:
        return "-"
    return f"{s.candidate.name} #{s.id}: {s.fitness}"


def render(s: Snapshot) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("phase", activity(s) + (f" ({s.stop_reason})" if s.stop_reason else ""))
    head.add_row("baselines", f"{s.baseline_jobs.text()} · {s.baselines_done}/{s.baselines_total} losses evaluated")
    head.add_row("proposals", f"{s.generation} stored, {s.proposing} being proposed")
    c = s.counts
    head.add_row("statuses", f"valid {c.get('evaluated', 0) + c.get('queued', 0) + c.get('training', 0)}"
                 f" · evaluated {c.get('evaluated', 0)} · invalid {c.get('invalid', 0)}"
                 f" · duplicate {c.get('duplicate', 0)} · failed {c.get('failed', 0)}")
    head.add_row("best (by LCB)", fitness_text(s.best))
    head.add_row("dpo", fitness_text(s.dpo))
    head.add_row("LLM", f"{s.usage.calls} calls · {s.usage.tokens} tokens · ${s.usage.cost_usd:.4f}")
    head.add_row("time", f"{duration(s.elapsed)} elapsed · ETA {duration(s.eta)}")
    parts = [head]
    if s.in_flight:
        table = Table(title="in flight", title_justify="left", expand=False)
        for col in ("id", "name", "stage", "jobs"):
            table.add_column(col)
        for cid, name, stage, done, total in s.in_flight[:12]:
            table.add_row(str(cid), name, stage, f"{done}/{total}")
        parts.append(table)
    return Group(*parts)


class LiveProgress:
    """The rich live panel; log lines print above it."""

    def __init__(self, console: Console | None = None, refresh_s: float = 0.5):
        self.console = console or Console(stderr=True)
        self.live = Live(Text("starting..."), console=self.console, refresh_per_second=4, transient=False)
        self.refresh_s = refresh_s
        self._last = 0.0

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def update(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if now - self._last >= self.refresh_s or snapshot.stop_reason:
            self._last = now
            self.live.update(render(snapshot))

    def log(self, message: str) -> None:
        self.console.log(message, markup=False, highlight=False)


class QuietProgress:
    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, snapshot: Snapshot) -> None:
        pass

    def log(self, message: str) -> None:
        pass


def _interval(f) -> str:
    """`mean [low, high]`, or `mean (no CI)` for one seed (as stats.fitness_text says it)."""
    if not (math.isfinite(f.ci_low) and math.isfinite(f.ci_high)):
        return f"{f.mean:.4f} (no CI)"
    return f"{f.mean:.4f} [{f.ci_low:.4f}, {f.ci_high:.4f}]"


def summary_table(result: LoopResult, top: list[CandidateSummary]) -> Table:
    table = Table(title=f"stopped: {result.stop_reason} after {duration(result.elapsed)}", title_justify="left")
    for col in ("#", "name", "origin", "stage", "fitness (95% CI)", "n"):
        table.add_column(col)
    for s in top:
        f = s.fitness
        ci = _interval(f) if f else "-"
        table.add_row(str(s.id), s.candidate.name, str(s.candidate.origin), s.stage, ci, str(f.n if f else 0))
    return table


def closing_lines(run_dir: str, result: LoopResult) -> list[str]:
    c = result.counts
    lines = [
        f"proposals: {sum(c.values())} (evaluated {c.get('evaluated', 0)}, invalid {c.get('invalid', 0)}, "
        f"duplicate {c.get('duplicate', 0)}, failed {c.get('failed', 0)}); LLM {result.usage.tokens} tokens, "
        f"${result.usage.cost_usd:.4f}",
        f"best: {fitness_text(result.best)}   dpo: {fitness_text(result.dpo)}",
        result.time_text(),
    ]
    if result.unfinished:
        lines.append(f"{len(result.unfinished)} candidate(s) not finished; continue with: "
                     f"discovery run --resume {run_dir}")
    lines += [
        "inspect:  " + f"discovery archive list {run_dir}   |   discovery archive show {run_dir} ID",
        "report:   " + f"discovery report {run_dir}",
        "export:   " + f"discovery export {run_dir} --best   |   discovery archive export-jsonl {run_dir}",
    ]
    return lines
