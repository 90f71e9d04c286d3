"""Racing over seeds and the held-out verdict: how much evidence a proposal gets before a decision.

`eval.racing = paired_t` (default) runs a proposal's full evaluation in rungs of seeds: `eval.racing_first_seeds`
seeds, then twice as many, ... up to `eval.seeds` (`rungs`). After each rung the proposal is compared with DPO
paired by seed (same seeds, same beta grid, the run's `eval.fitness`), and with the incumbent (the current
best, when that is another proposal): when the 99% Student-t interval (n-1 df) of the per-seed difference lies
below 0 it is already clearly worse and stops (`decide`); otherwise it gets the next rung. 99%, not 95%: a
proposal is looked at once per rung, and at 95% the repeated looks stopped 3-14% of the library losses that
tie DPO on 10 seeds (bench/racing_sim.py, docs/tasks.md "Racing"). Only a proposal that
survived every rung goes on to re-evaluation, so racing saves seeds on losers and never shortens the
confirmation of a winner. `eval.racing = off` runs every seed at once.

`heldout_verdict`: after re-evaluation on fresh seeds the winner is trained on each held-out task instance
(`eval.heldout_instances`) with DPO on the same seeds and grid; it passes when it beats or ties DPO there, i.e.
the paired 95% interval of (winner - DPO) does not lie below 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from discovery.stats import PAIRED_T, PERMUTATION, Paired, paired

MORE, STOP, DONE = "more", "stop", "done"
STOP_LEVEL = 0.99  # the paired interval that stops a proposal: 95% stopped 3-14% of ties (bench/racing_sim.py)
TESTS = {"t": PAIRED_T, "permutation": PERMUTATION}


def rungs(first: int, cap: int) -> list[int]:
    """Cumulative seed counts of the rungs: first, 2 first, 4 first, ... and `cap` last."""
    out, n = [], max(1, min(first, cap))
    while n < cap:
        out.append(n)
        n *= 2
    return [*out, cap]


def next_rung(done: int, first: int, cap: int) -> int:
    """The smallest rung that holds more than `done` seeds (cap when every rung is done)."""
    return next((n for n in rungs(first, cap) if n > done), cap)


@dataclass(frozen=True)
class Verdict:
    action: str  # MORE (the next rung) | STOP (clearly worse) | DONE (every rung run, no reason to stop)
    reason: str = ""
    versus: Paired | None = None  # the comparison that decided


def decide(candidate: Mapping[int, float], dpo: Mapping[int, float], incumbent: Mapping[int, float] | None,
           n: int, cap: int, test: str = "t", level: float = STOP_LEVEL) -> Verdict:
    """After a rung of `n` seeds: stop a proposal that is clearly worse than DPO or than the incumbent (the
    paired `level` t interval of the difference lies below 0)."""
    for who, other in (("DPO", dpo), ("the incumbent", incumbent)):
        if not other:
            continue
        vs = paired(candidate, other, TESTS.get(test, PAIRED_T), level=level)
        if vs.n >= 2 and vs.ci_high < 0:
            return Verdict(STOP, f"raced out after {n} of {cap} seeds: below {who} by {-vs.diff:.4f} "
                                 f"(paired {level:.0%} upper bound {vs.ci_high:+.4f} < 0, n={vs.n})", vs)
    return Verdict(DONE if n >= cap else MORE)


def heldout_verdict(candidate: Mapping[int, float], dpo: Mapping[int, float], instance: int,
                    test: str = "t") -> Verdict:
    """DONE when the candidate beats or ties DPO on held-out instance `instance` (paired), else STOP."""
    vs = paired(candidate, dpo, TESTS.get(test, PAIRED_T))
    text = f"held-out instance {instance}: {vs.diff:+.4f} ± {vs.se:.4f} vs DPO (n={vs.n})"
    if vs.n < 2:
        return Verdict(STOP, f"{text}: fewer than 2 common seeds", vs)
    if vs.ci_high < 0:
        return Verdict(STOP, f"{text}: below DPO (paired 95% upper bound {vs.ci_high:+.4f} < 0)", vs)
    return Verdict(DONE, f"{text}: beats or ties DPO", vs)


# ---------------------------------------------------------------- reading the evidence from the archive


def by_seed(archive, candidate_id: int, fidelity: str, seeds: range) -> dict[int, float]:
    """{seed: value} of one candidate's results at `fidelity` on `seeds`, by the run's `eval.fitness` rule
    (best_beta: every seed at the beta that is best on these seeds)."""
    from discovery.inner_loop.sweep import sweep_fitness

    results = [e.result for e in archive.evaluations(candidate_id, fidelity) if e.result.seed in seeds]
    return sweep_fitness(results, *archive.fitness_rule()).by_seed if results else {}


def race(archive, config, candidate_id: int, n: int, dpo_id: int | None, incumbent_id: int | None) -> Verdict:
    """The racing verdict after the rung of `n` full seeds (the run's first n seeds)."""
    seeds = range(config.seed, config.seed + n)
    mine = by_seed(archive, candidate_id, "full", seeds)
    dpo = by_seed(archive, dpo_id, "full", seeds) if dpo_id is not None else {}
    incumbent = by_seed(archive, incumbent_id, "full", seeds) \
        if incumbent_id not in (None, dpo_id, candidate_id) else None
    return decide(mine, dpo, incumbent, n, config.eval.seeds, config.eval.paired_test)


def heldout(archive, config, candidate_id: int, dpo_id: int | None, instances: list[int]) -> Verdict:
    """DONE when the candidate beats or ties DPO on every held-out instance (re-evaluation seeds), else STOP."""
    from discovery.executors.plan import heldout_fidelity_name

    if dpo_id is None:
        return Verdict(DONE, "held-out instances scored; no dpo baseline in this run to compare with")
    seeds = range(config.seed + config.eval.seeds, config.seed + config.eval.seeds + config.eval.reeval_seeds)
    reasons = []
    for k in instances:
        name = heldout_fidelity_name(k)
        verdict = heldout_verdict(by_seed(archive, candidate_id, name, seeds), by_seed(archive, dpo_id, name, seeds),
                                  k, config.eval.paired_test)
        if verdict.action == STOP:
            return verdict
        reasons.append(verdict.reason)
    return Verdict(DONE, "; ".join(reasons))
