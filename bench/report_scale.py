"""How long the read-only views take on large archives: `discovery report`, the live view, `discovery runs`.

Fills archives with N synthetic candidates through the archive's real write API (baselines; proposals that
were evaluated over 3 seeds at full fidelity, screened out, invalid, duplicate or failed; LLM calls; lineage),
then times each view in a fresh subprocess (imports included, as a user runs it). With `--before REV` the
same report is also built by the code of git revision REV (extracted with `git archive` into a temporary
folder) side by side, and the ratio is printed.

    nice -n 10 python bench/report_scale.py --sizes 500 2000 10000 --before 4106f84
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from discovery import library  # noqa: E402
from discovery.archive import Archive, db_path  # noqa: E402
from discovery.candidate import Candidate, EvalResult, Origin, Status  # noqa: E402
from discovery.config import RunConfig  # noqa: E402

HEAD = ("def {name}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
        "reference_rejected_logps, beta):\n    margin = (policy_chosen_logps - reference_chosen_logps) - "
        "(policy_rejected_logps - reference_rejected_logps)\n")


class Call:
    """Shaped like the proposer's LLMCall."""

    def __init__(self, rng: random.Random):
        self.model, self.prompt_hash = "bench-model", f"{rng.getrandbits(64):016x}"
        self.prompt_tokens, self.completion_tokens = rng.randint(800, 2000), rng.randint(100, 400)
        self.latency_s, self.cost_usd, self.verdict, self.reply = 2.0, 0.001, "valid", "```python ...```"


def fill(run_dir: Path, n: int, seed: int = 0) -> None:
    """An archive of `n` proposals (plus 4 baselines) written through `Archive`'s write API."""
    rng = random.Random(seed)
    with Archive.open(run_dir) as archive:
        archive.start_run(RunConfig().to_dict(), "synthetic", "bench")
        for name in ("dpo", "slic", "ipo", "lrml"):
            cid = archive.add_candidate(Candidate(name=name, code=library.get(name).code, origin=Origin.LIBRARY,
                                                  status=Status.QUEUED), stage="baseline")
            _evaluate(archive, cid, rng, 0.4 + rng.uniform(-0.05, 0.05), "full", 3)
            archive.transition(cid, Status.EVALUATED, stage="full")
        ids: list[int] = []
        for i in range(n):
            ids.append(_proposal(archive, rng, i, ids))
        archive.end_run("proposal budget used")


def _proposal(archive: Archive, rng: random.Random, i: int, ids: list[int]) -> int:
    name = f"loss_{i}"
    code = "import torch.nn.functional as F\n\n\n" + HEAD.format(name=name) + \
        f"    return -F.logsigmoid(beta * margin) + {rng.uniform(0, 1):.4f} * F.relu(1 - beta * margin)\n"
    parents = tuple(rng.sample(ids[-50:], k=min(len(ids), rng.randint(1, 2))))
    kind = rng.random()
    status = Status.INVALID if kind < 0.15 else Status.DUPLICATE if kind < 0.25 else Status.QUEUED
    c = Candidate(name=name, code=code, thought=f"idea {i}: <b>hinge</b> & margin", generation=i // 4 + 1,
                  parent_ids=parents, proposer="llm", model="bench-model", status=status,
                  reason="line 3: importing `os` is not allowed" if status == Status.INVALID else "",
                  duplicate_of=ids[0] if status == Status.DUPLICATE and ids else None)
    cid = archive.add_candidate(c, calls=[Call(rng)], stage="screen" if status == Status.QUEUED else "")
    if status != Status.QUEUED:
        return cid
    base = rng.gauss(0.4, 0.08)
    if kind < 0.30:
        archive.add_evaluation(cid, EvalResult(seed=0, fitness=None, ok=False, fidelity="screen",
                                               reason="non-finite loss at step 3"))
        archive.transition(cid, Status.FAILED, "screen seed 0: non-finite loss at step 3", stage="screen")
    elif kind < 0.60:
        _evaluate(archive, cid, rng, base, "screen", 1)
        archive.transition(cid, Status.EVALUATED, "screened; not in the top fraction", stage="screen")
    else:
        _evaluate(archive, cid, rng, base, "screen", 1)
        _evaluate(archive, cid, rng, base, "full", 3)
        if kind > 0.9:  # the promising ones are re-evaluated on fresh seeds, as the loop does
            _evaluate(archive, cid, rng, base, "full", 5, first_seed=3)
        archive.transition(cid, Status.EVALUATED, stage="reeval" if kind > 0.9 else "full")
    return cid


