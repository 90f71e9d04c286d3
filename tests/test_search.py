"""The search: several LLMs with a bandit, islands, and the constant tuner (the hybrid).

The LLM proposers talk real HTTP to scripted OpenAI-compatible servers on 127.0.0.1 and validate with the
real sandbox; the loop, archive (SQLite) and selection are real; only training is a table
(`loop_support.TableExecutor`), so no test trains anything.
"""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import pytest
from loop_support import TASK, ScriptedProposer, TableExecutor, loss_code
from proposer_support import best_validator
from scripted_openai_server import ScriptedOpenAIServer, json_reply

from discovery.archive import Archive
from discovery.candidate import Candidate, Origin, Status
from discovery.cli import main
from discovery.config import from_dict
from discovery.errors import ConfigError
from discovery.islands import Islands, island_of, migrates
from discovery.loop import DiscoveryLoop
from discovery.proposer import make_proposer
from discovery.proposer.bandit import UCB1, ArmStats, Outcome, Thompson, outcomes, tally
from discovery.proposer.base import ProposalContext
from discovery.proposer.ensemble import EnsembleProposer
from discovery.proposer.symbolic import SymbolicProposer
from discovery.proposer.tuning import TuningProposer, has_constants
from discovery.sandbox.validation import default_runner
from discovery.selection import make_selection
from discovery.stats import Fitness

PRICES = {"good": [1.0, 2.0], "bad": [10.0, 20.0]}  # usd per 1M prompt, completion tokens
EVAL = {"baselines": ["dpo"], "seeds": 2, "betas": [], "screen": False, "reeval_seeds": 0}


def config(proposals: int, budget: dict | None = None, **proposer):
    return from_dict({"eval": EVAL, "budget": {"proposals": proposals, "wall_time": None, **(budget or {})},
                      "proposer": {"backend": "openai", "timeout": 5.0, "max_retries": 0, "max_fix_attempts": 0,
                                   **proposer}})


def scaled_loss(name: str, k: float) -> str:
    """A valid loss of its own gradients per k: DPO's logistic loss with the logits scaled by k."""
    return (f"import torch.nn.functional as F\n\n\ndef {name}(policy_chosen_logps, policy_rejected_logps, "
            f"reference_chosen_logps, reference_rejected_logps, beta):\n"
            f"    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - "
            f"reference_rejected_logps)\n    return -F.logsigmoid(beta * logits * {k})\n")


class GoodModel:
    """Answers a new valid loss each time (good_1, good_2, ...) and remembers what it sent."""

    def __init__(self, scale: float = 1.0):
        self.sent: list[str] = []
        self.scale = scale

    def __call__(self, body):
        i = len(self.sent) + 1
        reply = json_reply("scale the logits", f"good_{i}", scaled_loss(f"good_{i}", self.scale + 0.25 * i))
        self.sent.append(reply.content)
        return reply


def fitness(name: str) -> float:
    """dpo 0.5; good_i 0.5 + 0.01 i, so every good proposal improves on the best before it."""
    found = re.fullmatch(r"good_(\d+)", name)
    return 0.5 + 0.01 * int(found.group(1)) if found else 0.5


class Table(dict):
    def __missing__(self, name):
        return fitness(name)


def run(tmp_path, cfg, proposer=None, selection=None):
    default_runner()  # started here: a sandbox server started by a proposal thread dies with that thread
    with Archive.open(tmp_path) as archive:
        archive.start_run(cfg.to_dict(), "synthetic", "k")
        proposer = proposer or make_proposer(cfg, best_validator())
        with proposer:
            DiscoveryLoop(cfg, archive, TASK, proposer, TableExecutor(Table(), workers=1),
                          selection or make_selection(cfg)).run()
        return proposer, archive.candidates(), archive.usage(), archive.usage_by_model()


# ---------------------------------------------------------------- the bandit


