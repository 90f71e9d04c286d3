"""Does the loop discover anything, and does the LLM help? Embedded LLM proposer vs the LLM-free control.

For S loop seeds (proposer.seed) and each arm, one `discovery run` of K proposals on the synthetic task, in
its own run dir under OUT/runs/ (re-running the script skips finished arm-seeds and resumes unfinished ones
with `discovery run --resume`). Then every arm-seed's winner (best lower 95% bound at full fidelity) is
re-evaluated on fresh seeds next to DPO and every library loss, in one harness with the same seeds
(the executor's isolated workers; results cached in OUT/reeval.json, so this step resumes too). A winner
more than --min-z (3) paired SE above DPO there is also re-run, beside DPO, on the held-out task instances
(--heldout-instances, default 1 2 3: task.options.seed) with the same fresh seeds; a confirmed win beats DPO
on 2 of them too (discovery_experiment_report.Bar). Writes OUT/experiment.json (everything), OUT/experiment.png and OUT/experiment.md, and prints the goals.

    python bench/discovery_experiment.py --gguf PATH [--seeds 3] [--proposals 30] [--out bench/results/exp]
    python bench/discovery_experiment.py --arms symbolic --seeds 1 --proposals 4      # no LLM needed

Not part of CI; `tests/test_experiment.py` checks its logic on a tiny configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from discovery_experiment_report import (  # noqa: E402  (the pure half, beside this script)
    Bar,
    baselines_in_run,
    best_so_far,
    compare,
    goals,
    markdown,
    plot,
    strict,
    summarize,
)

from discovery import library  # noqa: E402
from discovery.archive import Archive, db_path  # noqa: E402
from discovery.candidate import Status  # noqa: E402
from discovery.executors.layout import cpu_count  # noqa: E402
from discovery.executors.plan import instance_config  # noqa: E402

ACTIVE = (Status.QUEUED, Status.TRAINING, Status.PROPOSED)
# end reasons that leave proposals to make (anything else, e.g. replay out of files, ends a run for good)
RESUMABLE = ("proposal budget", "wall time", "proposer:", "token cap", "cost cap")
SESSIONS = "experiment_sessions.json"


# ---------------------------------------------------------------- runs (one `discovery run` per arm-seed)


# the LLM arm with one switch of the search on (docs/proposers.md#the-search-islands-constant-tuning-several-llms)
SEARCH_ARMS = {"hybrid": ["--set", "proposer.tune_constants=2"],
               "islands": ["--set", "proposer.selection=islands", "--set", "proposer.islands=2"]}


def arm_args(name: str, opts) -> list[str]:
    if name in SEARCH_ARMS:
        return [*arm_args("llm", opts), *SEARCH_ARMS[name]]
    if name == "llm":
        if not opts.gguf:
            raise SystemExit("discovery_experiment: the llm arm needs --gguf PATH (a local GGUF model)")
        threads = ["--set", f"proposer.n_threads={opts.llm_threads}"] if opts.llm_threads else []
        return ["--proposer", "llamacpp", "--model", opts.gguf, *threads]
    if name == "symbolic":
        return ["--proposer", "symbolic"]
    if name == "replay":
        if not opts.replay_dir:
            raise SystemExit("discovery_experiment: the replay arm needs --replay-dir DIR")
        return ["--proposer", "replay", "--set", f"proposer.replay_dir={opts.replay_dir}"]
    raise SystemExit(f"discovery_experiment: unknown arm '{name}' (llm, {', '.join(SEARCH_ARMS)}, symbolic, replay)")


def threads_per_worker(opts) -> int | None:
    """Torch threads per evaluation worker when several arm-seeds share the cores: the cores split between
    all their workers. The layout of one run alone would give each worker cores / workers threads, and
    OpenMP threads that outnumber the cores spin in each other's way (measured on 2 cores, two runs of
    one worker each plus a llama.cpp thread: 60-90 s per training job against 4-7 s single-threaded)."""
    if opts.parallel <= 1 or not opts.workers:
        return None  # one run at a time: its own layout is right
    return max(1, cpu_count() // (opts.parallel * opts.workers))


def run_state(run_dir: Path, proposals: int) -> str:
    """'new', 'unfinished' or 'finished'."""
    if not db_path(run_dir).is_file():
        return "new"
    with Archive.open(run_dir, readonly=True) as archive:
        info = archive.run_info()
        active = any(c.status in ACTIVE for c in archive.candidates())
        count = archive.proposal_count()
    if info is None or info.ended_at is None or active:
        return "unfinished"
    exhausted = not info.end_reason.startswith(RESUMABLE)  # e.g. replay ran out of files
    return "finished" if count >= proposals or exhausted else "unfinished"


def run_arm_seed(run_dir: Path, arm: list[str], seed: int, opts) -> dict:
    """Start, resume or skip one arm-seed; each session's wall time goes to RUN_DIR/experiment_sessions.json."""
    state = run_state(run_dir, opts.proposals)
    if state == "finished":
        return {"state": state}
    common = ["--proposals", str(opts.proposals), "--quiet"]
    if opts.workers:
        common += ["--workers", str(opts.workers)]
    worker_threads = threads_per_worker(opts)
    if worker_threads:
        common += ["--set", f"executor.threads_per_worker={worker_threads}"]
    if state == "new":
        cmd = ["run", "--run-dir", str(run_dir), *arm, "--set", f"proposer.seed={seed}",
               "--set", "budget.wall_time=null", *[x for s in opts.set for x in ("--set", s)], *common]
    else:  # the stored config, plus this invocation's overrides (e.g. more threads or a longer timeout)
        threads = ["--set", f"proposer.n_threads={opts.llm_threads}"] if opts.llm_threads and "--model" in arm else []
        cmd = ["run", "--resume", str(run_dir), *threads, *[x for s in opts.set for x in ("--set", s)], *common]
    start = time.time()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    returncode = None  # stays None if this script is interrupted: the session still counts towards wall time
    try:
        proc = subprocess.run([sys.executable, "-m", "discovery.cli", *cmd], capture_output=True, text=True, env=env)
        returncode = proc.returncode
    finally:
        seconds = time.time() - start
        sessions = _sessions(run_dir)
        sessions.append({"started": start, "seconds": seconds, "returncode": returncode, "state": state})
        if run_dir.is_dir():
            (run_dir / SESSIONS).write_text(json.dumps(sessions, indent=1))
    if returncode != 0:
        print(f"  {run_dir.name}: exit {returncode}: {proc.stderr.strip()[-600:]}", file=sys.stderr)
    return {"state": state, "seconds": seconds, "returncode": returncode}


