"""Crash safety: SIGKILL a run during proposal, validation, training and write; resume it each time.

The proposer is the real `openai` backend talking HTTP to a scripted OpenAI-compatible server on
127.0.0.1, so every LLM request the runs make is counted at the server: after the final resume, the
server has been asked exactly once per stored LLM call plus once per reply that a kill cut off before it
was stored (measured right after each kill), so no stored proposal was bought again. The archive holds
each evaluation once, none was lost, and the proposal budget was spent exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from proposer_support import local_validate
from scripted_openai_server import Reply, ScriptedOpenAIServer
from test_loop_e2e import TINY_TASK

from discovery.archive import Archive, db_path
from discovery.candidate import Origin, Status
from discovery.proposer.base import ProposalContext
from discovery.proposer.replay import ReplayProposer

REPO = Path(__file__).resolve().parents[1]
HEAD = "def {n}(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):\n"
MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")
PROPOSALS = 3


def _loss(name: str, scale: float) -> str:
    return ("import torch.nn.functional as F\n\n\n" + HEAD.format(n=name) + MARGIN
            + f"    return -F.logsigmoid({scale} * beta * margin)\n")


class LossServer(ScriptedOpenAIServer):
    """Answers every chat request with a new valid loss; `hang_next` makes the next answer wait."""

    def __init__(self):
        super().__init__(default=self._answer)
        self.hang_next = threading.Event()

    def _answer(self, body: dict) -> Reply:
        n = len(self.chat_requests)
        content = json.dumps({"thought": f"scaled margin {n}", "name": f"llm{n}", "code": _loss(f"llm{n}", 1 + n)})
        delay = 120.0 if self.hang_next.is_set() else 0.0
        self.hang_next.clear()
        return Reply(content, delay=delay)


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "DISCOVERY_TEST_KEY": "sk-test", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "discovery.cli", "run", *args, "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read(run_dir: Path, what):
    if not db_path(run_dir).is_file():
        return None
    try:
        with Archive.open(run_dir, readonly=True) as archive:
            return what(archive)
    except Exception:  # the run is creating its archive
        return None


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    """SIGKILL `proc` as soon as `ready()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the kill point: {proc.stderr.read()[-2000:]}")
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail("kill point not reached in time")


def _stored_calls(archive) -> int:
    return archive.usage().calls


def _proposed(archive) -> list:
    return [c for c in archive.candidates() if c.origin != Origin.LIBRARY]


def _evaluations(run_dir: Path) -> set:
    with Archive.open(run_dir, readonly=True) as archive:
        return {(e.candidate_id, e.result.seed, e.result.fidelity, e.result.beta, e.result.fitness)
                for e in archive.evaluations()}


def test_sigkill_during_proposal_validation_training_and_write_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    with LossServer() as server:
        first = ["--run-dir", str(run_dir), "--proposer", "openai", "--model", "scripted-model",
                 "--proposals", str(PROPOSALS), "--workers", "1", "--seeds", "1", "--set", "eval.betas=[]",
                 "--set", "executor.threads_per_worker=1",
                 "--set", f"proposer.base_url={server.base_url}", "--set", "proposer.api_key_env=DISCOVERY_TEST_KEY",
                 "--set", "train.max_steps=3", "--set", "eval.reeval_seeds=1", "--set", "eval.promote_fraction=1.0",
                 "--set", "eval.baselines=[dpo]", "--set", f"task.cache_dir={tmp_path / 'cache'}", "--set", TINY_TASK]
        resume = ["--resume", str(run_dir)]
        requests = lambda: len(server.chat_requests)  # noqa: E731
        calls = lambda: _read(run_dir, _stored_calls) or 0  # noqa: E731
        points = {
            # an LLM request is in flight (the server holds its answer back)
            "proposal": lambda: requests() >= 1,
            # a reply has been received and is being checked in the sandbox; not stored yet
            "validation": lambda: requests() > calls() + lost,
            "training": lambda: any(c.status == Status.TRAINING for c in _read(run_dir, _proposed) or []),
            "write": lambda: bool(_read(run_dir, lambda a: [e for e in a.evaluations()
                                                            if e.candidate_id in {c.id for c in _proposed(a)}])),
        }
        kept: set = set()
        lost = 0  # LLM replies cut off by a kill before they were stored
        for i, (point, ready) in enumerate(points.items()):
            if point == "proposal":
                server.hang_next.set()
            proc = _start(first if i == 0 else resume)
            _kill_when(proc, ready)
            lost_now = requests() - calls()
            assert lost_now - lost in (0, 1), f"{point}: more than the one in-flight request was lost"
            if point in ("proposal", "validation"):
                assert lost_now - lost == 1, f"{point}: the kill did not hit a proposal in flight"
            lost = lost_now
            after = _evaluations(run_dir) if db_path(run_dir).is_file() else set()
            assert kept <= after, f"{point}: an evaluation stored before the kill was lost"
            kept = after
        proc = _start(resume)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert kept <= _evaluations(run_dir)
        with Archive.open(run_dir, readonly=True) as archive:
            proposed = _proposed(archive)
            assert archive.proposal_count() == PROPOSALS and len(proposed) == PROPOSALS  # budget spent exactly
            assert all(c.origin == Origin.LLM and c.status == Status.EVALUATED for c in proposed)
            assert len({c.name for c in proposed}) == PROPOSALS  # no reply stored twice
            # no proposal bought twice: every request the server saw is a stored call or one a kill cut off
            assert requests() == archive.usage().calls + lost == PROPOSALS + lost
            keys = [(e.candidate_id, e.result.seed, e.result.fidelity, e.result.beta) for e in archive.evaluations()]
            assert len(keys) == len(set(keys))  # none evaluated twice
            assert archive.events(kind="repeated") == []  # no job ran again after it was stored
            for c in proposed:  # each candidate ran its whole plan: screen, full (+ the re-evaluation seed)
                fidelities = [e.result.fidelity for e in archive.evaluations(c.id)]
                expected = 2 if archive.stage(c.id) == "reeval" else 1
                assert fidelities.count("screen") == 1 and fidelities.count("full") == expected, (c.name, fidelities)
            sessions = [s.message for s in archive.events(kind="session")]
            assert sessions == ["started"] + ["resumed"] * 4


def _replay_dir(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "replay"
    path.mkdir()
    for i in range(n):
        (path / f"r{i}.py").write_text(_loss(f"r{i}", 1.0 + i))
    return path


def _context():
    from discovery.inner_loop.task import TaskInfo

    return ProposalContext(task=TaskInfo(name="t", description="d", fitness_description="f", beta=0.1,
                                         cost_class="cheap"))


def test_replay_resume_continues_after_what_the_archive_holds(tmp_path):
    directory = _replay_dir(tmp_path, 4)
    first = ReplayProposer(str(directory), local_validate)
    stored = [first.propose(_context()).candidate for _ in range(2)]
    assert [c.name for c in stored] == ["r0", "r1"]
    resumed = ReplayProposer(str(directory), local_validate)
    resumed.resume(stored)
    assert [resumed.propose(_context()).candidate.name for _ in range(2)] == ["r2", "r3"]
    assert resumed.stop_reason() == "replayed all 4 files"


def test_replay_resume_proposes_an_edited_file_again(tmp_path):
    directory = _replay_dir(tmp_path, 2)
    stored = [ReplayProposer(str(directory), local_validate).propose(_context()).candidate]
    (directory / "r0.py").write_text(_loss("r0", 7.0))  # changed since it was stored: a new proposal
    resumed = ReplayProposer(str(directory), local_validate)
    resumed.resume(stored)
    assert [resumed.propose(_context()).candidate.name for _ in range(2)] == ["r0", "r1"]
