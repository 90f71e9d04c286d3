"""bench/discovery_experiment.py: its statistics, and one tiny end-to-end run (symbolic + replay arms) that
resumes by skipping what is finished."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from discovery import library
from discovery.archive import Archive

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "discovery_experiment.py"
HEAD = "def {name}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")
TINY = ["task.options={sft_steps: 30, sft_sequences: 500, train_pairs: 128, heldout_pairs: 32, eval_prompts: 32}",
        "train.max_steps=3", "eval.seeds=2", "eval.betas=[]", "eval.reeval_seeds=2", "eval.promote_fraction=1.0",
        "eval.baselines=[dpo]"]


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("discovery_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_best_so_far_keeps_the_running_maximum_and_waits_for_the_first_score(experiment):
    assert experiment.best_so_far([None, -1.0, float("nan"), -0.5, -0.8], 6) == [None, -1.0, -1.0, -0.5, -0.5, -0.5]


def test_compare_needs_more_than_two_standard_errors(experiment):
    base = {0: -0.80, 1: -0.82, 2: -0.78}
    clear = experiment.compare({0: -0.70, 1: -0.71, 2: -0.69}, base)
    assert clear["beats"] and clear["diff"] == pytest.approx(0.1) and clear["z"] > 2
    noisy = experiment.compare({0: -0.70, 1: -0.60, 2: -0.85}, base)
    assert noisy["diff"] > 0 and not noisy["beats"]
    assert not experiment.compare({0: -0.5}, base)["beats"]  # one common seed has no standard error


def test_compare_pairs_by_seed_so_shared_seed_noise_cancels(experiment):
    base = {0: -0.90, 1: -0.80, 2: -0.70, 3: -0.85}  # large seed-to-seed spread, shared by both losses
    better = {seed: v + 0.01 + 0.001 * seed for seed, v in base.items()}
    c = experiment.compare(better, base)
    assert c["beats"] and c["z"] > 10 and c["n"] == 4
    assert abs(c["unpaired_z"]) < 1  # the same gap is invisible when the seeds are treated as independent
    only_common = experiment.compare({0: -0.5, 1: -0.6, 9: 5.0}, base)  # seed 9 has no partner: ignored
    assert only_common["n"] == 2 and only_common["diff"] == pytest.approx(0.3)


def test_goals_count_loop_seeds_and_compare_proposals_to_beat_dpo(experiment):
    def arm(wins, median):
        return {"seeds": [{"fresh_vs_dpo": {"beats": w, "z": 4.0, "n": 10}, "heldout": {1: {"beats": w}, 2: {"beats": w}}}
                          for w in wins], "median_proposals_to_beat_dpo": median}

    met = experiment.goals({"llm": arm([True, True, False], 4), "symbolic": arm([False] * 3, math.inf)},
                           "llm", "symbolic", 3)
    assert [g["met"] for g in met] == [True, True] and "> 3 paired SE on >= 10 fresh seeds" in met[0]["goal"]
    missed = experiment.goals({"llm": arm([True, False, False], 12), "symbolic": arm([True] * 3, 5)},
                              "llm", "symbolic", 3)
    assert [g["met"] for g in missed] == [False, False] and "1 of 3" in missed[0]["why"]
    assert experiment.goals({"symbolic": arm([], 1)}, "llm", "symbolic", 3)[0]["met"] is None
    assert experiment.strict({"a": [math.inf, 1.0]}) == {"a": [None, 1.0]}


def test_a_confirmed_win_needs_the_bar_on_fresh_seeds_and_two_heldout_instances(experiment):
    confirmed = importlib.import_module("discovery_experiment_report").confirmed  # beside the script, on its path
    bar = experiment.Bar(min_z=3.0, min_n=10, heldout=2)
    win = {"fresh_vs_dpo": {"beats": True, "z": 3.5, "n": 10}, "heldout": {1: {"beats": True}, 2: {"beats": True}}}
    assert confirmed(win, bar)
    assert not confirmed(win | {"fresh_vs_dpo": {"beats": True, "z": 2.9, "n": 10}}, bar)  # under 3 SE
    assert not confirmed(win | {"fresh_vs_dpo": {"beats": True, "z": 5.0, "n": 9}}, bar)  # too few seeds
    assert not confirmed(win | {"heldout": {1: {"beats": True}, 2: {"beats": False}}}, bar)
    assert not confirmed({"fresh_vs_dpo": {"beats": True, "z": 9.0, "n": 10}}, bar)  # never held out
    assert confirmed({"fresh_vs_dpo": {"beats": True, "z": 9.0, "n": 10}}, experiment.Bar(heldout=0))


def test_parallel_runs_split_the_cores_between_their_workers(experiment, monkeypatch):
    monkeypatch.setattr(experiment, "cpu_count", lambda: 8)
    opts = experiment.parse(["--parallel", "2", "--workers", "2"])
    assert experiment.threads_per_worker(opts) == 2  # 8 cores / (2 runs x 2 workers), not each run's 8 / 2
    assert experiment.threads_per_worker(experiment.parse(["--parallel", "3", "--workers", "4"])) == 1
    assert experiment.threads_per_worker(experiment.parse(["--workers", "2"])) is None  # one run: its own layout


def test_tiny_experiment_end_to_end_then_a_rerun_skips_finished_runs(experiment, tmp_path):
    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "a_hinge.py").write_text("import torch.nn.functional as F\n\n\n" + HEAD.format(name="a_hinge") + MARGIN
                                       + "    return F.relu(1 - beta * margin)\n")
    (replay / "b_invalid.py").write_text("import os\n\n\n" + HEAD.format(name="b_invalid") + "    return os.getcwd()\n")
    out = tmp_path / "exp"
    argv = ["--arms", "symbolic", "replay", "--replay-dir", str(replay), "--llm-arm", "replay", "--seeds", "1",
            "--proposals", "2", "--fresh-seeds", "2", "--library", "slic", "--workers", "1", "--parallel", "2",
            "--min-z", "0", "--heldout-instances",
            "--out", str(out),
            *[x for s in [*TINY, f"task.cache_dir={tmp_path / 'cache'}"] for x in ("--set", s)]]
    result = experiment.main(argv)

    replay_seed = result["arms"]["replay"]["seeds"][0]
    assert replay_seed["proposals"] == 2 and replay_seed["shares"]["invalid"] == 0.5
    assert replay_seed["winner"]["name"] == "a_hinge" and replay_seed["llm_tokens"] == 0
    symbolic_seed = result["arms"]["symbolic"]["seeds"][0]
    assert symbolic_seed["proposals"] == 2 and len(symbolic_seed["best_so_far"]) == 2
    assert symbolic_seed["wall_s"] > 0
    with Archive.open(symbolic_seed["run_dir"], readonly=True) as archive:
        assert archive.run_info().config["proposer"]["seed"] == 0
        best = max(s.fitness.mean for s in archive.summaries()
                   if not s.candidate.is_baseline and s.fidelity == "full" and s.fitness)
    assert symbolic_seed["best_so_far"][-1] == pytest.approx(best)
    fresh = result["reevaluation"]
    assert set(fresh) == {"dpo", "slic", replay_seed["label"], symbolic_seed["label"]}
    assert all(s["n"] == 2 for s in fresh.values()) and result["fresh_seeds"] == [1000, 1001]
    # the goals follow from the evidence of this run (1 loop seed: the replay winner must beat DPO on it)
    beats = bool(replay_seed["fresh_vs_dpo"]["beats"])
    first, second = result["goals"]
    assert first["met"] is beats and first["why"] == f"{int(beats)} of 1 loop seeds"
    mine = result["arms"]["replay"]["median_proposals_to_beat_dpo"]
    theirs = result["arms"]["symbolic"]["median_proposals_to_beat_dpo"]
    assert second["met"] is (mine < theirs) and "median proposals: replay" in second["why"]
    stored = json.loads((out / "experiment.json").read_text())
    assert stored["arms"]["replay"]["seeds"][0]["winner"]["name"] == "a_hinge"
    assert (out / "experiment.png").stat().st_size > 10_000 and "a_hinge" in (out / "experiment.md").read_text()

    (replay_run,), (symbolic_run,) = (json.loads((Path(s["run_dir"]) / experiment.SESSIONS).read_text())
                                      for s in (replay_seed, symbolic_seed))
    first, second = sorted([replay_run, symbolic_run], key=lambda x: x["started"])
    assert second["started"] < first["started"] + first["seconds"]  # --parallel 2: the two arms ran at once

    # finished runs are skipped, the re-evaluation comes from its cache, the numbers are the same
    sessions = json.loads((Path(replay_seed["run_dir"]) / experiment.SESSIONS).read_text())
    assert experiment.run_state(Path(replay_seed["run_dir"]), 2) == "finished"
    assert experiment.run_state(Path(symbolic_seed["run_dir"]), 3) == "unfinished"  # a bigger budget resumes
    again = experiment.main(argv)
    assert json.loads((Path(replay_seed["run_dir"]) / experiment.SESSIONS).read_text()) == sessions
    assert again["reevaluation"] == fresh and again["goals"] == result["goals"]

    # a winner over the bar (z > min_z on the fresh seeds) is re-run beside DPO on a held-out instance; one
    # under it is not; the instance's jobs are cached under its own task key (task.options.seed = 1)
    with Archive.open(symbolic_seed["run_dir"], readonly=True) as archive:
        config = archive.run_info().config
    strong = {"label": "strong", "fresh_vs_dpo": {"z": 5.0}}
    weak = {"label": "weak", "fresh_vs_dpo": {"z": 1.0}}
    cached = len(json.loads((out / "reeval.json").read_text()))
    opts = experiment.parse([*argv, "--heldout-instances", "1"])  # the later flag wins
    entries = {"dpo": library.get("dpo").code, "strong": library.get("slic").code, "weak": library.get("ipo").code}
    experiment.check_heldout({"a": {"seeds": [strong, weak]}}, entries, config, [1000, 1001], opts,
                             experiment.Bar(min_z=3.0, min_n=2, heldout=1))
    assert set(strong["heldout"]) == {1} and strong["heldout"][1]["n"] == 2 and "heldout" not in weak
    assert len(json.loads((out / "reeval.json").read_text())) == cached + 4  # dpo and slic, 2 seeds, instance 1