def test_ucb1_tries_every_model_then_prefers_the_one_whose_proposals_paid():
    ucb, rng = UCB1(epsilon=0.0), random.Random(0)
    assert ucb.choose({"a": ArmStats(1, 1, 1.0), "b": ArmStats()}, rng) == "b"  # untried first
    stats = tally(["a", "b"], [Outcome("a", True, 1.0)] * 4 + [Outcome("b", True, 0.0)] * 4, {})
    assert stats["a"] == ArmStats(4, 4, 4.0) and stats["b"] == ArmStats(4, 4, 0.0)
    assert ucb.choose(stats, rng) == "a"
    # proposals in flight count as tried: a model with many unsettled ones stops being favoured
    busy = tally(["a", "b"], [Outcome("a", True, 1.0), Outcome("b", True, 0.0)], {"a": 30})
    assert ucb.choose(busy, rng) == "b"


def test_a_proposal_pays_when_it_beats_its_parents_at_full_fidelity():
    def row(cid, mean, status=Status.EVALUATED, fidelity="full", parents=(), model="m", origin=Origin.LLM):
        c = Candidate(name=f"c{cid}", code="", id=cid, status=status, parent_ids=parents, model=model, origin=origin)
        return SimpleNamespace(candidate=c, mean=mean, fidelity=fidelity, is_baseline=origin == Origin.LIBRARY)

    rows = [row(1, 0.50, model="", origin=Origin.LIBRARY),  # dpo: the bar of a proposal without parents
            row(2, 0.55), row(3, 0.45),  # beat dpo / did not
            row(4, 0.60, parents=(2,)), row(5, 0.54, parents=(2,)),  # beat its parent / did not
            row(6, 0.90, fidelity="screen"), row(7, None, Status.INVALID), row(8, None, Status.TRAINING),
            row(9, 0.99, origin=Origin.SYMBOLIC, model="")]  # no model: not the bandit's
    got = outcomes(rows)
    assert [(o.settled, o.reward) for o in got] == [(True, 1.0), (True, 0.0), (True, 1.0), (True, 0.0),
                                                      (True, 0.0), (True, 0.0), (False, 0.0)]


def test_thompson_mostly_draws_the_model_that_paid():
    stats = {"a": ArmStats(10, 10, 8.0), "b": ArmStats(10, 10, 1.0)}
    rng = random.Random(1)
    picks = [Thompson().choose(stats, rng) for _ in range(200)]
    assert picks.count("a") > 180


