"""Beta-sweep summary (frontier sorted by KL, robustness = worst mean fitness, None when a beta failed), THE fitness
of a swept loss (eval.fitness), and the paired small-sample tests."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from discovery.candidate import EvalResult
from discovery.inner_loop.sweep import SweepSummary, interpolate, point, sweep_fitness
from discovery.stats import PERMUTATION, fitness_of, paired


def _results(values, kl):
    return [EvalResult(seed=i, fitness=v, metrics={"kl": kl}) for i, v in enumerate(values)]


def test_frontier_and_robustness():
    points = [point(b, _results(v, kl), fitness_of(v))
              for b, v, kl in ((0.5, [0.1, 0.3], 1.0), (0.05, [0.4, 0.6], 5.0), (0.1, [0.5, 0.7], 3.0))]
    summary = SweepSummary(points)
    assert [row[2] for row in summary.frontier] == [0.5, 0.1, 0.05]  # sorted by KL
    assert abs(summary.robustness - 0.2) < 1e-12 and summary.failed_betas == []
    assert summary.to_dict()["frontier"][0] == {"kl": 1.0, "fitness": summary.frontier[0][1], "beta": 0.5}


def test_a_failed_beta_has_no_robustness():
    failed = [EvalResult(seed=0, fitness=None, ok=False, reason="non-finite loss (nan) at step 3")]
    summary = SweepSummary([point(0.01, failed, None), point(0.1, _results([0.5, 0.6], 2.0), fitness_of([0.5, 0.6]))])
    assert summary.robustness is None and summary.failed_betas == [0.01]
    assert summary.points[0].failures == ["seed 0: non-finite loss (nan) at step 3"]
    assert [row[2] for row in summary.frontier] == [0.1]


# ---------------------------------------------------------------- THE fitness of a swept loss (eval.fitness)

def _sweep(table):
    """{beta: [(fitness, kl) per seed]} -> EvalResults with beta and seed set."""
    return [EvalResult(seed=s, fitness=f, beta=b, metrics={"kl": kl})
            for b, rows in table.items() for s, (f, kl) in enumerate(rows)]


def test_best_beta_scores_the_loss_at_its_own_best_temperature():
    results = _sweep({0.05: [(-0.9, 6.0), (-0.8, 6.2)], 0.1: [(-0.7, 4.0), (-0.72, 4.2)], 0.2: [(-0.8, 2.0), (-0.8, 2.1)]})
    best = sweep_fitness(results, "best_beta")
    assert best.beta == 0.1 and best.fitness.n == 2 and abs(best.fitness.mean + 0.71) < 1e-12
    assert best.by_seed == {0: -0.7, 1: -0.72} and abs(best.kl - 4.1) < 1e-12
    pooled = sweep_fitness(results, "pooled")
    assert pooled.fitness.n == 6 and pooled.fitness.mean < best.fitness.mean and pooled.beta is None


def test_a_loss_that_is_another_loss_at_twice_the_beta_ties_under_best_beta_but_not_at_one_beta():
    dpo = {0.05: [(-0.9, 6.0)], 0.1: [(-0.7, 4.0)], 0.2: [(-0.8, 2.0)], 0.4: [(-0.95, 1.0)]}
    doubled = {b: dpo[2 * b] for b in (0.05, 0.1, 0.2)} | {0.4: [(-1.1, 0.5)]}  # DPO at 2 beta, shifted by one
    a, b = sweep_fitness(_sweep(dpo)), sweep_fitness(_sweep(doubled))
    assert a.fitness.mean == b.fitness.mean and (a.beta, b.beta) == (0.1, 0.05)
    assert dpo[0.1] != doubled[0.1]  # at the one fixed beta 0.1 they would differ by the temperature alone


def test_a_beta_with_a_failed_seed_is_not_chosen():
    results = _sweep({0.1: [(-0.7, 4.0), (-0.7, 4.0)], 0.2: [(-0.8, 2.0), (-0.8, 2.0)]})
    results[0] = EvalResult(seed=0, fitness=None, ok=False, beta=0.1, reason="nan")
    best = sweep_fitness(results)
    assert best.beta == 0.2 and best.per_beta[0.1] is None
    assert sweep_fitness([EvalResult(seed=0, fitness=None, ok=False, beta=0.1)]).fitness is None


def test_matched_kl_interpolates_each_seeds_frontier_and_clamps_at_its_ends():
    results = _sweep({0.1: [(-0.7, 4.0), (-0.6, 4.0)], 0.2: [(-0.8, 2.0), (-0.9, 2.0)]})
    matched = sweep_fitness(results, "matched_kl", target_kl=3.0)
    assert matched.mode == "matched_kl" and matched.kl == 3.0
    assert abs(matched.by_seed[0] + 0.75) < 1e-12 and abs(matched.by_seed[1] + 0.75) < 1e-12
    assert sweep_fitness(results, "matched_kl", target_kl=9.0).by_seed == {0: -0.7, 1: -0.6}  # clamped
    assert sweep_fitness(results, "matched_kl").mode == "best_beta"  # no target: falls back
    assert interpolate([(2.0, 1.0), (0.0, 0.0)], 1.0) == 0.5


def test_unknown_fitness_mode_is_refused():
    with pytest.raises(ValueError, match="unknown fitness mode"):
        sweep_fitness([], "median")


# ---------------------------------------------------------------- paired small-sample tests

def test_paired_t_uses_n_minus_one_degrees_of_freedom():
    a, b = {0: 1.0, 1: 1.2, 2: 1.1}, {0: 0.9, 1: 1.0, 2: 1.05}
    c = paired(a, b)
    assert c.n == 3 and abs(c.diff - 0.35 / 3) < 1e-12
    assert abs(c.p_value - scipy_stats.ttest_rel([1.0, 1.2, 1.1], [0.9, 1.0, 1.05]).pvalue) < 1e-12
    half = scipy_stats.t.ppf(0.975, 2) * c.se  # 4.30 SE at n = 3: a normal z (1.96 SE) would call it a win
    assert abs((c.ci_high - c.ci_low) / 2 - half) < 1e-12
    assert c.t > 1.96 and not c.beats


def test_permutation_test_is_exact_and_cannot_reject_at_n_3():
    a, b = {0: 2.0, 1: 2.0, 2: 2.1}, {0: 1.0, 1: 1.1, 2: 1.0}
    c = paired(a, b, PERMUTATION)
    assert c.test == PERMUTATION and abs(c.p_value - 0.25) < 1e-12  # 2 of the 2^3 sign flips are as extreme
    ten = paired({i: 1.0 + 0.01 * i for i in range(10)}, {i: 0.0 for i in range(10)}, PERMUTATION)
    assert ten.p_value < 0.01 and ten.beats


def test_paired_ignores_unpaired_seeds_and_handles_tiny_samples():
    assert paired({0: 1.0, 1: 2.0, 7: 9.0}, {0: 0.0, 1: 1.0}).n == 2
    one = paired({0: 1.0}, {0: 0.0})
    assert one.n == 1 and not one.beats and math.isnan(one.p_value)
    assert paired({0: 1.0, 1: 1.0}, {0: 0.5, 1: 0.5}).beats  # identical differences: no doubt


# ---------------------------------------------------------------- the rule where the loop and archive use it

@pytest.mark.parametrize("mode", ["best_beta", "pooled", "matched_kl"])
def test_archive_scores_a_swept_candidate_by_the_runs_fitness_rule(tmp_path, mode):
    from discovery.archive import Archive
    from discovery.candidate import Candidate, Origin, Status

    table = {0.05: [(-0.9, 6.0), (-0.8, 6.0)], 0.1: [(-0.7, 4.0), (-0.72, 4.0)], 0.2: [(-0.8, 2.0), (-0.8, 2.0)]}
    with Archive.open(tmp_path) as archive:
        archive.start_run({"eval": {"fitness": mode}, "train": {"beta": 0.1}}, "synthetic", "key")
        ids = {}
        for name in ("dpo", "mine"):
            ids[name] = archive.add_candidate(Candidate(name=name, code=f"def {name}(a, b, c, d, beta):\n    return a\n",
                                                        origin=Origin.LIBRARY if name == "dpo" else Origin.LLM,
                                                        status=Status.QUEUED))
            for r in _sweep(table):
                archive.add_evaluation(ids[name], r)
        s = archive.summary(ids["mine"])
    if mode == "best_beta":  # the fitness and metrics of beta 0.1, not the pool of all six runs
        assert s.fitness.n == 2 and abs(s.fitness.mean + 0.71) < 1e-12 and s.candidate.metrics["kl"] == 4.0
    elif mode == "pooled":
        assert s.fitness.n == 6 and abs(s.fitness.mean - sum(f for rows in table.values() for f, _ in rows) / 6) < 1e-12
    else:  # DPO's KL at train.beta is 4.0: the frontier's reward there
        assert s.fitness.n == 2 and abs(s.fitness.mean + 0.71) < 1e-12


def test_reeval_confirms_at_the_given_beta_on_fresh_seeds():
    from discovery.config import load_config
    from discovery.executors.plan import REEVAL, stage_jobs

    config = load_config(None, ["eval.seeds=3", "eval.reeval_seeds=2", "eval.betas=[0.05, 0.1, 0.2]"])
    jobs = stage_jobs(config, 7, REEVAL, beta=0.2)
    assert [(j.seed, j.fidelity.beta) for j in jobs] == [(3, 0.2), (4, 0.2)]
    assert {j.fidelity.beta for j in stage_jobs(config, 7, REEVAL)} == {None}  # no sweep: train.beta


# ---------------------------------------------------------------- the synthetic task's regime and labels

def test_training_length_is_steps_or_epochs_over_the_pairs():
    from discovery.config import load_config
    from discovery.inner_loop.synthetic import train_steps

    t = load_config(None, ["train.max_steps=-1", "train.num_train_epochs=2"]).train
    assert train_steps(t, 1024) == 128 and train_steps(t, 1024, 0.5) == 64  # 2 epochs at batch 16
    assert train_steps(load_config(None, ["train.max_steps=40"]).train, 1024, 0.25) == 10
    assert train_steps(load_config().train, 1024) == 128  # the default: 2 epochs of the default 1024 pairs


def test_label_statistics_follow_the_noise_model():
    from discovery.inner_loop.synthetic_build import SyntheticOptions, label_stats

    clear = label_stats(SyntheticOptions(label_noise=0.0), [5.0, 5.0], [0.0, 0.0])
    assert clear["inter_annotator_agreement"] > 0.999 and clear["near_ties"] == 0.0
    ties = label_stats(SyntheticOptions(label_noise=0.1), [1.0, 2.0], [1.0, 2.0])
    assert abs(ties["inter_annotator_agreement"] - 0.5) < 1e-6 and ties["near_ties"] == 1.0
    flips = label_stats(SyntheticOptions(label_noise=0.25), [5.0], [0.0])  # q = 0.75: agreement 0.625
    assert abs(flips["label_accuracy"] - 0.75) < 1e-6 and abs(flips["inter_annotator_agreement"] - 0.625) < 1e-6
