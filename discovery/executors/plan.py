"""Multi-fidelity evaluation plan: which (seed, fidelity) jobs each stage of a candidate needs.

Stages: `screen` (cheap: few seeds, fewer steps) -> `full` (all seeds, the beta sweep) -> `reeval`
(fresh seeds before a candidate may be called best) -> `done`. Baselines run `screen` (as the bar for
promotion) and `full`. The plan is a pure function of the config, so a resumed run recomputes it and
queues only what the archive does not hold yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from discovery.config import RunConfig
from discovery.inner_loop.task import Fidelity

SCREEN, FULL, REEVAL, DONE = "screen", "full", "reeval", "done"


@dataclass(frozen=True)
class Job:
    candidate_id: int
    seed: int
    fidelity: Fidelity

    @property
    def key(self) -> tuple[int, int, str, float | None]:
        return (self.candidate_id, self.seed, self.fidelity.name, self.fidelity.beta)


def first_stage(config: RunConfig) -> str:
    return SCREEN if config.eval.screen else FULL


def stage_jobs(config: RunConfig, candidate_id: int, stage: str, beta: float | None = None) -> list[Job]:
    """The jobs of one stage; `beta` = where REEVAL confirms (the candidate's best beta of the sweep)."""
    e, base = config.eval, config.seed
    if stage == SCREEN:
        fid = Fidelity(name=SCREEN, steps_fraction=e.screen_steps_fraction)
        return [Job(candidate_id, base + i, fid) for i in range(e.screen_seeds)]
    if stage == FULL:
        betas = e.betas or [None]
        return [Job(candidate_id, base + i, Fidelity(name=FULL, beta=b)) for b in betas for i in range(e.seeds)]
    if stage == REEVAL:
        return [Job(candidate_id, base + e.seeds + i, Fidelity(name=FULL, beta=beta)) for i in range(e.reeval_seeds)]
    return []


def baseline_jobs(config: RunConfig, candidate_id: int) -> list[Job]:
    stages = [SCREEN, FULL] if config.eval.screen else [FULL]
    return [job for stage in stages for job in stage_jobs(config, candidate_id, stage)]
