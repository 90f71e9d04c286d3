"""The embedded server's life with a stand-in executable: start, answer, stop; a crash is named, restarted once.

The stand-in (tests/standin_llama_server.py) is a real child process speaking real HTTP on 127.0.0.1 in
the place of llama_cpp.server, so everything up to the process edge is the production code path.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import pytest
import standin_llama_server
from conftest import run_cli
from proposer_support import best_validator

from discovery import library
from discovery.candidate import Candidate, Origin
from discovery.config import ProposerConfig, RunConfig
from discovery.inner_loop.task import TaskInfo
from discovery.proposer import ProposalContext, ProposerError
from discovery.proposer.accounting import Ledger, PriceTable
from discovery.proposer.factory import LlamaCppProposer
from discovery.proposer.llamacpp_server import EmbeddedChatClient, LlamaCppServer, ServerCrashed

STANDIN = Path(__file__).with_name("standin_llama_server.py")
STANDIN_ANSWER = standin_llama_server.ANSWER
TASK = TaskInfo("synthetic", "a policy is trained with your loss on preference pairs", "held-out accuracy", 0.1,
                "cheap")
OPTIONS = dict(timeout=30.0, max_retries=1, temperature=0.0, max_tokens=200, response_format="text", seed=0)


def launcher(state: Path, crash: str, *extra: str) -> list[str]:
    return [sys.executable, str(STANDIN), "--state", str(state), "--crash", crash, *extra]


def started_pids(state: Path) -> list[int]:
    path = state / "pids"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own, already dead child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def no_orphans(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def server(tmp_path: Path, crash: str) -> LlamaCppServer:
    return LlamaCppServer("standin.gguf", n_ctx=512, start_timeout=30, launcher=launcher(tmp_path, crash))


def test_start_answer_stop_leaves_no_process(tmp_path):
    srv = server(tmp_path, "never")
    config = RunConfig(proposer=ProposerConfig(max_fix_attempts=0))
    client = EmbeddedChatClient(srv, "standin.gguf", **OPTIONS)
    proposer = LlamaCppProposer(srv, client, best_validator(), config.proposer, Ledger(None, None),
                                PriceTable.build({}, local=True), name="llamacpp")
    baselines = [Candidate(name="dpo", code=library.get("dpo").code, origin=Origin.LIBRARY)]
    try:
        assert srv.running and "--use_extra_bufts" in srv._command  # the launcher got the server's arguments
        proposer.probe()
        proposal = proposer.propose(ProposalContext(task=TASK, baselines=baselines))
    finally:
        proposer.close()
    assert proposal.valid and proposal.candidate.name == "standin_margin", proposal.candidate.reason
    assert srv.restarts == 0 and srv.crashes == []
    assert len(started_pids(tmp_path)) == 1 and no_orphans(started_pids(tmp_path))


def test_a_crash_mid_request_is_named_restarted_once_then_stops(tmp_path):
    srv = server(tmp_path, "always")
    client = EmbeddedChatClient(srv, "standin.gguf", **OPTIONS)
    try:
        with pytest.raises(ServerCrashed) as info:
            client.complete([{"role": "user", "content": "propose a loss"}])
    finally:
        srv.close()
    message = str(info.value)
    assert message.startswith("the llama.cpp server crashed (SIGSEGV) while generating; log: ")
    assert "about to fault in the stand-in" in message  # the tail of the server's own output
    assert "restarted 1 time(s) and died again" in message and "cannot reach" not in message
    assert srv.restarts == 1 and srv.crashes == ["crashed (SIGSEGV)", "crashed (SIGSEGV)"]
    pids = started_pids(tmp_path)
    assert len(pids) == 2 and no_orphans(pids)  # exactly one restart, and nothing left running


def test_one_crash_is_survived_by_one_restart(tmp_path):
    srv = server(tmp_path, "first")
    client = EmbeddedChatClient(srv, "standin.gguf", **OPTIONS)
    try:
        reply = client.complete([{"role": "user", "content": "propose a loss"}])
    finally:
        srv.close()
    assert "standin_margin" in reply.text
    assert srv.restarts == 1 and srv.crashes == ["crashed (SIGSEGV)"]
    assert len((tmp_path / "requests").read_text().splitlines()) == 2  # the cut-off request was asked again
    assert no_orphans(started_pids(tmp_path))


def test_a_long_answer_that_keeps_coming_is_no_timeout_and_its_tokens_are_counted(tmp_path):
    """Streamed: the timeout bounds a stall between tokens, so a slow answer on a busy CPU is not thrown away."""
    srv = LlamaCppServer("standin.gguf", n_ctx=512, start_timeout=30,
                         launcher=launcher(tmp_path, "never", "--token-delay", "0.15"))
    client = EmbeddedChatClient(srv, "standin.gguf", **{**OPTIONS, "timeout": 1.0, "max_retries": 0})
    messages = [{"role": "system", "content": "you write losses"}, {"role": "user", "content": "propose a loss"}]
    start = time.monotonic()
    try:
        reply = client.complete(messages)
    finally:
        srv.close()
    pieces = -(-len(STANDIN_ANSWER) // 16)
    assert time.monotonic() - start > 2 * 1.0  # the whole answer took longer than the timeout
    assert reply.text == STANDIN_ANSWER and reply.finish_reason == "stop"
    assert srv.restarts == 0
    assert reply.completion_tokens == pieces
    assert reply.prompt_tokens == 3 + 5 + 3 + 5 + 3  # the server's count of each message, framing, the reply turn


def test_an_answer_that_stops_coming_times_out_as_a_stall(tmp_path):
    srv = LlamaCppServer("standin.gguf", n_ctx=512, start_timeout=30,
                         launcher=launcher(tmp_path, "never", "--stall-after", "2"))
    client = EmbeddedChatClient(srv, "standin.gguf", **{**OPTIONS, "timeout": 1.0, "max_retries": 0})
    try:
        with pytest.raises(ProposerError, match=r"produced no token after 1 tries of 1.0s"):
            client.complete([{"role": "user", "content": "propose a loss"}])
    finally:
        srv.close()
    assert srv.restarts == 1  # the stalled generation is stopped, so the next request finds the server free
    assert no_orphans(started_pids(tmp_path))


def test_a_request_cut_off_by_close_is_no_crash(tmp_path):
    srv = server(tmp_path, "never")
    srv.close()
    client = EmbeddedChatClient(srv, "standin.gguf", **OPTIONS)
    with pytest.raises(ProposerError, match="was stopped"):
        client.complete([{"role": "user", "content": "propose a loss"}])
    assert srv.restarts == 0 and no_orphans(started_pids(tmp_path))


def _run_args(run_dir: Path, *extra: str) -> list[str]:
    return ["run", "--run-dir", str(run_dir), "--proposals", "1", "--seeds", "1", "--set", "eval.betas=[]", "--quiet",
            *extra]


def test_a_crashing_embedded_server_stops_the_run_before_the_baselines(tmp_path):
    model = tmp_path / "standin.gguf"
    model.write_bytes(b"GGUF")
    state = tmp_path / "state"
    state.mkdir()
    command = " ".join(launcher(state, "always"))
    start = time.monotonic()
    out = run_cli(*_run_args(tmp_path / "run", "--model", str(model), "--set", f"proposer.server_command={command}"),
                  timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1, out.stderr
    assert "the llama.cpp server crashed (SIGSEGV) while generating" in lines[0]
    assert len(started_pids(state)) == 2 and no_orphans(started_pids(state))
    assert _baselines_trained(tmp_path / "run") == 0
    assert time.monotonic() - start < 240


def test_a_wrong_remote_url_fails_in_seconds_before_the_baselines(tmp_path):
    import socket

    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    out = run_cli(*_run_args(tmp_path / "run", "--proposer", "openai", "--set", f"proposer.base_url=http://127.0.0.1:"
                             f"{port}/v1", "--set", "proposer.model=some-model"), timeout=120)
    elapsed = time.monotonic() - start
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1, out.stderr
    assert f"cannot reach the LLM endpoint http://127.0.0.1:{port}/v1" in lines[0]
    assert _baselines_trained(tmp_path / "run") == 0
    assert elapsed < 60, elapsed  # about 5 s here: the CLI's imports and one retry, not minutes of baselines


def _baselines_trained(run_dir: Path) -> int:
    from discovery.archive import Archive, db_path

    if not db_path(run_dir).is_file():
        return 0
    with Archive.open(run_dir, readonly=True) as archive:
        return sum(1 for s in archive.summaries(origin=Origin.LIBRARY) if s.fitness is not None)


def test_the_default_server_settings():
    from discovery.proposer.factory import server_options
    from discovery.proposer.llamacpp_main import pop_flag
    from discovery.proposer.llamacpp_server import usable_cores

    p = RunConfig().proposer
    args = server_options(p).arguments()
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--use_extra_bufts"] == "False" and flags["--logits_all"] == "False"
    assert flags["--n_threads"] == flags["--n_threads_batch"] == str(max(1, usable_cores() // 2))
    assert "--draft_model" not in flags
    p = dataclasses.replace(p, cpu_repack=True, draft_tokens=8, n_threads=3)
    flags = dict(zip(*[iter(server_options(p).arguments())] * 2, strict=True))
    assert flags["--use_extra_bufts"] == "True" and flags["--n_threads"] == "3"
    # llama-cpp-python sizes its logits buffer by the flag, yet a draft model needs every token's logits
    assert flags["--draft_model"] == "prompt-lookup-decoding" and flags["--logits_all"] == "True"
    assert pop_flag(["--model", "m", "--use_extra_bufts", "false", "--port", "1"]) == (False, ["--model", "m",
                                                                                             "--port", "1"])
    assert pop_flag(["--use_extra_bufts", "True"]) == (True, []) and pop_flag(["--model", "m"])[0] is False


def test_the_server_threads_sleep_at_barriers_unless_the_user_says_otherwise(monkeypatch):
    from discovery.proposer.llamacpp_server import ServerOptions

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert ServerOptions().environment() == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert ServerOptions(passive_wait=False).environment() == {}
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert ServerOptions().environment() == {}
