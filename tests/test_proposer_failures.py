"""The LLM proposer against a scripted OpenAI-compatible server on 127.0.0.1: every failure mode."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from proposer_support import best_validator
from scripted_openai_server import Reply, ScriptedOpenAIServer, json_reply

from discovery import library
from discovery.candidate import Candidate, Fitness, Origin, Status, code_hash
from discovery.config import RunConfig, with_values
from discovery.inner_loop.task import TaskInfo
from discovery.proposer import ProposalContext, ProposerError, make_proposer
from discovery.proposer.novelty import KnownLoss

TASK = TaskInfo("synthetic", "a toy preference task", "the held-out preference accuracy", 0.1, "cheap")
GOOD = library.get("cell").code
WRONG_SIGNATURE = GOOD.replace("beta):", "beta, tau):")
FAST = {"retry-after-ms": "10"}
VALIDATE = best_validator()  # discovery.sandbox.validate (the stand-in only before the sandbox existed)  # the openai client honours it: retries without long back-off


def proposer_for(server: ScriptedOpenAIServer, **overrides):
    values = {"proposer.backend": "openai", "proposer.base_url": server.base_url, "proposer.model": "scripted-model",
              "proposer.timeout": 5.0, "proposer.max_retries": 2}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return make_proposer(with_values(RunConfig(), values), VALIDATE)


def context() -> ProposalContext:
    baselines = [Candidate(name=loss.name, code=loss.code, origin=Origin.LIBRARY, status=Status.EVALUATED,
                           fitness=Fitness(0.6 - i / 100, 0.55, 0.65, 3)) for i, loss in enumerate(library.LOSSES[:4])]
    return ProposalContext(task=TASK, baselines=baselines)


def test_valid_reply_gives_a_proposed_candidate_with_accounting():
    with ScriptedOpenAIServer([json_reply("mix two losses", "cell_like", GOOD, prompt_tokens=1000,
                                          completion_tokens=200)]) as server:
        proposer = proposer_for(server, proposer__prices={"scripted-model": [2.0, 8.0]})
        proposal = proposer.propose(context())
    assert proposal.valid and proposal.candidate.status == Status.PROPOSED
    assert proposal.candidate.name == "cell_like" and proposal.candidate.thought == "mix two losses"
    (call,) = proposal.calls
    assert (call.prompt_tokens, call.completion_tokens) == (1000, 200)
    assert call.cost_usd == pytest.approx((1000 * 2.0 + 200 * 8.0) / 1e6)
    assert call.verdict == "valid" and call.latency_s > 0
    request = server.chat_requests[0]
    assert request["response_format"]["type"] == "json_schema"
    assert "dpo" in request["messages"][1]["content"]  # the baselines are in the prompt


def test_429_and_500_are_retried_then_succeed():
    script = [Reply(status=429, headers=FAST), Reply(status=500, headers=FAST), json_reply("t", "x", GOOD)]
    with ScriptedOpenAIServer(script) as server:
        proposal = proposer_for(server).propose(context())
    assert proposal.valid
    assert len(server.chat_requests) == 3
    assert len(proposal.calls) == 1


def test_persistent_500_is_bounded_and_one_clear_error():
    with ScriptedOpenAIServer(default=Reply(status=500, headers=FAST)) as server:
        with pytest.raises(ProposerError) as info:
            proposer_for(server, proposer__max_retries=2).propose(context())
    assert len(server.chat_requests) == 3  # 1 + max_retries, then it gives up
    message = str(info.value)
    assert "HTTP 500" in message and "\n" not in message


def test_hanging_request_times_out():
    with ScriptedOpenAIServer(default=Reply(delay=60, content="never")) as server:
        start = time.monotonic()
        with pytest.raises(ProposerError, match="timed out"):
            proposer_for(server, proposer__timeout=0.5, proposer__max_retries=1).propose(context())
        elapsed = time.monotonic() - start
    assert elapsed < 15
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize("reply, reason", [
    (Reply(""), "empty reply"),
    (Reply("I am sorry, as an AI I cannot write code today."), "no JSON object and no Python function"),
    (Reply(json.dumps({"thought": "an idea", "name": "idea"})), 'no "code" field'),
    (Reply('{"thought": "long", "name": "cut", "code": "import torch\\n\\ndef cut(policy_ch',
           finish_reason="length"), "cut off at max_tokens"),
])
def test_unusable_reply_is_an_invalid_proposal_with_its_reason(reply, reason):
    with ScriptedOpenAIServer([reply]) as server:
        proposal = proposer_for(server, proposer__max_fix_attempts=0).propose(context())
    assert not proposal.valid
    assert proposal.candidate.status == Status.INVALID
    assert reason in proposal.candidate.reason
    assert len(proposal.attempts) == 1 and proposal.attempts[0].reason


def test_fix_up_loop_sends_the_validator_error_back_and_records_every_attempt():
    script = [Reply("garbage"), json_reply("t", "wrong", WRONG_SIGNATURE), json_reply("t", "fixed", GOOD)]
    with ScriptedOpenAIServer(script) as server:
        proposal = proposer_for(server, proposer__max_fix_attempts=2).propose(context())
    assert proposal.valid and proposal.candidate.name == "fixed"
    assert [a.verdict for a in proposal.attempts] == ["unparseable", "invalid", "valid"]
    assert [a.kind for a in proposal.attempts] == ["propose", "fix", "fix"]
    assert len({a.prompt_hash for a in proposal.attempts}) == 3
    fix_prompt = server.chat_requests[2]["messages"][-1]["content"]
    assert VALIDATE(WRONG_SIGNATURE).summary() in fix_prompt and "beta, tau" in fix_prompt
    assert len(proposal.calls) == 3 and all(c.reply for c in proposal.calls)


DPO = library.get("dpo").code
DPO_PLUS_ONE = DPO.replace("def dpo(", "def dpo_plus_one(").replace("return ", "return 1.0 + ")


def known_dpo() -> ProposalContext:
    """A context whose stored losses include DPO, with the probes the sandbox computes for it."""
    report = VALIDATE(DPO)
    known = KnownLoss(1, "dpo", report.fingerprint, code_hash(DPO), tuple(report.probe_values))
    return replace(context(), known_losses=[known], duplicate_distance=1e-3)


def test_a_copy_of_a_stored_loss_is_sent_back_as_not_new_and_the_next_answer_kept():
    script = [json_reply("t", "dpo_plus_one", DPO_PLUS_ONE), json_reply("t", "fixed", GOOD)]
    with ScriptedOpenAIServer(script) as server:
        proposal = proposer_for(server, proposer__max_fix_attempts=2).propose(known_dpo())
    assert [a.verdict for a in proposal.attempts] == ["duplicate", "valid"]
    assert proposal.valid and proposal.candidate.name == "fixed" and proposal.candidate.code == GOOD
    fix_prompt = server.chat_requests[1]["messages"][-1]["content"]
    assert "known loss `dpo`" in fix_prompt and "Write a different formula" in fix_prompt
    assert "keep the idea" not in fix_prompt
    assert [c.verdict for c in proposal.calls] == ["duplicate", "valid"]


def test_a_duplicate_after_the_last_fix_attempt_is_still_valid_code_for_the_loop_to_store():
    with ScriptedOpenAIServer([json_reply("t", "dpo_plus_one", DPO_PLUS_ONE)]) as server:
        proposal = proposer_for(server, proposer__max_fix_attempts=0).propose(known_dpo())
    assert proposal.candidate.status == Status.PROPOSED and proposal.candidate.code == DPO_PLUS_ONE
    assert proposal.attempts[0].verdict == "duplicate" and len(server.chat_requests) == 1


def test_without_known_losses_or_with_retry_duplicates_off_a_copy_is_not_sent_back():
    with ScriptedOpenAIServer([json_reply("t", "dpo_plus_one", DPO_PLUS_ONE)]) as server:
        proposal = proposer_for(server).propose(context())
    assert proposal.attempts[0].verdict == "valid"
    with ScriptedOpenAIServer([json_reply("t", "dpo_plus_one", DPO_PLUS_ONE)]) as server:
        proposal = proposer_for(server, proposer__retry_duplicates=False).propose(known_dpo())
    assert [a.verdict for a in proposal.attempts] == ["valid"] and len(server.chat_requests) == 1


def test_wrong_signature_without_fix_attempts_is_rejected_with_the_validator_reason():
    with ScriptedOpenAIServer([json_reply("t", "wrong", WRONG_SIGNATURE)]) as server:
        proposal = proposer_for(server, proposer__max_fix_attempts=0).propose(context())
    assert proposal.candidate.status == Status.INVALID
    assert "signature" in proposal.candidate.reason
    assert proposal.candidate.code == WRONG_SIGNATURE


def test_endpoint_without_structured_output_falls_back_to_text_extraction():
    fenced = f"Here is my idea.\n```python\n{GOOD}```\n"
    with ScriptedOpenAIServer([Reply(status=400), Reply(fenced)]) as server:
        proposal = proposer_for(server).propose(context())
    assert proposal.valid
    first, second = server.chat_requests
    assert "response_format" in first and "response_format" not in second


def test_token_cap_stops_fix_attempts_and_new_proposals():
    script = [json_reply("t", "wrong", WRONG_SIGNATURE, prompt_tokens=900, completion_tokens=200)]
    with ScriptedOpenAIServer(script) as server:
        proposer = proposer_for(server, budget__max_tokens=1000, proposer__max_fix_attempts=2)
        assert proposer.stop_reason() is None
        proposal = proposer.propose(context())
    assert len(server.chat_requests) == 1  # the cap stopped the fix-up loop
    assert proposal.candidate.status == Status.INVALID
    assert "max_tokens" in proposer.stop_reason()


def test_cost_cap_stops_new_proposals():
    with ScriptedOpenAIServer(default=json_reply("t", "x", GOOD, prompt_tokens=10_000, completion_tokens=0)) as s:
        proposer = proposer_for(s, budget__max_cost_usd=0.05, proposer__prices={"scripted-model": [2.0, 2.0]})
        proposed = 0
        while proposer.stop_reason() is None and proposed < 10:
            proposer.propose(context())
            proposed += 1
    assert proposed == 3  # $0.02 per call: stops once $0.06 >= $0.05
    assert "max_cost_usd" in proposer.stop_reason()
