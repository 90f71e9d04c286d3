"""Proposal operators: the SEARCH/REPLACE parser, the seeded operator choice, what the prompt shows of the
parents, and the temperature of each attempt (against the scripted OpenAI-compatible server)."""

from __future__ import annotations

from collections import Counter

import pytest
from proposer_support import best_validator
from scripted_openai_server import Reply, ScriptedOpenAIServer, json_reply

from discovery import library
from discovery.candidate import Candidate, Fitness, Origin, Status
from discovery.config import from_dict
from discovery.inner_loop.task import TaskInfo
from discovery.proposer import ProposalContext, ProposerError, diff, make_proposer, operators
from discovery.proposer import context as ctx
from discovery.proposer.extract import read

TASK = TaskInfo("synthetic", "a toy preference task", "the held-out reward", 0.1, "cheap")
DPO = library.get("dpo").code
GOOD = library.get("cell").code
VALIDATE = best_validator()
SHAPE = {"logit": [-2.0, 0.0, 2.0, 5.0], "loss": [2.13, 0.693, 0.127, 0.0067], "dloss": [-0.088, -0.05, -0.012, 0.0]}
PARENT = (
    "import torch.nn.functional as F\n\n\n"
    "def parent_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,"
    " beta):\n"
    "    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)\n"
    "    logits = beta * margin\n"
    "    loss = -F.logsigmoid(logits)\n"
    "    return loss\n"
)
EDIT = "NAME: smooth_parent\nTHOUGHT: a softer slope\n<<<<<<< SEARCH\n    loss = -F.logsigmoid(logits)\n=======\n" \
       "    loss = -F.logsigmoid(0.5 * logits) + 0.1 * F.relu(1 - logits)\n>>>>>>> REPLACE\n"


def member(name: str, ident: int, code: str = PARENT, fitness: float = -0.78, origin=Origin.LLM) -> Candidate:
    return Candidate(name=name, code=code, origin=origin, id=ident, status=Status.EVALUATED,
                     fitness=Fitness(fitness, fitness - 0.01, fitness + 0.01, 5),
                     metrics={"kl": 3.9, "heldout_accuracy": 0.671}, diagnostics={"shape": SHAPE, "margin_only": True})


def archive_context(n_parents: int = 2) -> ProposalContext:
    parents = [member(f"parent_{i}", 10 + i, PARENT.replace("parent_loss", f"parent_{i}")) for i in range(n_parents)]
    dpo = member("dpo", 1, DPO, -0.767, Origin.LIBRARY)
    return ProposalContext(task=TASK, parents=parents, top=list(parents), baselines=[dpo],
                           frontiers={1: [(0.05, -0.83, 5.1), (0.1, -0.767, 4.43), (0.2, -0.79, 2.9)],
                                      10: [(0.1, -0.79, 3.5), (0.2, -0.78, 3.9)]})


def proposer_for(server: ScriptedOpenAIServer, **proposer):
    values = {"backend": "openai", "base_url": server.base_url, "model": "scripted-model", "timeout": 5.0,
              "max_retries": 0, "response_format": "text", **proposer}
    return make_proposer(from_dict({"proposer": values}), VALIDATE)


# ---------------------------------------------------------------- the SEARCH/REPLACE parser


def test_an_edit_applies_to_the_lines_it_names():
    edited = diff.apply(PARENT, EDIT)
    assert edited.ok and edited.blocks == 1 and (edited.name, edited.thought) == ("smooth_parent", "a softer slope")
    assert "F.relu(1 - logits)" in edited.code and "-F.logsigmoid(logits)\n" not in edited.code
    assert edited.code.count("def parent_loss(") == 1 and edited.code.endswith("return loss\n")


def test_two_blocks_apply_in_order_and_trailing_spaces_are_forgiven():
    text = ("<<<<<<< SEARCH\n    logits = beta * margin   \n=======\n    logits = 2.0 * beta * margin\n>>>>>>> REPLACE\n"
            "<<<<<<< SEARCH\n    loss = -F.logsigmoid(logits)\n=======\n    loss = F.softplus(-logits)\n"
            ">>>>>>> REPLACE")
    edited = diff.apply(PARENT, text)
    assert edited.ok and edited.blocks == 2
    assert "2.0 * beta * margin" in edited.code and "F.softplus(-logits)" in edited.code


