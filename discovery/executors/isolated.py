"""One evaluation worker: candidate code trains in an isolated runner; scoring runs here, in the trusted process.

The trust boundary: only the candidate's loss is untrusted. Its training runs in the sandbox's isolated worker
(scrubbed environment: no API key; network namespace with nothing but a loopback; read-only filesystem except
its scratch dir and its output dir), as `executor.processes_per_candidate` ranks that rendezvous on that
loopback. It leaves a checkpoint in its output dir. Scoring (MT-Bench answers and the keyed judge, the
held-out screen) runs no candidate code, so it runs in this process, which holds the key and the network, and
reads the checkpoint (weights only, as safetensors; config and tokenizer come from the task's own policy).
Tasks whose scoring is pure computation on their in-memory model (`scores_trusted = False`: synthetic) train
and score in the worker in one job, as before.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.executors import paths
from discovery.executors.checkpoints import CheckpointKeeper
from discovery.inner_loop.task import CHECKPOINT_NAME, Fidelity, Task, TrainedCheckpoint, get_task

EVALUATE_JOB = "discovery.inner_loop.worker:evaluate_job"
TRAIN_JOB = "discovery.inner_loop.worker:train_job"
SETUP_JOB = "discovery.inner_loop.worker:setup"
PRELOAD = ("torch", "transformers", "datasets", "trl", "discovery.inner_loop.trainer")  # imported once per worker


def train_limits(task: Task, threads: int, processes: int = 1):
    """The task's training limits for one rank (validation keeps the sandbox's own, tighter ones)."""
    from discovery.sandbox.isolation import Limits

    r = task.train_resources()
    return Limits(wall_seconds=float(r.wall_seconds), memory_mb=int(r.memory_mb),
                  cpu_seconds=int(r.wall_seconds * (max(1, threads) + 1)) + 60, file_mb=int(r.file_mb),
                  open_files=int(r.open_files), loopback_sockets=processes > 1)


def checkpoint_root(config: RunConfig) -> Path:
    root = config.executor.checkpoint_dir or (Path(config.run_dir) / "checkpoints" if config.run_dir else None)
    return Path(root).expanduser().absolute() if root else Path(tempfile.gettempdir()) / "discovery-checkpoints"


def score_device(gpu: str | None) -> str | None:
    """The torch device of a worker's first GPU, as this process numbers it (None: the task decides)."""
    if not gpu:
        return None
    from discovery.executors.layout import visible_gpus

    first, visible = gpu.split(",")[0], visible_gpus()
    return f"cuda:{visible.index(first) if first in visible else 0}"


