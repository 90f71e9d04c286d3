"""`discovery run` end to end on the synthetic task with the replay proposer, and bad input."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_cli
from scripted_openai_server import Reply, ScriptedOpenAIServer

from discovery.archive import Archive, db_path
from discovery.candidate import Status

HEAD = "def {name}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")

# a small synthetic task: prepares in seconds (the defaults are for real runs)
TINY_TASK = "task.options={sft_steps: 30, sft_sequences: 500, train_pairs: 128, heldout_pairs: 32, eval_prompts: 32}"

CANDIDATES = {
    # a valid new loss
    "a_valid": "import torch.nn.functional as F\n\n\n" + HEAD.format(name="a_valid") + MARGIN
    + "    return -F.logsigmoid(beta * margin) + 0.1 * F.relu(1 - beta * margin)\n",
    # same behaviour as a_valid, different code: a duplicate, never trained
    "b_duplicate": "import torch.nn.functional as F\n\n\n" + HEAD.format(name="b_duplicate") + MARGIN
    + "    z = beta * margin\n    return 0.1 * F.relu(1.0 - z) - F.logsigmoid(z)\n",
    # breaks the policy: no network / os access
    "c_invalid": "import os\n\n\n" + HEAD.format(name="c_invalid") + "    return os.getcwd()\n",
    # DPO plus a constant: other loss values, the same gradients -> a near-duplicate of the dpo baseline
    "b_dpo_plus_one": "import torch.nn.functional as F\n\n\n" + HEAD.format(name="b_dpo_plus_one") + MARGIN
    + "    return 1.0 - F.logsigmoid(beta * margin)\n",
    # trains into NaN/Inf
    "d_diverging": "import torch\n\n\n" + HEAD.format(name="d_diverging") + MARGIN
    + "    return torch.exp(-1e4 * margin) * 1e30\n",
}


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay")
    for name, code in CANDIDATES.items():
        (path / f"{name}.py").write_text(code)
    return path


def small_run_args(replay_dir, cache_dir) -> list[str]:
    return ["--proposer", "replay", "--set", f"proposer.replay_dir={replay_dir}", "--seeds", "1",
            "--set", "eval.betas=[]", "--workers", "2", "--set", "train.max_steps=3", "--set", "eval.reeval_seeds=1",
            "--set", "eval.promote_fraction=1.0", "--set", "eval.baselines=[dpo]",
            "--set", f"task.cache_dir={cache_dir}", "--set", "budget.wall_time=600", "--set", TINY_TASK, "--quiet"]


def test_replay_run_stores_each_candidate_with_the_right_status(replay_dir, tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli("run", "--run-dir", str(run_dir), *small_run_args(replay_dir, tmp_path / "cache"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"discovery report {run_dir}" in out.stdout
    with Archive.open(run_dir, readonly=True) as archive:
        by_name = {c.name: c for c in archive.candidates()}
        assert by_name["dpo"].status == Status.EVALUATED
        assert by_name["a_valid"].status == Status.EVALUATED
        assert archive.summary(by_name["a_valid"].id).fidelity == "full"
        dup = by_name["b_duplicate"]
        assert dup.status == Status.DUPLICATE and dup.duplicate_of == by_name["a_valid"].id
        assert archive.evaluations(dup.id) == []  # never trained
        near = by_name["b_dpo_plus_one"]
        assert near.status == Status.DUPLICATE and near.duplicate_of == by_name["dpo"].id, near.reason
        assert "same gradients" in near.reason and archive.evaluations(near.id) == []
        assert by_name["c_invalid"].status == Status.INVALID and "os" in by_name["c_invalid"].reason
        assert archive.evaluations(by_name["c_invalid"].id) == []
        # non-finite losses are caught by the sandbox's probes, or else by training's NaN/Inf stop
        diverging = by_name["d_diverging"]
        assert diverging.status in (Status.INVALID, Status.FAILED) and diverging.reason
        assert archive.summary(diverging.id).fitness is None
        info = archive.run_info()
        assert info.versions["trl"] and info.task_name == "synthetic" and info.ended_at
    assert (run_dir / "run.log").read_text()
    # the second run re-uses the cached baseline: no new baseline training
    run2 = tmp_path / "run2"
    out = run_cli("run", "--run-dir", str(run2), *small_run_args(replay_dir, tmp_path / "cache"))
    assert out.returncode == 0, out.stderr[-3000:]
    with Archive.open(run_dir, readonly=True) as a1, Archive.open(run2, readonly=True) as a2:
        e1 = [(e.result.seed, e.result.fidelity, e.result.fitness) for e in a1.evaluations(a1.baseline("dpo").id)]
        e2 = [(e.result.seed, e.result.fidelity, e.result.fitness) for e in a2.evaluations(a2.baseline("dpo").id)]
        assert sorted(e1) == sorted(e2) and len(e1) == 2  # screen + full, same values
        # training is deterministic, so equal values alone would pass on a cache miss: a trained job moves its
        # candidate to `training` first; a cache hit is stored without ever being dispatched
        trained = [[e for e in a.events(kind="status", candidate_id=a.baseline("dpo").id)
                    if e.data.get("to") == "training"] for a in (a1, a2)]
        assert trained[0] and trained[1] == [], "the second run trained the baseline again: a cache miss"


def test_llm_copy_of_a_baseline_is_sent_back_and_the_new_answer_trained(tmp_path):
    """The loop hands the proposer every stored loss: a near-copy of DPO is refused before training."""
    answers = [("dpo_again", CANDIDATES["b_dpo_plus_one"].replace("b_dpo_plus_one", "dpo_again")),
               ("a_valid", CANDIDATES["a_valid"])]
    script = [Reply(json.dumps({"thought": "t", "name": name, "code": code})) for name, code in answers]
    run_dir = tmp_path / "run"
    with ScriptedOpenAIServer(script) as server:
        args = small_run_args("unused", tmp_path / "cache")
        args[:2] = ["--proposer", "openai"]
        args[2:4] = ["--set", f"proposer.base_url={server.base_url}"]
        out = run_cli("run", "--run-dir", str(run_dir), *args, "--proposals", "1", "--model", "scripted-model",
                      "--set", "proposer.api_key_env=DISCOVERY_TEST_KEY", env={"DISCOVERY_TEST_KEY": "sk-test"})
        requests = server.chat_requests
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(requests) == 2 and "known loss `dpo`" in requests[1]["messages"][-1]["content"]
    with Archive.open(run_dir, readonly=True) as archive:
        (proposed,) = [c for c in archive.candidates() if c.name != "dpo"]
        assert proposed.name == "a_valid" and proposed.status == Status.EVALUATED
        assert [c.verdict for c in archive.llm_calls()] == ["duplicate", "valid"]


def test_ctrl_c_during_an_llm_request_stops_at_once_and_the_run_resumes(tmp_path):
    """A proposal waiting on a slow endpoint must not hold up Ctrl-C (it could wait proposer.timeout x tries)."""
    run_dir = tmp_path / "run"
    args = small_run_args("unused", tmp_path / "cache")
    args[:4] = ["--proposer", "openai", "--set", "proposer.timeout=600"]
    with ScriptedOpenAIServer([Reply("{}", delay=600)]) as server:
        cmd = [sys.executable, "-m", "discovery.cli", "run", "--run-dir", str(run_dir), *args, "--proposals", "1",
               "--model", "scripted-model", "--set", f"proposer.base_url={server.base_url}"]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 300
        while not server.chat_requests and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert server.chat_requests, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("discovery run was still waiting on the LLM request 60 s after Ctrl-C")
    assert proc.returncode == 130 and err.strip().endswith("discovery: interrupted"), err[-2000:]
    with ScriptedOpenAIServer([Reply(json.dumps({"thought": "t", "name": "a_valid", "code": CANDIDATES["a_valid"]}))]) \
            as server:
        out = run_cli("run", "--resume", str(run_dir), "--set", f"proposer.base_url={server.base_url}", "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    with Archive.open(run_dir, readonly=True) as archive:
        assert [c.status for c in archive.candidates() if c.name == "a_valid"] == [Status.EVALUATED]
        assert archive.proposal_count() == 1


def _one_error_line(out) -> str:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("discovery: error: "), out.stderr
    return lines[0]


def test_invalid_config_is_one_line(tmp_path):
    line = _one_error_line(run_cli("run", "--run-dir", str(tmp_path / "r"), "--set", "eval.seedz=2"))
    assert "eval.seeds" in line
    assert not db_path(tmp_path / "r").exists()
    line = _one_error_line(run_cli("run", "--run-dir", str(tmp_path / "r"), "--set", "eval.baselines=[nope]"))
    assert "nope" in line


def test_missing_run_dir_on_resume_is_one_line(tmp_path):
    line = _one_error_line(run_cli("run", "--resume", str(tmp_path / "missing")))
    assert "no run to resume" in line


def test_locked_run_dir_is_one_line_and_leaves_the_archive_alone(tmp_path):
    from discovery.archive import RunDirLock

    run_dir = tmp_path / "r"
    with Archive.open(run_dir) as archive:
        archive.start_run({}, "synthetic", None)
    before = db_path(run_dir).read_bytes()
    with RunDirLock(run_dir):
        line = _one_error_line(run_cli("run", "--resume", str(run_dir), "--quiet"))
    assert "in use by a live run" in line
    assert db_path(run_dir).read_bytes() == before


def test_unwritable_run_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = _one_error_line(run_cli("run", "--run-dir", str(blocker / "r"), "--quiet"))
    assert "not writable" in line
    if os.geteuid() != 0:  # root ignores directory permissions
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            line = _one_error_line(run_cli("run", "--run-dir", str(parent / "r"), "--quiet"))
        finally:
            parent.chmod(stat.S_IRWXU)
        assert "not writable" in line


def test_existing_run_dir_without_resume_is_refused(tmp_path):
    with Archive.open(tmp_path) as archive:
        archive.start_run({}, "synthetic", None)
    line = _one_error_line(run_cli("run", "--run-dir", str(tmp_path), "--quiet"))
    assert "--resume" in line
    json.dumps(line)


def test_no_arguments_runs_the_embedded_default_and_says_how_to_point_at_a_model(tmp_path):
    """The default proposer is llama.cpp with a hub GGUF; unreachable here, so: run dir, then one line."""
    from conftest import REPO

    out = run_cli("run", cwd=str(tmp_path), env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, out.stderr
    assert lines[0].startswith("run directory: runs/")
    assert lines[1].startswith("discovery: error: no local model") and "proposer.model=" in lines[1]
    assert "proposer.backend=openai" in lines[1] and "proposer.base_url=" in lines[1]
    run_dir = tmp_path / lines[0].removeprefix("run directory: ").strip()
    assert run_dir.is_dir() and not db_path(run_dir).exists()  # failed before any start-up: nothing to resume


def _processes_tagged(tag: str) -> list[int]:
    """Pids of live processes whose environment holds DISCOVERY_TEST_TAG=tag."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if f"DISCOVERY_TEST_TAG={tag}".encode() in fh.read().split(b"\0"):
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