def _evaluate(archive: Archive, cid: int, rng: random.Random, base: float, fidelity: str, seeds: int,
              first_seed: int = 0) -> None:
    for seed in range(first_seed, first_seed + seeds):
        value = base + rng.gauss(0, 0.02)
        archive.add_evaluation(cid, EvalResult(seed=seed, fitness=value, fidelity=fidelity, steps=60, seconds=3.0,
                                               metrics={"fitness": value, "kl": rng.uniform(0.5, 5.0),
                                                        "heldout_accuracy": 0.5 + value / 4}))


# ---------------------------------------------------------------- timing


CPU: dict[str, float] = {}  # CPU seconds (user + system) of the last timed child: less hostage to a busy machine


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], pythonpath: Path | None = None) -> float:
    """Wall seconds of one CLI command in a fresh process (its CPU seconds in CPU["last"])."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath or REPO)}
    cpu, started = _children_cpu(), time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "discovery.cli", *args], capture_output=True, text=True, env=env,
                         cwd=str(pythonpath or REPO))
    seconds = time.perf_counter() - started
    CPU["last"] = _children_cpu() - cpu
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    return seconds


def live_seconds(run_dir: Path) -> float:
    """One render of the live view's page, as its server answers a request (in a fresh process)."""
    code = ("import sys, time; t = time.perf_counter(); from discovery.inspect.live import live_page; "
            f"html = live_page({str(run_dir)!r}); print(time.perf_counter() - t, len(html))")
    cpu, started = _children_cpu(), time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    CPU["last"] = _children_cpu() - cpu
    if out.returncode != 0:
        raise SystemExit(f"live view failed: {out.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def checkout(rev: str, into: Path) -> Path:
    """The `discovery` package and prompts of git revision `rev`, extracted into `into`."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "discovery", "prompts"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 10000])
    parser.add_argument("--before", metavar="REV", help="also time the report of this git revision")
    parser.add_argument("--work", metavar="DIR", help="keep the filled archives here (reused when present)")
    parser.add_argument("--before-up-to", type=int, default=None, metavar="N",
                        help="time the --before report only up to N candidates (it is linear and slow)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="report-scale-"))
    old = checkout(args.before, Path(tempfile.mkdtemp(prefix="report-before-"))) if args.before else None
    results = []
    for n in args.sizes:
        run_dir = work / f"n{n}"
        if not db_path(run_dir).is_file():
            t = time.perf_counter()
            fill(run_dir, n)
            print(f"filled {n} candidates in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        row = {"candidates": n}
        row["report_s"] = timed(["report", str(run_dir), "--curves", "0", "-o", str(run_dir / "after.html")])
        row["report_cpu_s"] = CPU["last"]
        row["report_kib"] = (run_dir / "after.html").stat().st_size // 1024
        row["live_s"] = live_seconds(run_dir)
        row["live_cpu_s"] = CPU["last"]
        row["runs_s"] = timed(["runs", str(work), "--json"])
        row["archive_list_s"] = timed(["archive", "list", str(run_dir), "--json"])
        if old is not None and (args.before_up_to is None or n <= args.before_up_to):
            row["report_before_s"] = timed(["report", str(run_dir), "--curves", "0", "-o",
                                            str(run_dir / "before.html")], pythonpath=old)
            row["report_before_kib"] = (run_dir / "before.html").stat().st_size // 1024
            row["report_before_cpu_s"] = CPU["last"]
            row["speedup"] = row["report_before_s"] / row["report_s"]
            row["cpu_speedup"] = row["report_before_cpu_s"] / row["report_cpu_s"]
        results.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