def test_bandit_shifts_proposals_to_the_model_that_writes_valid_improving_losses(tmp_path, capsys):
    good = GoodModel()
    with ScriptedOpenAIServer(default=good, model="good") as g, \
            ScriptedOpenAIServer(default=json_reply("t", "broken", "def broken(x):\n    return x\n"),
                                 model="bad") as b:
        cfg = config(10, models=[{"model": "good", "base_url": g.base_url, "prices": PRICES["good"]},
                                 {"model": "bad", "base_url": b.base_url, "prices": PRICES["bad"]}])
        proposer, candidates, usage, per_model = run(tmp_path, cfg)
        n_good, n_bad = len(g.chat_requests), len(b.chat_requests)
    assert isinstance(proposer, EnsembleProposer)
    assert proposer.chosen.count("good") == n_good and proposer.chosen.count("bad") == n_bad
    assert n_good + n_bad == 10 and 1 <= n_bad <= 3 < 7 <= n_good  # both tried, then mostly the good one
    proposals = [c for c in candidates if c.origin == Origin.LLM]
    assert {c.model for c in proposals if c.status == Status.INVALID} == {"bad"}
    assert {c.model for c in proposals if c.status == Status.EVALUATED} == {"good"}
    # cost per model from each reply's tokens (100 prompt, len(content) // 4 completion) and its price
    want_good = sum(100 * 1.0 + len(text) // 4 * 2.0 for text in good.sent) / 1e6
    bad_reply = json_reply("t", "broken", "def broken(x):\n    return x\n").content
    want_bad = n_bad * (100 * 10.0 + len(bad_reply) // 4 * 20.0) / 1e6
    assert per_model["good"].calls == n_good and per_model["bad"].calls == n_bad
    assert per_model["good"].cost_usd == pytest.approx(want_good)
    assert per_model["bad"].cost_usd == pytest.approx(want_bad)
    assert usage.cost_usd == pytest.approx(want_good + want_bad)
    capsys.readouterr()
    assert main(["archive", "list", str(tmp_path)]) == 0
    title = " ".join(capsys.readouterr().out.split())
    assert "per model: " in title
    assert f"good {n_good} calls, {per_model['good'].tokens} tokens, ${want_good:.4f}" in title
    assert f"bad {n_bad} calls, {per_model['bad'].tokens} tokens, ${want_bad:.4f}" in title


def test_the_cost_cap_counts_every_model_together(tmp_path):
    price = [1000.0, 0.0]  # 100 prompt tokens = $0.1 per call, whichever model answers
    with ScriptedOpenAIServer(default=GoodModel(), model="good") as g, \
            ScriptedOpenAIServer(default=GoodModel(scale=10.0), model="other") as o:
        cfg = config(10, {"max_cost_usd": 0.25}, models=[{"model": "good", "base_url": g.base_url, "prices": price},
                                                         {"model": "other", "base_url": o.base_url, "prices": price}])
        _, _, usage, per_model = run(tmp_path, cfg)
    assert usage.calls == 3 and usage.cost_usd == pytest.approx(0.3)  # the call that crossed $0.25 ends it
    assert sum(u.calls for u in per_model.values()) == 3 and set(per_model) == {"good", "other"}


def test_the_start_up_check_asks_each_model_and_loads_no_unused_local_model():
    from discovery.commands.run import check_proposer

    with ScriptedOpenAIServer(model="good") as g, ScriptedOpenAIServer(model="other") as o:
        cfg = from_dict({"proposer": {"models": [{"model": "good", "base_url": g.base_url},  # backend: llamacpp
                                                 {"model": "other", "base_url": o.base_url}]}})
        check_proposer(cfg)  # the default llamacpp model is not looked for: no model of the list is local
        assert len(g.probes) == 1 and len(o.probes) == 1 and not g.chat_requests


def test_models_are_checked_when_the_config_is_built():
    with pytest.raises(ConfigError, match=r"proposer.models\[1\].model"):
        config(1, models=[{"model": "a"}, {"model": "a"}])
    with pytest.raises(ConfigError, match=r"prices must be \[prompt, completion\]"):
        config(1, models=[{"model": "a", "prices": [1.0]}])
    with pytest.raises(ConfigError, match="needs an LLM backend"):
        from_dict({"proposer": {"backend": "symbolic", "models": [{"model": "a"}]}})
    with pytest.raises(ConfigError, match="did you mean 'thompson'"):
        config(1, bandit="thomson")


# ---------------------------------------------------------------- islands


def test_island_and_migration_rounds():
    assert [island_of(g, 3) for g in range(1, 8)] == [0, 1, 2, 0, 1, 2, 0]
    assert [migrates(g, 2, 2) for g in range(1, 9)] == [False, False, False, False, True, True, False, False]
    assert not any(migrates(g, 2, 0) for g in range(1, 20))


def test_each_island_sees_only_its_own_proposals_and_the_migrant(tmp_path):
    names = [f"p{i}" for i in range(1, 9)]  # odd generations: island 0, even: island 1 (much better)
    table = {"dpo": 0.5, **{n: (0.9 if i % 2 == 0 else 0.6) + 0.001 * i for i, n in enumerate(names, 1)}}
    cfg = from_dict({"eval": EVAL, "budget": {"proposals": 8, "wall_time": None},
                     "proposer": {"backend": "symbolic", "selection": "islands", "islands": 2, "migrate_every": 2}})
    strategy = make_selection(cfg)
    assert isinstance(strategy, Islands)
    with Archive.open(tmp_path) as archive:
        archive.start_run(cfg.to_dict(), "synthetic", "k")
        proposer = ScriptedProposer(names)
        DiscoveryLoop(cfg, archive, TASK, proposer, TableExecutor(table, workers=1), strategy).run()
        island = {c.name: island_of(c.generation, 2) for c in archive.candidates() if not c.is_baseline}
        assert island == {n: (i - 1) % 2 for i, n in enumerate(names, 1)}
        for context in proposer.contexts:  # during the run: never another island's proposal outside migration
            home = island_of(context.generation, 2)
            others = {c.name for c in context.known() if not c.is_baseline and island[c.name] != home}
            assert not others or migrates(context.generation, 2, 2), (context.generation, others)
        calm, migration = strategy.select(archive, TASK, 11), strategy.select(archive, TASK, 9)  # both island 0
    assert {c.name for c in calm.top} == {"p1", "p3", "p5", "p7"}
    assert {c.name for c in calm.parents} <= {"p1", "p3", "p5", "p7"}
    assert migration.top[0].name == "p8" and migration.parents[0].name == "p8"  # the run's best migrated
    assert {c.name for c in migration.top} == {"p1", "p3", "p5", "p7", "p8"}


# ---------------------------------------------------------------- the hybrid: constants tuned


def evaluated(cid: int, code: str, origin=Origin.LLM) -> Candidate:
    return Candidate(name=f"c{cid}", code=code, id=cid, origin=origin, status=Status.EVALUATED, model="m",
                     fitness=Fitness(0.6, 0.55, 0.65, 2, (0.55, 0.65)))


def test_the_tuner_proposes_constant_variants_of_each_evaluated_llm_proposal_before_asking_again():
    inner = ScriptedProposer(["fresh1", "fresh2"])
    tuner = TuningProposer(inner, SymbolicProposer(best_validator(), seed=3), variants=2)
    llm = evaluated(7, scaled_loss("c7", 1.5))
    no_constants = evaluated(8, loss_code("c8"))
    symbolic = evaluated(9, scaled_loss("c9", 3.0), origin=Origin.SYMBOLIC)
    context = ProposalContext(task=TASK, top=[symbolic, no_constants, llm], generation=5)
    assert not has_constants(no_constants.code) and has_constants(llm.code)
    first, second, third = (tuner.propose(context) for _ in range(3))
    for p in (first, second):
        c = p.candidate
        assert c.status == Status.PROPOSED and c.origin == Origin.SYMBOLIC and c.proposer == "tune"
        assert c.parent_ids == (7,) and not p.calls and c.code != llm.code
        scale = re.search(r"-F\.logsigmoid\(beta \* a_logits \* ([0-9.e-]+)\)", c.code)
        assert scale and float(scale.group(1)) != 1.5  # the structure is kept, only the number moves
    assert third.candidate.name == "fresh1" and inner.proposed == ["fresh1"]  # tuned twice: the LLM again
    tuner.resume([Candidate(name="t", code="", proposer="tune", parent_ids=(7,))])
    assert tuner.tuned[7] == 3


def test_tune_constants_in_a_run_tunes_llm_proposals_without_llm_calls(tmp_path):
    good = GoodModel()
    with ScriptedOpenAIServer(default=good, model="good") as g:
        cfg = config(5, base_url=g.base_url, model="good", tune_constants=2, prices={"good": PRICES["good"]})
        proposer, candidates, usage, _ = run(tmp_path, cfg)
        asked = len(g.chat_requests)
    assert isinstance(proposer, TuningProposer)
    by_id = {c.id: c for c in candidates}
    tuned = [c for c in candidates if c.proposer == "tune"]
    assert tuned and all(by_id[c.parent_ids[0]].origin == Origin.LLM for c in tuned)
    assert all(c.origin == Origin.SYMBOLIC and not c.model for c in tuned)
    assert asked == usage.calls == 5 - len(tuned)  # a variant costs no LLM call
