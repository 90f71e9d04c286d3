"""The synthetic task end to end through the sandbox: determinism, discrimination, failures, CLI.

A session-scoped task (a smaller build than the default: fewer SFT steps and pairs) is prepared once in a
temporary cache and shared; one warm IsolatedRunner serves every evaluation. The requirements at the
default settings (>3 SE discrimination, learning curve, time and memory) are measured by
bench/inner_loop_task.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from discovery import library
from discovery.config import load_config
from discovery.errors import ConfigError
from discovery.inner_loop.evaluate import evaluate_candidate, evaluate_seeds, make_runner
from discovery.inner_loop.task import Fidelity, get_task

REPO = Path(__file__).resolve().parents[1]
SMALL = ["task.options.sft_steps=300", "task.options.train_pairs=1024", "task.options.heldout_pairs=256",
         "task.options.eval_prompts=256", "train.max_steps=40", "train.learning_rate=0.001"]

REVERSED_DPO = '''import torch.nn.functional as F


def reversed_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(-beta * margin)
'''

EXPLODING = '''import torch


def exploding(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return torch.exp(-1000.0 * beta * margin)
'''


@pytest.fixture(scope="session")
def small_args(tmp_path_factory):
    return [f"task.cache_dir={tmp_path_factory.mktemp('cache')}", *SMALL]


@pytest.fixture(scope="session")
def task(small_args):
    task = get_task(load_config(None, small_args))
    stages = []
    task.prepare(lambda stage, fraction: stages.append(stage))
    assert "sft" in stages and stages[-1] == "done"
    return task


@pytest.fixture(scope="session")
def runner(task):
    with make_runner(task.config) as runner:
        yield runner


def _fitness(task, runner, code, seeds=(0, 1)):
    results, fitness = evaluate_seeds(task, code, list(seeds), Fidelity(), runner)
    assert fitness is not None, [r.reason for r in results]
    return fitness, results


def test_prepare_is_cached_and_keyed(task, small_args):
    seen = []
    task.prepare(lambda stage, fraction: seen.append(stage))
    assert seen == ["cached"]
    other = get_task(load_config(None, [*small_args, "task.options.label_noise=0.2"]))
    assert other.cache_key() != task.cache_key() and not other.is_prepared()
    with pytest.raises(ConfigError, match="unknown config key 'task.options.vocabulary'"):
        get_task(load_config(None, ["task.options.vocabulary=8"]))


def test_reference_logps_are_cached_with_the_pairs(task):
    state = task.load()
    for split in (state.train, state.heldout):
        assert {"ref_chosen_logps", "ref_rejected_logps", "prompt_ids"} <= set(split.column_names)
    chosen, rejected = state.train["gold_chosen"], state.train["gold_rejected"]
    agree = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)
    assert 0.6 < agree < 0.95  # labels follow the gold reward, with Bradley-Terry and flip noise


def test_same_candidate_seed_and_config_give_identical_fitness(task, runner):
    code = library.get("dpo").code
    first = evaluate_candidate(task, code, 3, Fidelity(), runner)
    second = evaluate_candidate(task, code, 3, Fidelity(), runner)
    assert first.ok and second.ok
    assert first.fitness == second.fitness and first.metrics["kl"] == second.metrics["kl"]
    other_seed = evaluate_candidate(task, code, 4, Fidelity(), runner)
    assert other_seed.fitness != first.fitness
    assert "seccomp" in first.isolation or "rlimits" in first.isolation


def test_dpo_beats_reference_and_reversed_dpo_loses(task, runner):
    dpo, dpo_runs = _fitness(task, runner, library.get("dpo").code)
    reversed_, _ = _fitness(task, runner, REVERSED_DPO)
    reference = [task.evaluate_reference(s) for s in (0, 1)]
    ref_mean = sum(r.fitness for r in reference) / 2
    assert dpo.mean > ref_mean + 0.1 > reversed_.mean + 0.2
    run = dpo_runs[0]
    assert run.steps == task.config.train.max_steps and run.metrics["kl"] > 0
    assert run.metrics["heldout_accuracy"] > 0.55
    for key in ("train/loss", "train/rewards/margins", "train/logps/chosen", "train/mean_token_accuracy"):
        assert key in run.metrics


def test_exploding_loss_fails_with_step_and_reason(task, runner):
    result = evaluate_candidate(task, EXPLODING, 0, Fidelity(), runner)
    assert not result.ok and result.fitness is None
    assert "non-finite" in result.reason and "step" in result.reason


def test_fidelity_scales_steps_and_beta(task, runner):
    result = evaluate_candidate(task, library.get("dpo").code, 0, Fidelity("screen", 0.25, beta=0.5), runner)
    assert result.ok and result.steps == 10 and result.beta == 0.5 and result.fidelity == "screen"


def test_beta_sweep_reports_frontier(task, runner, small_args):
    from rich.progress import Progress

    from discovery.commands.evaluate import evaluate_code

    sweep_task = get_task(load_config(None, [*small_args, "eval.betas=[0.05,0.5]"]))
    assert sweep_task.cache_key() == task.cache_key()
    with Progress(disable=True) as progress:
        row = evaluate_code(sweep_task, library.get("dpo").code, runner, [0], progress, "dpo")
    assert [e["beta"] for e in row["results"]] == [0.05, 0.5]
    assert all(e["seeds"][0]["beta"] == e["beta"] for e in row["results"])
    kl = {e["beta"]: e["metrics"]["kl"] for e in row["results"]}
    assert kl[0.05] > kl[0.5]  # weaker regularisation drifts further from the reference
    assert row["sweep"]["robustness"] == min(e["fitness"]["mean"] for e in row["results"])


def test_cli_evaluate_and_errors(task, small_args, tmp_path):
    loss = tmp_path / "dpo.py"
    loss.write_text(library.get("dpo").code)
    sets = [arg for a in small_args for arg in ("--set", a)]
    out = run_cli("evaluate", str(loss), "--seeds", "1", "--json", *sets, "--set", "eval.betas=[]")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    entry = data["results"][0]
    assert entry["fitness"]["n"] == 1 and entry["metrics"]["kl"] > 0 and data["task"] == "synthetic"
    bad = tmp_path / "bad.py"
    bad.write_text("import os\ndef f(a, b, c, d, beta):\n    return os.getcwd()\n")
    out = run_cli("evaluate", str(bad), *sets)
    assert out.returncode != 0 and out.stderr.startswith("discovery: error:") and "Traceback" not in out.stderr
    out = run_cli("tasks", "prepare", "nope")
    assert out.returncode == 2 and "unknown task 'nope'" in out.stderr


def test_cli_baselines_table_and_tasks_list(task, small_args):
    sets = [arg for a in small_args for arg in ("--set", a)]
    out = run_cli("baselines", "--only", "dpo", "--only", "ipo", "--seeds", "2", "--betas", "0.05", "0.2", "--json",
                  *sets, "--set", "train.max_steps=10")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    rows = {r["name"]: r for r in doc["baselines"]}
    assert sorted(rows) == sorted(["dpo", "ipo", "(reference, untrained)"]) and doc["betas"] == [0.05, 0.2]
    for name in ("dpo", "ipo"):  # per-beta results (both seeds each) and THE fitness: the mean at its best beta
        per_beta = {e["beta"]: e for e in rows[name]["results"]}
        assert sorted(per_beta) == [0.05, 0.2] and all(len(e["seeds"]) == 2 for e in per_beta.values())
        fit = rows[name]["fitness"]
        assert doc["fitness_mode"] == fit["mode"] == "best_beta" and fit["fitness"]["n"] == 2
        assert fit["fitness"]["mean"] == pytest.approx(max(e["fitness"]["mean"] for e in per_beta.values()))
        assert per_beta[fit["beta"]]["fitness"]["mean"] == pytest.approx(fit["fitness"]["mean"])
    vs = rows["ipo"]["vs_dpo"]  # paired by seed with DPO, each at its own best beta
    assert vs["n"] == 2 and vs["diff"] == pytest.approx(rows["ipo"]["fitness"]["fitness"]["mean"]
                                                        - rows["dpo"]["fitness"]["fitness"]["mean"])
    means = [r["fitness"]["fitness"]["mean"] for r in doc["baselines"]]
    assert means == sorted(means, reverse=True)
    out = run_cli("tasks", "list", "--json", *sets)
    listed = {r["name"]: r for r in json.loads(out.stdout)}
    assert listed["synthetic"]["prepared"] is True and listed["synthetic"]["cache_key"] == task.cache_key()


def test_two_runs_preparing_the_same_cache_at_once_both_succeed(tmp_path):
    """The parallel experiment starts several runs on one cache: the second waits for the first's build."""
    tiny = [f"task.cache_dir={tmp_path}", "task.options.sft_steps=50", "task.options.train_pairs=128",
            "task.options.heldout_pairs=64", "task.options.eval_prompts=64"]
    sets = [arg for a in tiny for arg in ("--set", a)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "discovery.cli", "tasks", "prepare", "synthetic", *sets],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-300:] for _, err in outs]
    task = get_task(load_config(None, tiny))
    assert task.is_prepared() and task.load().train.num_rows == 128
    assert [p.name for p in (tmp_path / "synthetic").iterdir() if p.is_dir()] == [task.cache_key()]  # no leftovers
