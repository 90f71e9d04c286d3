"""`discovery run`: the discovery loop, from the embedded defaults, a config file, or a stopped run."""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from discovery import library
from discovery.archive import Archive, RunDirLock, db_path
from discovery.archive.baseline_cache import BaselineCache
from discovery.commands.common import add_config_args, config_from_args
from discovery.config import RunConfig, from_dict
from discovery.errors import ConfigError, DiscoveryError
from discovery.paths import cache_root

SHORTCUTS = {  # flag dest -> config key
    "task": "task.name", "proposer": "proposer.backend", "model": "proposer.model", "proposals": "budget.proposals",
    "seeds": "eval.seeds", "workers": "executor.workers", "executor": "executor.name",
    "report_to": "report_to",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the discovery loop (default: synthetic task, embedded LLM, ~15 min)")
    add_config_args(p)
    p.add_argument("--run-dir", metavar="DIR", help="where the archive and log go (default: runs/<timestamp>)")
    p.add_argument("--task", help="task name (synthetic, hf_dpo, imdb)")
    p.add_argument("--proposer", metavar="BACKEND", help="llamacpp | openai | replay | symbolic")
    p.add_argument("--model", metavar="M", help="the proposer's model")
    p.add_argument("--proposals", type=int, metavar="N", help="proposal budget")
    p.add_argument("--seeds", type=int, metavar="N", help="seeds per full evaluation")
    p.add_argument("--workers", type=int, metavar="N", help="evaluation workers")
    p.add_argument("--executor", choices=["local", "ray"], help="where evaluations run")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run in RUN_DIR")
    p.add_argument("--report-to", nargs="+", metavar="TRACKER",
                   help="experiment trackers, as TRL's report_to: none, all, tensorboard, wandb")
    p.add_argument("--quiet", "-q", action="store_true", help="no live progress; only the final summary")
    p.set_defaults(func=run_command)


# ---------------------------------------------------------------- config and run dir


def stored_config(run_dir: Path) -> RunConfig:
    """The config a run was started with, read from its archive (for --resume and discovery.resume)."""
    if not db_path(run_dir).is_file():
        raise DiscoveryError(f"no run to resume in {run_dir}: {db_path(run_dir)} does not exist")
    with Archive.open(run_dir, readonly=True) as archive:
        info = archive.run_info()
    if info is None:
        raise DiscoveryError(f"{run_dir} holds an archive without a run record; cannot resume it")
    return from_dict(info.config)


def resolve(args) -> tuple[RunConfig, Path, bool]:
    """(config, run_dir, resuming) from the flags; a resumed run keeps its stored config plus overrides."""
    if args.resume:  # the stored config, then --config FILE, the short flags and --set on top
        run_dir = Path(args.resume)
        return config_from_args(args, SHORTCUTS, base=stored_config(run_dir)), run_dir, True
    config = config_from_args(args, SHORTCUTS)
    run_dir = Path(args.run_dir or config.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    if db_path(run_dir).is_file():
        raise DiscoveryError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                             "or choose another --run-dir")
    return replace(config, run_dir=str(run_dir)), run_dir, False


def check(config: RunConfig) -> None:
    """Fail fast, with one line, on what would only fail later (choices and ranges: `config.validate`)."""
    for name in config.eval.baselines:
        if name not in library.names():
            raise ConfigError(f"eval.baselines: no library loss named '{name}'; known: {', '.join(library.names())}")


def check_proposer(config: RunConfig) -> None:
    """The embedded model must be at hand before the slow start-up (task, workers) begins."""
    from discovery.proposer.factory import llm_configs, probe_endpoint

    for p in llm_configs(config.proposer):  # the proposer, or each model of proposer.models
        if p.backend == "llamacpp":
            from discovery.proposer.llamacpp_server import ensure_llama_cpp, resolve_model

            ensure_llama_cpp()
            resolve_model(p.model)  # a local file, or downloaded once into the hub cache

    probe_endpoint(config)  # a remote LLM answers one token now, or the run stops here with one line


def prepare_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DiscoveryError(f"run directory {run_dir} is not writable: {exc.strerror or exc}") from None


def open_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("discovery")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


# ---------------------------------------------------------------- the command


def run_command(args) -> int:
    from discovery.commands.run_progress import quiet_third_party_progress

    quiet_third_party_progress()  # before the task and the workers import datasets/transformers
    config, run_dir, resuming = resolve(args)
    from rich.console import Console

    from discovery.commands.run_progress import LiveProgress, QuietProgress, closing_lines, summary_table

    console = Console(stderr=True)
    progress = QuietProgress() if args.quiet else LiveProgress(console)
    result, top = execute(config, run_dir, resuming, progress, announce=None if args.quiet else console.print)
    out = Console()
    if not args.quiet:
        out.print(summary_table(result, top))
    for line in closing_lines(str(run_dir), result):
        print(line)  # plain: never wrapped, so it can be copied and parsed
    if result.error:
        raise DiscoveryError(f"the run stopped early: {result.error}; continue with --resume {run_dir}", 1)
    return 0


def execute(config: RunConfig, run_dir: Path, resuming: bool, progress, on_event=None, announce=None):
    """THE run path of `discovery run` and `discovery.run()`: checks, lock, log, then the loop.

    `progress` is the live display (LiveProgress / QuietProgress), `on_event` gets every archive event as
    it is written, `announce` prints start-up lines (None = silent). Returns (LoopResult, leaderboard).
    """
    from discovery import tracking

    check(config)
    tracking.resolve(config.report_to)  # an unknown or missing tracker fails before anything starts
    prepare_run_dir(run_dir)
    announce = announce or (lambda _line: None)
    with ExitStack() as stack:
        stack.enter_context(RunDirLock(run_dir))
        handler = open_log(run_dir)
        stack.callback(logging.getLogger("discovery").removeHandler, handler)
        announce(f"run directory: {run_dir}" + (" (resumed)" if resuming else ""))
        check_proposer(config)
        return _run(config, run_dir, stack, progress, announce, resuming, on_event)


def _run(config: RunConfig, run_dir: Path, stack: ExitStack, progress, announce, resuming: bool, on_event=None):
    from discovery.executors import make_executor
    from discovery.executors.plan import heldout_instances, instance_config
    from discovery.inner_loop.task import get_task
    from discovery.loop import DiscoveryLoop
    from discovery.proposer.factory import llm_configs, make_proposer
    from discovery.sandbox import validate
    from discovery.sandbox.validation import validation_runner
    from discovery.selection import make_selection
    from discovery.tracking import make_trackers
    from discovery.tracking.observer import RunObserver

    log = logging.getLogger("discovery.run")
    task = get_task(config)
    config = task.config  # with the task's own settings (imdb: its policy and scorer): stored, sent to workers
    announce(f"task {config.task.name}: preparing (cached after the first run)...")
    task.prepare(None)
    for instance in heldout_instances(config):  # where a winner is confirmed (eval.heldout_instances)
        get_task(from_dict(instance_config(config.to_dict(), instance))).prepare(None)
    # Isolated workers start before the proposer reads any API key (they get a scrubbed environment).
    runner = stack.enter_context(validation_runner())  # torch, sympy and the checks warm before fork
    executor = stack.enter_context(make_executor(config))
    log.info("executor %s", executor.describe())
    archive = stack.enter_context(Archive.open(run_dir))
    archive.start_run(config.to_dict(), config.task.name, task.cache_key())
    archive.log_event("session", "resumed" if resuming else "started", data={"pid": os.getpid(),
                                                                              "executor": executor.describe()})
    def validator(code: str):
        # the verdict, then for a valid loss its formula (a second sandbox job): the archive stores both
        return validate(code, config.sandbox, runner=runner, formula=True,
                        batch_sizes=(config.train.per_device_train_batch_size,),
                        betas=config.training_betas())

    proposer = stack.enter_context(make_proposer(config, validator))
    if any(p.backend == "llamacpp" for p in llm_configs(config.proposer)):  # fail fast: one token now
        announce(f"proposer {config.proposer.backend}: checking that the LLM answers...")
        proposer.probe()
    cache = BaselineCache(cache_root(config.task.cache_dir), config.task.name, task.cache_key(),
                          {**config.train.__dict__, **task.score_key()})  # (the judge too: no stale scores)
    stack.callback(cache.close)
    progress = stack.enter_context(progress)
    trackers = make_trackers(config.report_to, run_dir, config.to_dict())
    observer = stack.enter_context(RunObserver(archive, progress, on_event, trackers))  # closed before the archive
    loop = DiscoveryLoop(config, archive, task.info(), proposer, executor, make_selection(config), cache, observer,
                         validator=validator)
    result = loop.run()
    return result, archive.leaderboard(k=10)  # table order: its first row is result.best (discovery.ranking)
