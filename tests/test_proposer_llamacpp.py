"""The embedded llama.cpp backend with the real test GGUF: cold start to a valid candidate; no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from proposer_support import best_validator

from discovery import library
from discovery.candidate import Candidate, Origin
from discovery.config import ProposerConfig, RunConfig
from discovery.inner_loop.task import TaskInfo
from discovery.proposer import ProposalContext, ProposerError, make_proposer
from discovery.proposer.llamacpp_server import EmbeddedChatClient, LlamaCppServer

pytestmark = pytest.mark.llm
REPO = Path(__file__).resolve().parents[1]
TASK = TaskInfo("synthetic", "a policy is trained with your loss on preference pairs", "held-out accuracy", 0.1,
                "cheap")


def gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our own child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False


@pytest.mark.slow  # 1-4 min on a shared 2-core CPU: python -m pytest -m llm tests/test_proposer_llamacpp.py
def test_cold_start_gives_a_valid_candidate_and_the_server_is_gone_after(test_gguf):
    config = RunConfig(proposer=ProposerConfig(backend="llamacpp", model=test_gguf, context_window=2048,
                                               max_tokens=400, max_fix_attempts=2))
    baselines = [Candidate(name=n, code=library.get(n).code, origin=Origin.LIBRARY) for n in ("dpo", "slic", "ipo")]
    context = ProposalContext(task=TASK, baselines=baselines)
    proposer = make_proposer(config, best_validator())
    pid = proposer.server.process.pid
    try:
        proposals = []
        while len(proposals) < 3 and not any(x.valid for x in proposals):
            proposals.append(proposer.propose(context))
    finally:
        proposer.close()
    assert any(x.valid for x in proposals), [x.candidate.reason for x in proposals]
    valid = next(x for x in proposals if x.valid)
    assert valid.candidate.model == test_gguf and valid.candidate.proposer == "llamacpp"
    assert all(call.cost_usd == 0 and call.completion_tokens > 0 for call in valid.calls)
    assert gone(pid)


def test_server_dies_when_its_parent_is_killed(test_gguf):
    script = (
        "import os, signal, sys\n"
        "from discovery.proposer.llamacpp_server import LlamaCppServer\n"
        f"server = LlamaCppServer({test_gguf!r}, n_ctx=512)\n"
        "print(server.process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == -signal.SIGKILL
    pid = int(out.stdout.split()[0])
    assert gone(pid), f"llama.cpp server {pid} outlived its parent"


def test_a_timed_out_generation_is_stopped_not_left_running(test_gguf):
    """llama-cpp-python finishes an abandoned generation; the client restarts the server so nothing queues behind.

    Answers are streamed, so the timeout bounds a stall: here the prompt alone takes longer than it (the server
    sends its first token only after reading the whole prompt), then up to 900 tokens would follow.
    """
    server = LlamaCppServer(test_gguf, n_ctx=2048, n_threads=1)
    options = dict(temperature=0.0, response_format="text", seed=0)
    impatient = EmbeddedChatClient(server, test_gguf, timeout=0.2, max_retries=1, max_tokens=900, **options)
    patient = EmbeddedChatClient(server, test_gguf, timeout=120.0, max_retries=0, max_tokens=4, **options)
    filler = " ".join(f"item{i}" for i in range(400))
    long_answer = [{"role": "user", "content": f"{filler}\nCount from 1 to 1000, one number per line."}]
    try:
        with pytest.raises(ProposerError, match=r"produced no token after 2 tries of 0.2s"):
            impatient.complete(long_answer)
        assert server.restarts == 2  # one per timed-out try, so both abandoned generations were stopped
        reply = patient.complete([{"role": "user", "content": "Say hi."}])
    finally:
        server.close()
    # Two abandoned 900-token generations would hold the server for 40 s or more (about 45 tok/s on 2 cores).
    assert reply.completion_tokens <= 4 and reply.latency_s < 15, reply
    assert reply.prompt_tokens > 5  # counted by the server's tokenizer (the stream carries no usage)


def test_the_default_server_loads_without_weight_repacking_and_answers_the_probe(test_gguf):
    """No 'extra buffer types' (AMX/CPU_REPACK): repacked weights crashed llama.cpp on an AMX-advertising VM."""
    import llama_cpp

    from discovery.proposer.factory import server_options

    config = RunConfig(proposer=ProposerConfig(context_window=1024))
    server = LlamaCppServer(test_gguf, options=replace(server_options(config.proposer), verbose=True))
    client = EmbeddedChatClient(server, test_gguf, timeout=120.0, max_retries=0, temperature=0.0, max_tokens=64,
                                response_format="text", seed=0)
    try:
        reply = client.probe()
        log = Path(server.log_path).read_text(errors="replace")
    finally:
        server.close()
    assert reply.completion_tokens == 1 and server.crashes == []
    assert "CPU_Mapped model buffer size" in log  # the weights were loaded, and into plain CPU buffers only
    assert "REPACK model buffer" not in log and "AMX model buffer" not in log, log[-2000:]
    if "REPACK = 1" in llama_cpp.llama_print_system_info().decode():  # the control: the switch really switches
        repacking = LlamaCppServer(test_gguf, options=replace(server_options(config.proposer), verbose=True,
                                                              extra_bufts=True))
        try:
            assert "REPACK model buffer" in Path(repacking.log_path).read_text(errors="replace")
        finally:
            repacking.close()