def test_llamacpp_run_end_to_end(test_gguf, tmp_path):
    """`discovery run` with the embedded llama.cpp server and the test GGUF: real LLM proposals, stored."""
    run_dir, tag = tmp_path / "run", f"llamacpp-e2e-{os.getpid()}"
    out = run_cli("run", "--run-dir", str(run_dir), "--proposer", "llamacpp", "--model", test_gguf,
                  "--proposals", "2", "--seeds", "1", "--set", "eval.betas=[]", "--workers", "1", "--set", "train.max_steps=3",
                  "--set", "executor.threads_per_worker=1",  # the llama.cpp server needs the other core
                  "--set", "eval.reeval_seeds=1", "--set", "eval.baselines=[dpo]",
                  "--set", "proposer.max_tokens=400", "--set", "proposer.max_fix_attempts=1",
                  "--set", "proposer.context_window=4096", "--set", f"task.cache_dir={tmp_path / 'cache'}",
                  "--set", TINY_TASK, "--quiet", env={"DISCOVERY_TEST_TAG": tag}, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    with Archive.open(run_dir, readonly=True) as archive:
        proposed = [c for c in archive.candidates() if c.origin == "llm"]
        assert len(proposed) == archive.proposal_count() == 2
        assert all(c.proposer == "llamacpp" and c.model == test_gguf for c in proposed)
        for c in proposed:
            # each status must be the one its recorded answers and evaluations imply
            calls, evals = archive.llm_calls(c.id), archive.evaluations(c.id)
            assert 1 <= len(calls) <= 2, f"#{c.id}: {len(calls)} calls for 1 proposal + 1 fix attempt"
            last = calls[-1].verdict
            if c.status == Status.EVALUATED:
                assert last == "valid" and archive.summary(c.id).fitness is not None and c.fingerprint
            elif c.status == Status.INVALID:
                assert last in ("invalid", "unparseable", "truncated") and c.reason and evals == []
            elif c.status == Status.DUPLICATE:
                assert c.duplicate_of is not None and "behaves like" in c.reason and evals == []
            else:
                assert c.status == Status.FAILED and any(not e.result.ok for e in evals), (c.status, c.reason)
        assert archive.run_info().end_reason == "proposal budget of 2 used"
        usage = archive.usage()
        assert usage.calls >= 2 and usage.completion_tokens > 0 and usage.cost_usd == 0.0
        assert archive.run_info().ended_at
    assert _processes_tagged(tag) == []  # the embedded llama.cpp server (and every worker) is gone


@pytest.mark.slow
def test_symbolic_run_with_default_task_settings(tmp_path):
    """LLM-free from the CLI with the default synthetic task (prepared once into ~/.cache/discovery)."""
    run_dir = tmp_path / "run"
    out = run_cli("run", "--run-dir", str(run_dir), "--proposer", "symbolic", "--proposals", "3", "--quiet",
                  timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    with Archive.open(run_dir, readonly=True) as archive:
        proposed = [c for c in archive.candidates() if c.origin == "symbolic"]
        assert archive.proposal_count() == len(proposed) == 3
        assert all(c.status in (Status.EVALUATED, Status.INVALID, Status.DUPLICATE) for c in proposed)
        assert archive.baseline("dpo").candidate.status == Status.EVALUATED
