"""Multi-fidelity evaluation plan: which (seed, fidelity) jobs each stage of a candidate needs.

Stages: `screen` (cheap: few seeds, fewer steps) -> `full` (the seeds, the beta sweep; with `eval.racing` in
rungs of seeds, `discovery.racing`) -> `reeval` (fresh seeds before a candidate may be called best) ->
`heldout` (the same fresh seeds on each held-out task instance, `eval.heldout_instances`, beside DPO's) ->
`done`. Baselines run `screen` (as the bar for promotion) and `full`; DPO's held-out jobs run when a winner
needs them. The plan is a pure function of the config, so a resumed run recomputes it and queues only what
the archive does not hold yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from discovery.config import RunConfig
from discovery.inner_loop.task import Fidelity
from discovery.ranking import INSTANCE_TASKS

SCREEN, FULL, REEVAL, HELDOUT, DONE = "screen", "full", "reeval", "heldout", "done"


@dataclass(frozen=True)
class Job:
    candidate_id: int
    seed: int
    fidelity: Fidelity
    owner: int | None = None  # the candidate whose stage waits for this job (DPO's held-out jobs); None = its own

    @property
    def key(self) -> tuple[int, int, str, float | None]:
        return (self.candidate_id, self.seed, self.fidelity.name, self.fidelity.beta)


def first_stage(config: RunConfig) -> str:
    return SCREEN if config.eval.screen else FULL


def heldout_instances(config: RunConfig) -> list[int]:
    """The held-out instances this run confirms a winner on: `eval.heldout_instances` where the task has
    instances and the run re-evaluates (the held-out jobs use the re-evaluation's fresh seeds); else none."""
    e = config.eval
    if config.task.name not in INSTANCE_TASKS or e.reeval_seeds < 2:
        return []
    return [int(i) for i in e.heldout_instances]


def heldout_fidelity_name(instance: int) -> str:
    return f"{HELDOUT}-{instance}"


def stage_jobs(config: RunConfig, candidate_id: int, stage: str, beta: float | None = None,
               seeds: int | None = None) -> list[Job]:
    """The jobs of one stage; `beta` = where REEVAL and HELDOUT confirm (the candidate's best beta of the sweep);
    `seeds` = how many of the full stage's seeds (a racing rung; default all `eval.seeds`)."""
    e, base = config.eval, config.seed
    if stage == SCREEN:
        fid = Fidelity(name=SCREEN, steps_fraction=e.screen_steps_fraction)
        return [Job(candidate_id, base + i, fid) for i in range(e.screen_seeds)]
    if stage == FULL:
        betas = e.betas or [None]
        n = e.seeds if seeds is None else min(seeds, e.seeds)
        return [Job(candidate_id, base + i, Fidelity(name=FULL, beta=b)) for b in betas for i in range(n)]
    if stage == REEVAL:
        return [Job(candidate_id, base + e.seeds + i, Fidelity(name=FULL, beta=beta)) for i in range(e.reeval_seeds)]
    if stage == HELDOUT:  # at `beta` (the loss's best beta of the full stage) when given, else the whole grid
        betas = [beta] if beta is not None else (e.betas or [None])
        return [Job(candidate_id, base + e.seeds + i, Fidelity(name=heldout_fidelity_name(k), beta=b, instance=k))
                for k in heldout_instances(config) for b in betas for i in range(e.reeval_seeds)]
    return []


def baseline_jobs(config: RunConfig, candidate_id: int) -> list[Job]:
    stages = [SCREEN, FULL] if config.eval.screen else [FULL]
    return [job for stage in stages for job in stage_jobs(config, candidate_id, stage)]


def instance_config(config: dict, instance: int) -> dict:
    """The plain config dict of task instance `instance` (task.options.seed), for the held-out jobs."""
    task = dict(config.get("task") or {})
    task["options"] = {**(task.get("options") or {}), "seed": int(instance)}
    return {**config, "task": task, "eval": {**(config.get("eval") or {}), "heldout_instances": []}}