def by_seed(evaluations) -> dict[int, dict[int, float]]:
    """{candidate id: {seed: fitness}} of the successful evaluations (a beta sweep's values averaged per seed)."""
    groups: dict[int, dict[int, list[float]]] = {}
    for e in evaluations:
        r = e.result
        if r.ok and r.fitness is not None and math.isfinite(r.fitness):
            groups.setdefault(e.candidate_id, {}).setdefault(int(r.seed), []).append(float(r.fitness))
    return {cid: {seed: statistics.fmean(v) for seed, v in seeds.items()} for cid, seeds in groups.items()}


def _sessions(run_dir: Path) -> list[dict]:
    path = run_dir / SESSIONS
    return json.loads(path.read_text()) if path.is_file() else []


def analyse_run(run_dir: Path, k: int) -> dict:
    """Best-so-far curve, proposal shares, tokens, wall time and the winner of one arm-seed."""
    if not db_path(run_dir).is_file():
        raise SystemExit(f"discovery_experiment: {run_dir} holds no archive (its run failed, see above)")
    with Archive.open(run_dir, readonly=True) as archive:
        summaries = archive.summaries()
        dpo = archive.baseline("dpo")
        usage = archive.usage()
        # the arm's winner is the first proposal of the run's table (discovery.ranking: confirmed ones first);
        # unconfirmed when none was re-evaluated: the experiment confirms it on its own fresh seeds
        winners = [s for s in archive.leaderboard() if not s.candidate.is_baseline and s.fidelity == "full"
                   and s.status == "evaluated"][:1]
        config = archive.run_info().config
        per_seed = by_seed(archive.evaluations(fidelity="full"))
    props = [s for s in summaries if not s.candidate.is_baseline][:k]
    full = [s.fitness.mean if s.fidelity == "full" and s.fitness else None for s in props]
    dpo_seeds = per_seed.get(dpo.id, {}) if dpo else {}
    first = next((i + 1 for i, s in enumerate(props) if s.fidelity == "full" and len(dpo_seeds) > 1
                  and compare(per_seed.get(s.id, {}), dpo_seeds)["beats"]), math.inf)
    n = max(1, len(props))
    status = [s.candidate.status for s in props]
    winner = winners[0] if winners else None
    return {
        "run_dir": str(run_dir), "proposals": len(props), "best_so_far": best_so_far(full, k),
        "shares": {"valid": sum(x != Status.INVALID for x in status) / n,
                   "invalid": status.count(Status.INVALID) / n, "duplicate": status.count(Status.DUPLICATE) / n,
                   "failed": status.count(Status.FAILED) / n, "evaluated": status.count(Status.EVALUATED) / n},
        "llm_tokens": usage.tokens, "llm_calls": usage.calls,
        "wall_s": sum(x["seconds"] for x in _sessions(run_dir)),
        "dpo_in_run": summarize(list(dpo_seeds.values())) if dpo_seeds else None,
        "baselines_in_run": {s.candidate.name: s.fitness.mean for s in summaries
                             if s.candidate.is_baseline and s.fidelity == "full" and s.fitness},
        "proposals_to_beat_dpo": first,
        "winner": None if winner is None else {
            "id": winner.id, "name": winner.candidate.name, "code": winner.candidate.code,
            "in_run": summarize(list(winner.fitness.values))},
        "config": config,
    }