class IsolatedEvaluator:
    """A warm isolated worker (one job at a time) plus, for `scores_trusted` tasks, the trusted scorer."""

    def __init__(self, config: RunConfig, threads: int, gpu: str | None = None, processes: int | None = None,
                 keeper: CheckpointKeeper | None = None):
        from discovery.executors.accelerate_env import accelerate_env
        from discovery.sandbox.isolation import IsolatedRunner

        self.processes = max(1, int(processes or config.executor.processes_per_candidate))
        self.worker_config = paths.for_worker(config)
        self.task = get_task(self.worker_config)  # this process's copy: scores checkpoints
        self.task.score_device = score_device(gpu)
        self.out_base: Path | None = None
        if self.task.scores_trusted:
            root = checkpoint_root(config)
            root.mkdir(parents=True, exist_ok=True)
            self.out_base = Path(tempfile.mkdtemp(prefix="worker-", dir=root))
            self.keeper = keeper or CheckpointKeeper(root, config.executor.keep_checkpoints)
        rank_threads = max(1, threads // self.processes)
        env = paths.hf_env()
        self.job_env = accelerate_env(config.executor.accelerate_config, self.processes)  # set after the scrub
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        self.limits = train_limits(self.task, rank_threads, self.processes)
        self.runner = IsolatedRunner(preload=PRELOAD, setup=SETUP_JOB, setup_payload={"config": self.worker_config.to_dict()},
                                     limits=self.limits, threads=rank_threads, env=env,
                                     writable=(str(self.out_base),) if self.out_base else (),
                                     readable=paths.readable(self.worker_config), gpu=gpu is not None)

    def evaluate(self, payload: dict[str, Any]) -> EvalResult:
        """payload: {"code", "seed", "fidelity": {...}, "candidate_id"?}; never raises for candidate faults."""
        from discovery.executors.base import result_of

        payload = {**payload, "config": self.worker_config.to_dict()}
        if not self.task.scores_trusted or payload.get("code") is None:
            job = self.runner.run(EVALUATE_JOB, payload, limits=self.limits, processes=1)
            return result_of(payload, job.ok, job.value, job.kind, job.error, job.seconds, tuple(job.isolation))
        out = self.out_base / "job"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        try:
            job = self.runner.run(TRAIN_JOB, {**payload, "out_dir": str(out)}, limits=self.limits,
                                  processes=self.processes, env=self.job_env)
            if not job.ok:
                return result_of(payload, False, None, job.kind, job.error, job.seconds, tuple(job.isolation))
            result = self._score(self._checkpoint(job.value, payload, out), payload)
            result = result.with_isolation(tuple(job.isolation))
            if result.ok:
                kept = self.keeper.offer(out / CHECKPOINT_NAME, _keep_name(payload, result), result.fitness)
                if kept is not None:
                    result = result.with_metrics({"checkpoint": str(kept)})
            return result
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def _checkpoint(self, value: Any, payload: dict[str, Any], out: Path) -> TrainedCheckpoint:
        """The worker's report, trusted for nothing but numbers: the path is ours, seed and fidelity the job's."""
        value = value if isinstance(value, dict) else {}
        fidelity = payload["fidelity"]
        folder = out / CHECKPOINT_NAME
        written = folder.is_dir() and not folder.is_symlink()
        ok = bool(value.get("ok")) and written
        reason = str(value.get("reason") or "")[:2000] or ("" if ok else "training left no checkpoint")
        metrics = value.get("metrics") if isinstance(value.get("metrics"), dict) else {}
        return TrainedCheckpoint(
            seed=int(payload["seed"]), fidelity=fidelity["name"], beta=fidelity.get("beta"),
            path=str(folder) if ok else None, kind="lora" if (folder / "adapter_config.json").is_file() else "full",
            steps=_number(value.get("steps"), int), seconds=_number(value.get("seconds"), float),
            metrics=metrics, ok=ok, reason=reason)

    def _score(self, checkpoint: TrainedCheckpoint, payload: dict[str, Any]) -> EvalResult:
        start = time.perf_counter()
        fidelity = Fidelity(**payload["fidelity"])
        try:
            result = self.task.score_checkpoint(checkpoint, payload["code"], fidelity)
        except Exception as exc:  # noqa: BLE001 - a scoring fault (judge down, ...) fails this evaluation
            result = EvalResult.failure(checkpoint.seed, fidelity.name, checkpoint.beta,
                                        f"scoring: {type(exc).__name__}: {exc}", metrics=dict(checkpoint.metrics),
                                        seconds=checkpoint.seconds, steps=checkpoint.steps)
        return result.with_metrics({"score/seconds": time.perf_counter() - start})

    @property
    def isolation(self) -> list[str]:
        return self.runner.isolation

    def close(self) -> None:
        self.runner.close()
        if self.out_base is not None:
            shutil.rmtree(self.out_base, ignore_errors=True)

    def __enter__(self) -> IsolatedEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _keep_name(payload: dict[str, Any], result: EvalResult) -> str:
    beta = "task" if result.beta is None else f"{result.beta:g}"
    return f"{payload.get('candidate_id', 'x')}-seed{payload['seed']}-{result.fidelity}-beta{beta}"


def _number(value: Any, kind):
    try:
        return kind(value)
    except (TypeError, ValueError):
        return kind(0)


__all__ = ["IsolatedEvaluator", "checkpoint_root", "train_limits"]
