"""Paid LLM calls are stored whatever happens to the proposal; usage totals and the cost cap stay exact.

The real LLM proposer talks real HTTP to a scripted OpenAI-compatible server on 127.0.0.1 and validates
with the real sandbox; only the training is replaced (`loop_support.TableExecutor`).
"""

from __future__ import annotations

import pytest
from loop_support import TASK, TableExecutor, fast_config
from proposer_support import best_validator
from scripted_openai_server import Reply, ScriptedOpenAIServer, json_reply

from discovery import library
from discovery.archive import Archive
from discovery.loop import DiscoveryLoop
from discovery.proposer import ProposerError, make_proposer
from discovery.proposer.base import ProposalContext, paid_calls
from discovery.selection import TopKRecent

WRONG_SIGNATURE = library.get("cell").code.replace("beta):", "beta, tau):")
FAST = {"retry-after-ms": "10"}
PRICE = {"scripted-model": [2.0, 8.0]}
COST = (1000 * 2.0 + 200 * 8.0) / 1e6  # one invalid answer of 1000 prompt + 200 completion tokens


def config_for(server: ScriptedOpenAIServer, **budget):
    proposer = {"backend": "openai", "base_url": server.base_url, "model": "scripted-model", "timeout": 5.0,
                "max_retries": 1, "max_fix_attempts": 2, "prices": PRICE}
    return fast_config(screen=False, proposer=proposer, budget={"proposals": 3, **budget})


def run_loop(config, run_dir, validator=None) -> tuple:
    executor = TableExecutor({"dpo": [0.5, 0.52]}, workers=1)  # one proposal at a time
    proposer = make_proposer(config, validator or best_validator())
    with Archive.open(run_dir) as archive:
        archive.start_run(config.to_dict(), "synthetic", "k")
        loop = DiscoveryLoop(config, archive, TASK, proposer, executor, TopKRecent())
        result = loop.run()
        calls, usage = archive.llm_calls(), archive.usage()
    return result, calls, usage


def failing_fix_up() -> ScriptedOpenAIServer:
    """An invalid first answer (paid), then the endpoint fails for good during the fix-up."""
    return ScriptedOpenAIServer([json_reply("t", "wrong", WRONG_SIGNATURE, prompt_tokens=1000, completion_tokens=200)],
                                default=Reply(status=500, headers=FAST))


def test_calls_paid_before_a_failing_fix_up_are_stored_and_counted(tmp_path):
    with failing_fix_up() as server:
        result, calls, usage = run_loop(config_for(server), tmp_path)
        asked = len(server.chat_requests)
    assert "proposer" in result.error and "HTTP 500" in result.error
    assert asked == 1 + 2  # the proposal, then the fix-up with one retry
    (call,) = calls
    assert call.candidate_id is None and call.verdict == "invalid" and call.prompt_tokens == 1000
    assert usage.calls == 1 and usage.tokens == 1200 and usage.cost_usd == pytest.approx(COST)


def test_the_cost_cap_counts_what_a_failed_session_paid(tmp_path):
    with failing_fix_up() as server:
        run_loop(config_for(server), tmp_path)
    with ScriptedOpenAIServer(default=json_reply("t", "never", library.get("ipo").code)) as server:
        result, calls, usage = run_loop(config_for(server, max_cost_usd=COST * 0.9), tmp_path)
        assert server.chat_requests == []  # the resumed session starts over the cap: nothing more is bought
    assert "cost cap" in result.stop_reason and usage.cost_usd == pytest.approx(COST)


def test_resumed_proposer_ledger_starts_from_the_stored_spending(tmp_path):
    with failing_fix_up() as server:
        run_loop(config_for(server), tmp_path)
    with ScriptedOpenAIServer() as server:
        config = config_for(server, max_cost_usd=COST * 1.5)
        proposer = make_proposer(config, best_validator())
        with Archive.open(tmp_path) as archive:
            loop = DiscoveryLoop(config, archive, TASK, proposer, TableExecutor({"dpo": 0.5}, workers=1), TopKRecent())
            loop.run()
    assert proposer.ledger.cost_usd >= COST  # without the stored spending the ledger would start at 0


def test_a_validator_crash_after_a_paid_answer_still_reports_the_call():
    def crashing(code: str):
        raise RuntimeError("validator crashed")

    with ScriptedOpenAIServer([json_reply("t", "x", WRONG_SIGNATURE, prompt_tokens=1000, completion_tokens=200)]) as s:
        config = config_for(s)
        proposer = make_proposer(config, crashing)
        with pytest.raises(RuntimeError) as info:
            proposer.propose(ProposalContext(task=TASK))
    (call,) = paid_calls(info.value)
    assert call.verdict == "error" and call.cost_usd == pytest.approx(COST)
    assert proposer.ledger.cost_usd == pytest.approx(COST)


def test_an_error_without_paid_calls_stores_nothing():
    assert paid_calls(ProposerError("x")) == [] and paid_calls(RuntimeError()) == []