# ---------------------------------------------------------------- fresh-seed re-evaluation (same harness for all)


def reevaluate(entries: dict[str, str], config_dict: dict, seeds: list[int], cache_path: Path, workers) -> dict:
    """{label: code} -> {label: summary} on `seeds`; per (code, seed) results cached in `cache_path`."""
    from discovery.config import from_dict
    from discovery.executors import make_executor
    from discovery.inner_loop.task import Fidelity, get_task

    config = from_dict(config_dict)
    if workers:
        config = replace(config, executor=replace(config.executor, workers=workers))
    key = hashlib.sha1(json.dumps([config_dict["task"], config_dict["train"]], sort_keys=True).encode()).hexdigest()
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    def job_key(code: str, seed: int) -> str:
        return f"{key[:12]}:{hashlib.sha1(code.encode()).hexdigest()[:16]}:{seed}"
    todo = sorted({(code, s) for code in entries.values() for s in seeds if job_key(code, s) not in cache})
    if todo:
        get_task(config).prepare(None)
        with make_executor(config) as executor:
            futures = [(code, s, executor.submit(0, code, s, Fidelity(name="full"))) for code, s in todo]
            for i, (code, s, future) in enumerate(futures):
                r = future.result()
                cache[job_key(code, s)] = r.fitness if r.ok and r.fitness is not None else None
                cache_path.write_text(json.dumps(cache))
                print(f"  re-evaluated {i + 1}/{len(futures)}", file=sys.stderr, end="\r")
    out = {}
    for label, code in entries.items():
        values = {s: cache[job_key(code, s)] for s in seeds}
        ok = {s: v for s, v in values.items() if v is not None and math.isfinite(v)}
        out[label] = summarize(list(ok.values())) | {"by_seed": ok, "failed_seeds": len(values) - len(ok)}
    return out


def check_heldout(arms: dict, entries: dict[str, str], config: dict, seeds: list[int], opts, bar: Bar) -> None:
    """Each winner that beats DPO by more than `bar.min_z` paired SE on the fresh seeds, and DPO, on every
    held-out instance (task.options.seed) with the same fresh seeds: seed["heldout"] = {instance: comparison}."""
    strong = [s for a in arms.values() for s in a["seeds"]
              if (s.get("fresh_vs_dpo") or {}).get("z", -math.inf) > bar.min_z]
    for instance in opts.heldout_instances if strong else []:
        print(f"  held-out instance {instance}: {len(strong)} winners and DPO", file=sys.stderr)
        labels = ["dpo", *(s["label"] for s in strong)]
        held = reevaluate({label: entries[label] for label in labels}, instance_config(config, instance), seeds,
                          Path(opts.out) / "reeval.json", opts.workers)
        for s in strong:
            s.setdefault("heldout", {})[instance] = compare(held[s["label"]]["by_seed"], held["dpo"]["by_seed"])


# ---------------------------------------------------------------- main