@pytest.mark.parametrize("text, reason", [
    ("<<<<<<< SEARCH\n    loss = F.relu(logits)\n=======\n    loss = logits\n>>>>>>> REPLACE", "does not occur"),
    ("<<<<<<< SEARCH\n    return loss\n=======\n    return 2 * loss\n>>>>>>> REPLACE\n"  # block 1 removed it
     "<<<<<<< SEARCH\n    return loss\n=======\n    return 3 * loss\n>>>>>>> REPLACE", "block 2"),
    ("<<<<<<< SEARCH\n=======\n    x = 1\n>>>>>>> REPLACE", "is empty"),
    ("<<<<<<< SEARCH\n    return loss\n>>>>>>> REPLACE", "malformed"),
    ("I would change the slope.", "no SEARCH/REPLACE block"),
])
def test_an_edit_that_does_not_apply_says_why(text, reason):
    edited = diff.apply(PARENT, text)
    assert not edited.ok and edited.code == "" and reason in edited.reason


def test_a_search_text_that_matches_twice_is_refused():
    code = PARENT.replace("    return loss\n", "    loss = loss\n    loss = loss\n    return loss\n")
    edited = diff.apply(code, "<<<<<<< SEARCH\n    loss = loss\n=======\n    pass\n>>>>>>> REPLACE")
    assert not edited.ok and "occurs 2 times" in edited.reason


def test_read_applies_an_edit_only_when_there_is_code_to_edit():
    found, was_edit = read(EDIT, PARENT)
    assert was_edit and found.ok and found.name == "smooth_parent"
    found, was_edit = read(EDIT, None)  # no parent: extraction as before (no function in this reply)
    assert not was_edit and not found.ok
    found, was_edit = read(json_reply("t", "whole", GOOD).content, PARENT)  # the whole code instead of an edit
    assert not was_edit and found.ok and found.name == "whole"


# ---------------------------------------------------------------- the operator choice


def test_the_operator_choice_is_seeded_and_follows_the_mix():
    context = archive_context()
    mix = {"diff": 0.5, "full": 0.3, "crossover": 0.2}
    picks = [operators.choose(mix, context, seed=3, index=i) for i in range(600)]
    assert picks == [operators.choose(mix, context, seed=3, index=i) for i in range(600)]
    assert picks != [operators.choose(mix, context, seed=4, index=i) for i in range(600)]
    counts = Counter(p.operator for p in picks)
    assert abs(counts["diff"] / 600 - 0.5) < 0.07 and abs(counts["crossover"] / 600 - 0.2) < 0.07
    assert all(len(p.parents) == operators.OPERATORS[p.operator] for p in picks)
    assert {len({c.id for c in p.parents}) for p in picks if p.operator == "crossover"} == {2}


def test_an_operator_without_enough_parents_is_skipped():
    one = archive_context(n_parents=1)
    assert {operators.choose({"crossover": 1.0, "diff": 1.0}, one, 0, i).operator for i in range(50)} == {"diff"}
    bare = ProposalContext(task=TASK)
    assert operators.choose({"diff": 1.0}, bare, 0, 0) == operators.Choice("full")
    # before any proposal is evaluated, the evaluated baselines are what an edit starts from
    baselines_only = ProposalContext(task=TASK, baselines=[member("dpo", 1, DPO, -0.767, Origin.LIBRARY)])
    assert operators.choose({"diff": 1.0}, baselines_only, 0, 0).parents[0].name == "dpo"


def test_an_unknown_operator_is_one_clear_error():
    with pytest.raises(ProposerError, match="unknown operator.*mutate.*available: diff, full, crossover"):
        operators.check_mix({"mutate": 1.0})
    with pytest.raises(ProposerError, match="at least one"):
        operators.check_mix({"diff": 0.0})


# ---------------------------------------------------------------- what the prompt shows


def test_the_prompt_shows_the_parents_measured_behaviour_and_dpos():
    with ScriptedOpenAIServer() as server:
        proposer = proposer_for(server)
        system = proposer.system_prompt(TASK)
        for choice in (operators.Choice("full"), operators.Choice("crossover", tuple(archive_context().parents))):
            prompt = proposer.propose_prompt(archive_context(), system, choice)
            parents_part = prompt[prompt.index("parent_0:"):]
            assert "parent_0: fitness -0.7800 ± 0.0100 (n=5)\n  KL to the reference 3.9, held-out accuracy 0.671\n" \
                in parents_part
            assert "by beta: beta 0.1: fitness -0.79, KL 3.5; beta 0.2: fitness -0.78, KL 3.9" in parents_part
            assert "at beta*margin = -2/0/2/5: loss 2.13/0.693/0.127/0.0067" in parents_part
            assert "d loss/d margin -0.088/-0.05/-0.012/0" in parents_part
            dpo_part = prompt[prompt.index("- dpo:"):]
            assert "by beta: beta 0.05: fitness -0.83, KL 5.1" in dpo_part  # DPO's numbers for reference
            assert prompt.count("def parent_0(") == 1  # a parent is shown once, not again among the best
        edit = proposer.propose_prompt(archive_context(), system, operators.Choice("diff",
                                                                                   (archive_context().parents[1],)))
        assert "<<<<<<< SEARCH" in edit and "def parent_1(" in edit and "def parent_0(" in edit
        assert edit.index("Improve this loss") < edit.index("def parent_1(")


