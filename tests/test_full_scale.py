"""The full-scale path on CPU: `discovery run --task hf_dpo` with MT-Bench judged by a keyed judge on loopback.

Training runs in the real executor's isolated workers (1 or 2 gloo ranks per candidate); scoring runs in the
trusted `discovery run` process with the judge's key. HOME is a fresh folder and task.cache_dir is unset, so
every cache resolves from the real HOME, not the worker's scratch dir.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli
from fixtures_hf import build_model, build_preferences
from scripted_openai_server import Reply, ScriptedOpenAIServer

from discovery import library
from discovery.archive import Archive
from discovery.candidate import Status
from discovery.config import from_dict

KEY_ENV = "FULLSCALE_JUDGE_API_KEY"
SECRET = "sk-judge-only-7f3a9c"
NEW_LOSS = '''import torch.nn.functional as F


def hinge_plus_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                   beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * margin) + 0.1 * F.relu(1 - beta * margin)
'''


def rating(body) -> int:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return 1 + sum(user.encode()) % 10


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("fullscale")
    replay = root / "replay"
    replay.mkdir()
    (replay / "hinge_plus_dpo.py").write_text(NEW_LOSS)
    return {"model": str(build_model(root / "model")), "pairs": str(build_preferences(root / "pairs")),
            "replay": str(replay)}


@pytest.fixture()
def judge():
    with ScriptedOpenAIServer(default=lambda body: Reply(f"Rating: [[{rating(body)}]]"), api_key=SECRET) as server:
        yield server


def fresh_home_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DISCOVERY_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", **{KEY_ENV: SECRET})
    env.pop("HF_HOME", None)
    return env


def run_settings(s, mtbench_dir, judge, processes: int) -> list[str]:
    sets = [
        "task.name=hf_dpo", f"task.model={s['model']}", f"task.dataset={s['pairs']}", "task.eval_split=test",
        "task.options={scorer: mtbench}", "train.max_steps=2", "train.per_device_train_batch_size=4",
        "train.max_length=48", "train.learning_rate=0.01", "eval.seeds=1", "eval.betas=[]", "eval.screen=false",
        "eval.reeval_seeds=0", "eval.baselines=[dpo, ipo]", f"eval.mtbench_source={mtbench_dir}",
        "eval.mtbench_questions=2", "eval.mtbench_max_new_tokens=6", "eval.mtbench_backend=hf",
        "eval.judge.model=scripted-judge", f"eval.judge.base_url={judge.base_url}", f"eval.judge.api_key_env={KEY_ENV}",
        "eval.judge.max_retries=1", "executor.workers=1", "executor.threads_per_worker=2",
        f"executor.processes_per_candidate={processes}", "budget.proposals=1", "budget.wall_time=900",
        f"proposer.replay_dir={s['replay']}",
    ]
    return ["--proposer", "replay", "--quiet"] + [arg for text in sets for arg in ("--set", text)]


@pytest.mark.parametrize("processes", [1, 2])
def test_discovery_run_scores_every_candidate_with_the_keyed_judge(stand_ins, mtbench_dir, judge, tmp_path,
                                                                   processes):
    env = fresh_home_env(tmp_path)
    run_dir = tmp_path / "run"
    out = run_cli("run", "--run-dir", str(run_dir), *run_settings(stand_ins, mtbench_dir, judge, processes),
                  env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    assert judge.rejected == []  # every judge request carried the key
    with Archive.open(run_dir, readonly=True) as archive:
        candidates = {c.name: c for c in archive.candidates()}
        assert set(candidates) == {"dpo", "ipo", "hinge_plus_dpo"}
        evaluations = [e for c in candidates.values() for e in archive.evaluations(c.id)]
        for c in candidates.values():
            assert c.status == Status.EVALUATED, (c.name, c.reason)
    assert len(evaluations) == 3
    judged = judge.chat_requests
    # 3 trained models x 2 questions x 2 turns; a judgment is reused only for an identical answer text
    assert len(judged) == sum(4 - e.result.metrics["mtbench/cache_hits"] for e in evaluations) >= 4
    replies = {f"Rating: [[{rating(b)}]]" for b in judged}
    home = Path(env["HOME"])
    cache = home / ".cache" / "discovery"
    for e in evaluations:
        r = e.result
        assert r.ok and r.steps == 2 and r.metrics["mtbench/rated"] == 4, r
        assert r.metrics["train/world_size"] == processes
        assert "bwrap" in r.isolation or "net-namespace" in r.isolation
        folder = next(cache.glob(f"hf_dpo-*/mtbench/{r.metrics['checkpoint/sha256']}-seed{r.seed}"))
        judgments = [json.loads(line) for line in (folder / "judgments.jsonl").read_text().splitlines()]
        assert len(judgments) == 4 and {j["judgment"] for j in judgments} <= replies  # the judge's own words
        assert r.fitness == pytest.approx(sum(j["rating"] for j in judgments) / 4)
    # the caches live under the real HOME (not a worker's scratch dir); no checkpoint is left behind
    prepared = list(cache.glob("hf_dpo-*/meta.json"))
    assert len(prepared) == 1
    answers = list(prepared[0].parent.glob("mtbench/*/answers.jsonl"))
    assert len(answers) == 3
    assert (home / ".cache" / "discovery" / "mtbench" / "judgments.jsonl").is_file()  # the judgment cache
    assert not [p for p in (run_dir / "checkpoints").rglob("*") if p.is_file()]


def test_checkpoints_of_the_best_are_kept_when_asked(stand_ins, mtbench_dir, judge, tmp_path):
    env = fresh_home_env(tmp_path)
    run_dir = tmp_path / "run"
    args = run_settings(stand_ins, mtbench_dir, judge, 1) + ["--set", "executor.keep_checkpoints=1"]
    out = run_cli("run", "--run-dir", str(run_dir), *args, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    kept = [p for p in (run_dir / "checkpoints" / "kept").iterdir()]
    assert len(kept) == 1 and any(kept[0].glob("*.safetensors"))
    with Archive.open(run_dir, readonly=True) as archive:
        scored = [e.result for c in archive.candidates() for e in archive.evaluations(c.id)]
    best = max(scored, key=lambda r: r.fitness)
    assert best.metrics["checkpoint"] == str(kept[0])


def test_a_run_whose_baselines_all_fail_is_an_error(stand_ins, mtbench_dir, judge, tmp_path):
    env = fresh_home_env(tmp_path)
    env[KEY_ENV] = "sk-wrong-key"
    out = run_cli("run", "--run-dir", str(tmp_path / "run"), *run_settings(stand_ins, mtbench_dir, judge, 1),
                  env=env, timeout=900)
    assert out.returncode != 0
    lines = [line for line in out.stderr.strip().splitlines() if "baseline" in line]
    assert len(lines) == 1 and "every baseline failed" in lines[0] and "dpo" in lines[0], out.stderr[-2000:]
    assert judge.rejected and not judge.chat_requests  # refused for the wrong key, never answered


def test_the_key_is_out_of_reach_of_the_training_ranks(stand_ins, judge, tmp_path, monkeypatch):
    """Training ranks, started exactly as the executor starts them while this process holds the key: no copy of
    the key in any environment or file they can read, and the judge's port does not answer them."""
    from discovery.executors.isolated import IsolatedEvaluator
    from discovery.inner_loop.task import get_task

    monkeypatch.setenv(KEY_ENV, SECRET)
    config = from_dict({
        "task": {"name": "hf_dpo", "model": stand_ins["model"], "dataset": stand_ins["pairs"], "eval_split": "test",
                 "cache_dir": str(tmp_path / "cache"), "options": {"scorer": "mtbench"}},
        "train": {"max_steps": 1, "per_device_train_batch_size": 4, "max_length": 48},
        "eval": {"judge": {"base_url": judge.base_url, "api_key_env": KEY_ENV}},
        "executor": {"processes_per_candidate": 2, "checkpoint_dir": str(tmp_path / "ckpt")}})
    get_task(config).prepare()
    with IsolatedEvaluator(config, threads=2) as evaluator:
        out_dir = evaluator.out_base / "job"
        out_dir.mkdir()
        (out_dir / "note.txt").write_text("written by the trusted side")
        job = evaluator.runner.run("fullscale_jobs:probe_secrets", {"secret": SECRET, "port": judge.port,
                                                                   "out_dir": str(out_dir)},
                                   limits=evaluator.limits, processes=2)
        trained = evaluator.evaluate({"code": library.get("dpo").code, "seed": 0,
                                      "fidelity": {"name": "screen", "steps_fraction": 1.0, "beta": None}})
    assert job.ok, job.error
    probe = job.value
    assert probe["rank"] == "0" and probe["readable"] > 0
    assert probe["found"] == [], probe["found"]
    assert KEY_ENV not in probe["env_keys"]
    assert not probe["reached"], "a training rank reached the judge's port"
    assert trained.ok, trained.reason  # the same runner and limits train for real (2 ranks, gloo)
    assert judge.chat_requests == []  # screen fidelity: the held-out screen, no judge


