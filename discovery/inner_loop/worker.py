"""Jobs run by the sandbox's warm fork server for the inner loop.

`setup` runs once in the server (before any fork): it builds the task from the run config and loads its
prepared state (model, datasets) into memory, so every forked child shares it copy-on-write and reads no
files. `evaluate_job` runs in one hardened child per candidate-seed: it loads the candidate with the
sandbox loader, trains and scores it, and returns the EvalResult as a plain dict.

Payloads: setup {"config": RunConfig.to_dict()}; evaluate_job {"config": ..., "code": str | None (None = the
untrained reference, for tasks that define `evaluate_reference`), "seed": int, "fidelity": {"name", "steps_fraction", "beta",
"instance"}} (instance: a held-out task instance, task.options.seed, preloaded by `setup` too).
train_job (tasks that score on the trusted side): the same plus "out_dir", the only folder the job may write;
it trains (as one rank of `processes` when the runner starts several) and returns the TrainedCheckpoint as a dict.
"""

from __future__ import annotations

import dataclasses

from discovery.candidate import EvalResult
from discovery.config import from_dict
from discovery.executors.plan import heldout_instances, instance_config
from discovery.inner_loop.task import Fidelity, Task, TrainedCheckpoint, get_task

_TASKS: dict[tuple[str, str], Task] = {}  # (task name, cache key) -> task with its state loaded


def _task(config_dict: dict) -> Task:
    task = get_task(from_dict(config_dict))
    key = (task.name, task.cache_key())
    if key not in _TASKS:
        load = getattr(task, "load", None)
        if load is not None:
            load()
        _TASKS[key] = task
    cached = _TASKS[key]
    cached.config = task.config  # same prepared state; this run's train/eval settings
    return cached


def setup(payload: dict) -> None:
    """Preload the task's prepared state in the warm server, and each held-out instance's (prepared by the run)."""
    _task(payload["config"])
    for instance in heldout_instances(from_dict(payload["config"])):
        task = get_task(from_dict(instance_config(payload["config"], instance)))
        if getattr(task, "is_prepared", lambda: True)():
            _task(instance_config(payload["config"], instance))


def _job_task(payload: dict, fidelity: Fidelity) -> Task:
    """The task of one job: the run's instance, or the held-out instance the fidelity names."""
    if fidelity.instance is None:
        return _task(payload["config"])
    return _task(instance_config(payload["config"], fidelity.instance))


def evaluate_job(payload: dict) -> dict:
    """Train and score one candidate at one seed; a fault of the candidate is a failed result, not a crash."""
    fidelity = Fidelity(**payload.get("fidelity", {}))
    task = _job_task(payload, fidelity)
    seed = int(payload["seed"])
    try:
        if payload.get("code") is None:  # the untrained reference policy: a baseline row, no candidate code
            result = task.evaluate_reference(seed, fidelity)
        else:
            result = task.evaluate(payload["code"], seed, fidelity)
    except Exception as exc:  # noqa: BLE001 - candidate code raised during training or scoring
        result = EvalResult.failure(seed, fidelity.name, fidelity.beta, f"{type(exc).__name__}: {exc}"[:500])
    return dataclasses.asdict(result)


def train_job(payload: dict) -> dict:
    """Train one candidate at one seed and save it under payload["out_dir"]; a candidate's fault is ok=False."""
    fidelity = Fidelity(**payload.get("fidelity", {}))
    task = _job_task(payload, fidelity)
    seed = int(payload["seed"])
    try:
        checkpoint = task.train_checkpoint(payload["code"], seed, fidelity, payload["out_dir"])
    except Exception as exc:  # noqa: BLE001 - candidate code raised during training
        checkpoint = TrainedCheckpoint(seed=seed, fidelity=fidelity.name, beta=fidelity.beta, ok=False,
                                       reason=f"{type(exc).__name__}: {exc}"[:500])
    return dataclasses.asdict(checkpoint)