def test_the_system_prompt_names_the_margin_and_warns_off_raw_log_prob_terms():
    with ScriptedOpenAIServer() as server:
        system = proposer_for(server).system_prompt(TASK)
    assert "through the margin" in system and "fluency" in system and "a KL of 0.25-0.50 where DPO reached 2.8" in system
    assert "def NAME(policy_chosen_logps, policy_rejected_logps" in system


def test_behaviour_lines_fit_in_the_budget_with_the_trimmer():
    entries = ctx.entries(archive_context())
    shown = ctx.fit(entries, lambda s: sum(len(str(v)) for v in s.values()) // 3, 200)
    assert shown["parents"][0]["behaviour"] and shown["parents"][0]["code"] is None  # code goes before behaviour


# ---------------------------------------------------------------- one proposal through the scripted server


def test_a_diff_proposal_repairs_an_edit_that_does_not_apply_then_records_its_operator():
    bad = "<<<<<<< SEARCH\n    loss = F.relu(logits)\n=======\n    loss = logits\n>>>>>>> REPLACE"
    with ScriptedOpenAIServer([Reply(bad), Reply(EDIT)]) as server:
        proposer = proposer_for(server, operators={"diff": 1.0},
                                temperatures={"diff": 0.7, "fix": 0.2})
        proposal = proposer.propose(archive_context(n_parents=1))
    first, second = server.chat_requests
    assert (first["temperature"], second["temperature"]) == (0.7, 0.2)
    fix = second["messages"][1]["content"]
    assert "could not be applied: SEARCH block 1 (starting `loss = F.relu(logits)`) does not occur" in fix
    assert "def parent_0(" in fix  # the code the edit is for, shown again
    assert [a.verdict for a in proposal.attempts] == ["unparseable", "valid"]
    c = proposal.candidate
    assert proposal.valid and c.name == "smooth_parent" and "F.relu(1 - logits)" in c.code
    assert c.diagnostics["operator"] == "diff" and c.parent_ids == (10,) and "shape" in c.diagnostics


def test_fix_ups_sample_cooler_than_the_proposal():
    broken = GOOD.replace("beta):", "beta, tau):")
    with ScriptedOpenAIServer([json_reply("t", "x", broken), json_reply("t", "x", GOOD)]) as server:
        proposer = proposer_for(server, operators={"full": 1.0}, temperature=0.9)
        proposal = proposer.propose(archive_context())
    assert [r["temperature"] for r in server.chat_requests] == [0.9, 0.4]  # the default fix temperature
    assert proposal.valid and proposal.candidate.diagnostics["operator"] == "full"
    assert proposal.candidate.parent_ids == (10, 11)


def test_selection_hands_the_prompt_each_parents_and_dpos_frontier(tmp_path):
    from discovery.archive import Archive
    from discovery.candidate import EvalResult
    from discovery.selection import TopKRecent

    with Archive.open(tmp_path) as archive:
        ids = {}
        for name, code, origin in (("dpo", DPO, Origin.LIBRARY), ("found", PARENT, Origin.LLM)):
            ids[name] = archive.add_candidate(Candidate(name=name, code=code, origin=origin))
            archive.transition(ids[name], Status.EVALUATED)
            for beta, base in ((0.05, -0.8), (0.1, -0.7)):
                for seed in range(2):
                    archive.add_evaluation(ids[name], EvalResult(seed=seed, fitness=base + seed / 100, beta=beta,
                                                                 metrics={"kl": 10 * beta + seed}))
        context = TopKRecent().select(archive, TASK, generation=1)
    assert [c.name for c in context.parents] == ["found"]
    for name in ("dpo", "found"):
        assert context.frontiers[ids[name]] == [pytest.approx((0.05, -0.795, 1.0)), pytest.approx((0.1, -0.695, 1.5))]