def test_mtbench_answers_are_keyed_by_the_trained_weights(stand_ins, mtbench_dir, judge, tmp_path, monkeypatch):
    """lr=0 and lr=1e-2 are different models: the second is answered and judged afresh; the same lr again reuses."""
    from discovery.inner_loop.task import get_task

    monkeypatch.setenv(KEY_ENV, SECRET)

    def evaluate(lr: float):
        config = from_dict({
            "task": {"name": "hf_dpo", "model": stand_ins["model"], "dataset": stand_ins["pairs"],
                     "eval_split": "test", "cache_dir": str(tmp_path / "cache"), "options": {"scorer": "mtbench"}},
            "train": {"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 48, "learning_rate": lr},
            "eval": {"mtbench_source": str(mtbench_dir), "mtbench_questions": 2, "mtbench_max_new_tokens": 6,
                     "mtbench_backend": "hf", "judge": {"model": "scripted-judge", "base_url": judge.base_url,
                                                        "api_key_env": KEY_ENV,
                                                        "cache_dir": str(tmp_path / "judge")}}})
        task = get_task(config)
        task.prepare()
        return task.evaluate(library.get("dpo").code, seed=0)

    still, moved, again = evaluate(0.0), evaluate(1e-2), evaluate(1e-2)
    assert still.ok and moved.ok and again.ok
    assert still.metrics["checkpoint/sha256"] != moved.metrics["checkpoint/sha256"]
    assert moved.metrics["checkpoint/sha256"] == again.metrics["checkpoint/sha256"]
    answers = sorted(p.parent.name for p in (tmp_path / "cache").rglob("answers.jsonl"))
    assert len(answers) == 2 and answers[0].split("-")[0] != answers[1].split("-")[0]
    assert again.metrics["mtbench/cache_hits"] == 4 and again.fitness == moved.fitness
    rows = [json.loads(line) for p in (tmp_path / "cache").rglob("answers.jsonl") for line in p.read_text().splitlines()]
    assert {r["model_key"] for r in rows} == {still.metrics["checkpoint/sha256"], moved.metrics["checkpoint/sha256"]}


def test_ranks_rendezvous_on_the_sandbox_loopback_and_a_failing_rank_fails_the_job():
    from discovery.sandbox.isolation import IsolatedRunner, Limits

    ranks = Limits(wall_seconds=60, memory_mb=4096, cpu_seconds=120, loopback_sockets=True)
    with IsolatedRunner(preload=("torch",), limits=ranks, threads=1) as runner:
        reduced = runner.run("fullscale_jobs:all_reduce", {}, processes=2)
        failing = runner.run("fullscale_jobs:fail_on_rank", {"rank": 1, "sleep": 50}, processes=2)
        closed = runner.run("fullscale_jobs:all_reduce", {}, limits=Limits(wall_seconds=30, memory_mb=4096,
                                                                           cpu_seconds=60), processes=2)
    assert reduced.ok, reduced.error
    assert reduced.value == {"rank": 0, "world": 2, "sum": 3.0, "master": "127.0.0.1"}
    assert not failing.ok and "rank 1 of 2" in failing.error and "fails on purpose" in failing.error
    assert failing.seconds < 30  # rank 0 (sleeping 50 s) was stopped when rank 1 failed
    if "seccomp" in closed.isolation:  # without loopback_sockets the filter still denies socket()
        assert not closed.ok


def test_gpu_layout_gives_each_worker_one_gpu_per_rank():
    from discovery.config import ExecutorConfig
    from discovery.errors import ConfigError
    from discovery.executors import plan_layout

    layout = plan_layout(ExecutorConfig(processes_per_candidate=2), cpus=16, gpus=("0", "1", "2", "3"))
    assert layout.workers == 2 and layout.gpus == ("0,1", "2,3") and layout.threads_per_worker == 8
    with pytest.raises(ConfigError, match="processes_per_candidate"):
        plan_layout(ExecutorConfig(processes_per_candidate=8), cpus=16, gpus=("0", "1"))


def test_training_limits_come_from_the_task_and_validation_keeps_its_own(stand_ins, tmp_path):
    from discovery.executors.isolated import IsolatedEvaluator, train_limits
    from discovery.inner_loop.task import get_task
    from discovery.sandbox.isolation import Limits

    def config(**sandbox):
        return from_dict({
            "task": {"name": "hf_dpo", "model": stand_ins["model"], "dataset": stand_ins["pairs"],
                     "eval_split": "test", "cache_dir": str(tmp_path / "cache"), "options": {"scorer": "heldout"}},
            "train": {"max_steps": 1, "per_device_train_batch_size": 4, "max_length": 48},
            "sandbox": sandbox, "executor": {"checkpoint_dir": str(tmp_path / "ckpt")}})

    hf = train_limits(get_task(config()), threads=1)
    validation = Limits.from_config(config().sandbox)
    assert hf.memory_mb == 0 and hf.file_mb >= 1024 * 1024 and hf.wall_seconds >= 3600 and hf.open_files >= 4096
    assert (validation.memory_mb, validation.file_mb, validation.wall_seconds) == (2048, 16, 20.0)
    synthetic = train_limits(get_task(from_dict({"task": {"name": "synthetic"}})), threads=1)
    assert synthetic.wall_seconds == 600 and synthetic.file_mb == 16
    # an override reaches the training ranks: no file may be written, so saving the checkpoint fails
    tight = config(train_file_mb=0)
    get_task(tight).prepare()
    with IsolatedEvaluator(tight, threads=1) as evaluator:
        assert evaluator.limits.file_mb == 0
        result = evaluator.evaluate({"code": library.get("dpo").code, "seed": 0,
                                     "fidelity": {"name": "full", "steps_fraction": 1.0, "beta": None}})
    assert not result.ok and "too large" in result.reason.lower(), result.reason


def test_a_second_run_with_another_judge_scores_the_baselines_again(stand_ins, mtbench_dir, judge, tmp_path):
    env = fresh_home_env(tmp_path)
    first = run_cli("run", "--run-dir", str(tmp_path / "run1"), *run_settings(stand_ins, mtbench_dir, judge, 1),
                    env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    asked_first = len(judge.chat_requests)
    with ScriptedOpenAIServer(default=lambda body: Reply(f"Rating: [[{rating(body)}]]"), api_key=SECRET) as other:
        second = run_cli("run", "--run-dir", str(tmp_path / "run2"), *run_settings(stand_ins, mtbench_dir, other, 1),
                         env=env, timeout=900)
        asked_second = len(other.chat_requests)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(judge.chat_requests) == asked_first  # the first judge is not asked again
    with Archive.open(tmp_path / "run2", readonly=True) as archive:
        results = {c.name: [e.result for e in archive.evaluations(c.id)] for c in archive.candidates()}
    for name in ("dpo", "ipo"):  # not served from the baseline cache of the first judge's run
        (r,) = results[name]
        assert r.metrics["mtbench/rated"] == 4 and r.metrics["mtbench/cache_hits"] < 4
    assert asked_second == sum(4 - r.metrics["mtbench/cache_hits"] for rs in results.values() for r in rs) > 0


def test_gpu_device_nodes_and_caches_are_bound_into_the_sandbox(monkeypatch, tmp_path):
    """bubblewrap's fresh /dev has no /dev/nvidia*: they are bound in (stand-in: a device node bubblewrap's /dev
    lacks), the caches read-only, the scratch and output dirs writable."""
    import subprocess

    from discovery.sandbox import isolation

    if not os.path.exists("/dev/cpu_dma_latency"):
        pytest.skip("no stand-in device node on this host")

    monkeypatch.setattr(isolation, "gpu_binds", lambda: ["--dev-bind-try", "/dev/cpu_dma_latency", "/dev/cpu_dma_latency"])
    cache, scratch, out = tmp_path / "cache", tmp_path / "cache" / "scratch", tmp_path / "out"
    for folder in (cache, scratch, out):
        folder.mkdir(parents=True, exist_ok=True)
    prefix = isolation.bwrap_command(str(scratch), (str(out),), (str(cache),), gpu=True)
    if prefix is None:
        pytest.skip("bubblewrap is not usable here")
    script = (f"test -c /dev/cpu_dma_latency && touch {scratch}/a {out}/b && echo writable; "
              f"touch {cache}/c 2>/dev/null || echo cache-read-only")
    done = subprocess.run(prefix + ["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["writable", "cache-read-only"], done.stderr


FSDP_CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_sharding_strategy: FULL_SHARD
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_state_dict_type: FULL_STATE_DICT
mixed_precision: bf16
num_machines: 1
num_processes: 8
"""


def test_your_accelerate_config_reaches_every_rank(tmp_path):
    from discovery.errors import ConfigError
    from discovery.executors.accelerate_env import accelerate_env
    from discovery.sandbox.isolation import IsolatedRunner, Limits

    path = tmp_path / "fsdp.yaml"
    path.write_text(FSDP_CONFIG)
    env = accelerate_env(str(path), processes=2)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    with pytest.raises(ConfigError, match="no such file"):
        accelerate_env(str(tmp_path / "missing.yaml"), 2)
    limits = Limits(wall_seconds=30, memory_mb=2048, cpu_seconds=60, loopback_sockets=True)
    with IsolatedRunner(preload=(), limits=limits, threads=1) as runner:  # the scrub drops them from the server
        one = runner.run("fullscale_jobs:environment", {}, env=env)
        two = runner.run("fullscale_jobs:environment", {}, env=env, processes=2)
    assert one.ok and two.ok, (one.error, two.error)
    assert one.value["ACCELERATE_USE_FSDP"] == "true" and "RANK" not in one.value
    assert two.value["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT" and two.value["WORLD_SIZE"] == "2"