def parse(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gguf", help="local GGUF of the embedded llama.cpp proposer (the llm arm)")
    p.add_argument("--arms", nargs="+", default=["llm", "symbolic"], help="llm, hybrid, islands, symbolic, replay")
    p.add_argument("--seeds", type=int, default=3, help="independent loop seeds (proposer.seed 0..S-1)")
    p.add_argument("--proposals", type=int, default=30, help="proposals per run")
    p.add_argument("--fresh-seeds", type=int, default=10, help="fresh seeds for the re-evaluation")
    p.add_argument("--min-z", type=float, default=3.0, help="a confirmed win beats DPO by more than this many "
                   "paired SE on the fresh seeds")
    p.add_argument("--heldout-instances", type=int, nargs="*", default=[1, 2, 3],
                   help="held-out task instances (task.options.seed) a winner over the bar is re-run on; a "
                        "confirmed win beats DPO on 2 of them")
    p.add_argument("--fresh-seed-base", type=int, default=1000, help="first fresh seed (the runs use 0..)")
    p.add_argument("--library", nargs="*", help="library losses to re-evaluate (default: all)")
    p.add_argument("--out", default="bench/results/experiment", help="output dir (run dirs under OUT/runs)")
    p.add_argument("--workers", type=int, help="evaluation workers (default: the machine's best layout)")
    p.add_argument("--llm-threads", type=int, help="threads of the embedded llama.cpp server")
    p.add_argument("--parallel", type=int, default=1,
                   help="arm-seeds run at once (e.g. 2 with --llm-threads 1 --workers 1 on 2 cores)")
    p.add_argument("--replay-dir", help="loss files for the replay arm")
    p.add_argument("--llm-arm", default="llm", help="the arm the goals treat as the LLM arm")
    p.add_argument("--control-arm", default="symbolic", help="the arm the goals treat as the control")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    opts = parse(argv)
    out = Path(opts.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    started = time.time()
    arm_flags = {name: arm_args(name, opts) for name in opts.arms}

    def one(job: tuple[int, str]) -> None:
        seed, name = job
        print(f"[{time.time() - started:6.0f}s] {name} seed {seed}", file=sys.stderr)
        run_arm_seed(out / "runs" / f"{name}-seed{seed}", arm_flags[name], seed, opts)

    with ThreadPoolExecutor(max(1, opts.parallel)) as pool:  # each arm-seed is its own `discovery run` process
        list(pool.map(one, [(seed, name) for seed in range(opts.seeds) for name in arm_flags]))
    arms = {}
    for name in opts.arms:
        seeds = []
        for seed in range(opts.seeds):
            run = analyse_run(out / "runs" / f"{name}-seed{seed}", opts.proposals)
            seeds.append(run | {"seed": seed, "label": f"{name}/seed{seed}: {(run['winner'] or {}).get('name')}"})
        arms[name] = {"seeds": seeds, "median_proposals_to_beat_dpo":
                      statistics.median([s["proposals_to_beat_dpo"] for s in seeds])}
    config = next(s for a in arms.values() for s in a["seeds"])["config"]
    library_names = opts.library if opts.library else library.names()
    entries = {name: library.get(name).code for name in dict.fromkeys(["dpo", *library_names])}
    entries |= {s["label"]: s["winner"]["code"] for a in arms.values() for s in a["seeds"] if s["winner"]}
    fresh_seeds = [opts.fresh_seed_base + i for i in range(opts.fresh_seeds)]
    print(f"[{time.time() - started:6.0f}s] re-evaluating {len(entries)} losses on seeds {fresh_seeds}",
          file=sys.stderr)
    fresh = reevaluate(entries, config, fresh_seeds, out / "reeval.json", opts.workers)
    bar = Bar(opts.min_z, opts.fresh_seeds, min(2, len(opts.heldout_instances)))
    for a in arms.values():
        for s in a["seeds"]:
            s.pop("config")
            if s["winner"] and fresh[s["label"]]["n"] > 1:
                s["fresh_vs_dpo"] = compare(fresh[s["label"]]["by_seed"], fresh["dpo"]["by_seed"])
    check_heldout(arms, entries, config, fresh_seeds, opts, bar)
    lib_ranked = sorted((n for n in library_names if fresh[n]["n"]), key=lambda n: -fresh[n]["mean"])
    dpo_runs = [s["dpo_in_run"]["mean"] for a in arms.values() for s in a["seeds"] if s["dpo_in_run"]]
    result = {"settings": vars(opts), "arms": arms, "fresh_seeds": fresh_seeds, "reevaluation": fresh,
              "best_library": lib_ranked[0] if lib_ranked else "dpo",
              "dpo_in_run": statistics.fmean(dpo_runs) if dpo_runs else math.nan,
              "baselines_in_run": baselines_in_run(arms),
              "goals": goals(arms, opts.llm_arm, opts.control_arm, opts.seeds, bar),
              "script_wall_s": time.time() - started, "host": os.uname().nodename, "cpus": os.cpu_count()}
    log = out / "invocations.json"  # every invocation's wall time: the total of a resumed experiment
    result["invocations"] = (json.loads(log.read_text()) if log.is_file() else []) + [
        {"started": started, "seconds": result["script_wall_s"]}]
    log.write_text(json.dumps(result["invocations"]))
    (out / "experiment.json").write_text(json.dumps(strict(result), indent=1, default=str))
    plot(result, out / "experiment.png")
    table = markdown(result)
    (out / "experiment.md").write_text(table)
    print(table)
    print(f"wall time of this invocation: {result['script_wall_s']:.0f} s; outputs in {out}/")
    return result


if __name__ == "__main__":
    main()
