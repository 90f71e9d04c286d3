"""Evaluating candidate code through the sandbox: one warm runner per worker, one child per candidate-seed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from discovery.candidate import EvalResult, Fitness
from discovery.config import RunConfig
from discovery.inner_loop.task import Fidelity, Task
from discovery.stats import fitness_of

EVALUATE_JOB = "discovery.inner_loop.worker:evaluate_job"
SETUP = "discovery.inner_loop.worker:setup"
PRELOAD = ("torch", "transformers", "datasets", "trl", "discovery.inner_loop.trainer")


def make_runner(config: RunConfig, threads: int | None = None):
    """A warm isolated worker with the task's prepared state loaded (call task.prepare() first), and the trusted
    scorer for tasks that score checkpoints outside it (see executors.isolated)."""
    from discovery.executors.isolated import IsolatedEvaluator

    return IsolatedEvaluator(config, threads or config.train.threads or 1)


def _failure_reason(job) -> str:
    last = job.error.strip().splitlines()[-1] if job.error.strip() else job.kind
    if job.kind == "timeout":
        return f"timeout: training did not finish within the limit ({last})"
    if job.kind == "memory":
        return f"memory: the training run exceeded the memory limit ({last})"
    return f"{job.kind}: {last}"


def evaluate_candidate(task: Task, code: str, seed: int, fidelity: Fidelity, runner) -> EvalResult:
    """Train and score `code` at `seed` in an isolated child of `runner`; never raises for candidate faults."""
    payload = {"config": task.config.to_dict(), "code": code, "seed": seed, "fidelity": dataclasses.asdict(fidelity)}
    if hasattr(runner, "evaluate"):  # an IsolatedEvaluator: trains isolated, scores trusted where the task asks
        return runner.evaluate(payload)
    job = runner.run(EVALUATE_JOB, payload)
    if not job.ok:
        return EvalResult.failure(seed, fidelity.name, fidelity.beta, _failure_reason(job), seconds=job.seconds,
                                  isolation=tuple(job.isolation))
    return EvalResult.from_dict({**job.value, "isolation": job.isolation})


def evaluate_seeds(task: Task, code: str, seeds: Sequence[int], fidelity: Fidelity, runner,
                   on_result: Callable[[EvalResult], None] | None = None) -> tuple[list[EvalResult], Fitness | None]:
    """All seeds; the fitness (mean, 95% CI) only when every seed succeeded."""
    results = []
    for seed in seeds:
        result = evaluate_candidate(task, code, seed, fidelity, runner)
        results.append(result)
        if on_result:
            on_result(result)
    if not all(r.ok and r.fitness is not None for r in results):
        return results, None
    return results, fitness_of([r.fitness for r in results])


def mean_metrics(results: Sequence[EvalResult]) -> dict[str, float]:
    """Per-metric mean over the successful seeds (numbers only)."""
    ok = [r for r in results if r.ok]
    keys = {k for r in ok for k, v in r.metrics.items() if isinstance(v, int | float)}
    out = {k: sum(r.metrics[k] for r in ok if k in r.metrics) / max(1, sum(k in r.metrics for r in ok))
           for k in sorted(keys)}
    if ok:
        out["seconds"] = sum(r.seconds for r in ok) / len(ok)
        out["steps"] = sum(r.steps for r in ok) / len(ok)
    return out


def seeds_for(config: RunConfig, n: int | None = None) -> list[int]:
    """The evaluation seeds of a run: config.seed, config.seed + 1, ..."""
    return [config.seed + i for i in range(n or config.eval.seeds)]
