"""Proposer parts that need no server: extraction, ranked and trimmed context, replay, symbolic, config errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
from proposer_support import best_validator, local_validate

from discovery import library
from discovery.candidate import Candidate, Fitness, Origin, Status
from discovery.config import ProposerConfig, RunConfig
from discovery.inner_loop.task import TaskInfo
from discovery.proposer import ProposalContext, ProposerError, make_proposer
from discovery.proposer.client import estimate_tokens
from discovery.proposer.extract import extract
from discovery.proposer.llm import LLMProposer

TASK = TaskInfo("synthetic", "a toy preference task", "held-out preference accuracy", 0.1, "cheap")
DPO = library.get("dpo").code
VALIDATE = best_validator()


# ---------------------------------------------------------------- extraction


def test_extract_plain_json():
    found = extract(json.dumps({"thought": "why", "name": "My Loss", "code": DPO}))
    assert found.ok and found.thought == "why" and found.name == "my_loss" and found.code.strip() == DPO.strip()


def test_extract_json_in_a_fence_with_prose_around():
    text = "Sure!\n```json\n" + json.dumps({"thought": "t", "name": "n", "code": DPO}) + "\n```\nHope it helps."
    assert extract(text).code.strip() == DPO.strip()


def test_extract_json_with_raw_newlines_in_the_code_string():
    text = '{"thought": "t", "name": "raw", "code": "' + DPO.replace('"', '\\"') + '"}'
    found = extract(text)
    assert found.ok and "def dpo(" in found.code


def test_extract_code_field_with_its_own_fence():
    found = extract(json.dumps({"thought": "t", "name": "n", "code": f"```python\n{DPO}```"}))
    assert found.code.startswith("import torch.nn.functional as F")


def test_extract_last_function_from_prose_without_fences():
    text = f"First idea:\ndef a(x):\n    return x\n\nBetter:\n{DPO}\nThis should work because..."
    found = extract(text)
    assert "def dpo(" in found.code and "def a(" not in found.code
    assert found.code.startswith("import torch.nn.functional as F")
    assert found.name == "dpo"


@pytest.mark.parametrize("text, reason", [("", "empty"), ("   \n", "empty"), ("no code here", "no JSON"),
                                          ('{"thought": "x"}', '"code"'), ('{"code": "x = 1"}', "no function")])
def test_extract_reasons(text, reason):
    found = extract(text)
    assert not found.ok and reason in found.reason


# ---------------------------------------------------------------- context


def scored(name: str, fitness: float, ident: int, origin=Origin.LLM, status=Status.EVALUATED, reason=""):
    return Candidate(name=name, code=DPO.replace("def dpo(", f"def {name}("), origin=origin, id=ident,
                     status=status, reason=reason,
                     fitness=Fitness(fitness, fitness - 0.01, fitness + 0.01, 3) if status == Status.EVALUATED else None,
                     metrics={"kl": 0.5, "eval_accuracy": 0.7, "irrelevant": "text"})


def archive(n: int = 30) -> list[Candidate]:
    items = [scored(f"loss_{i}", 0.5 + (i % 7) / 100, i) for i in range(n)]
    items += [scored(f"broken_{i}", 0, 100 + i, status=Status.INVALID, reason=f"line 3: bad thing {i}")
              for i in range(5)]
    items += [scored(loss.name, 0.55, 200 + i, origin=Origin.LIBRARY) for i, loss in enumerate(library.LOSSES)]
    return items


def context_of(items: list[Candidate]) -> ProposalContext:
    """A context as `selection.TopKRecent` builds it (tested in test_ranking.py): here only the prompt matters."""
    config = RunConfig().proposer
    found = sorted((c for c in items if c.fitness and not c.is_baseline), key=lambda c: c.fitness.mean, reverse=True)
    top = found[: config.top_k]
    recent = [c for c in reversed(items) if c.status == Status.EVALUATED and not c.is_baseline
              and c not in top][: config.recent]
    failures = [c for c in reversed(items) if c.status == Status.INVALID][: config.failures]
    return ProposalContext(task=TASK, top=top, recent=recent, failures=failures,
                           baselines=[c for c in items if c.is_baseline])


def prompt_for(window: int, max_tokens: int = 512) -> tuple[str, str]:
    config = RunConfig(proposer=ProposerConfig(context_window=window, max_tokens=max_tokens))
    proposer = LLMProposer(None, local_validate, config.proposer, None, None)
    context = context_of(archive())
    system = proposer.system_prompt(TASK)
    return system, proposer.propose_prompt(context, system)


def test_the_system_prompt_names_the_beta_grid_a_loss_is_scored_on():
    proposer = LLMProposer(None, local_validate, RunConfig().proposer, None, None)
    on_grid = proposer.system_prompt(dataclasses.replace(TASK, betas=(0.05, 0.1, 0.2)))
    assert "beta = 0.05, 0.1, 0.2 and is scored at its best one" in on_grid and "trains with beta = 0.1" not in on_grid
    assert "trains with beta = 0.1." in proposer.system_prompt(dataclasses.replace(TASK, betas=()))


def test_prompt_shows_code_metrics_and_failure_reasons_when_there_is_room():
    system, prompt = prompt_for(32_000)
    assert "beta = 0.1" in system and "policy_chosen_logps" in system and "held-out preference accuracy" in system
    assert prompt.count("```python") >= 5 + 3  # top-k and recent with code, best baselines with code
    assert "fitness 0.5600 ± 0.0100 (n=3)" in prompt and "kl 0.5" in prompt and "eval_accuracy 0.7" in prompt
    assert "rejected: line 3: bad thing 4" in prompt
    assert "irrelevant" not in prompt


@pytest.mark.parametrize("window", [3000, 2048, 1600])
def test_prompt_is_trimmed_to_leave_room_for_the_answer(window):
    system, prompt = prompt_for(window, max_tokens=512)
    full = prompt_for(32_000)[1]
    assert estimate_tokens(system) + estimate_tokens(prompt) + 512 <= window
    assert len(prompt) < len(full)
    best = context_of(archive()).top[0].name
    assert best in prompt  # the best loss found so far always survives the trimming


# ---------------------------------------------------------------- replay and symbolic


def test_replay_proposes_files_in_order_then_stops(tmp_path):
    (tmp_path / "b_second.py").write_text(library.get("ipo").code)
    (tmp_path / "a_first.py").write_text(DPO)
    (tmp_path / "c_broken.py").write_text("def broken(x):\n    return x\n")
    (tmp_path / "notes.txt").write_text("ignored")
    config = RunConfig(proposer=ProposerConfig(backend="replay", replay_dir=str(tmp_path)))
    proposer = make_proposer(config, local_validate)
    context = ProposalContext(task=TASK)
    out = [proposer.propose(context) for _ in range(3)]
    assert [p.candidate.name for p in out] == ["a_first", "b_second", "c_broken"]
    assert [p.candidate.status for p in out] == [Status.PROPOSED, Status.PROPOSED, Status.INVALID]
    assert all(p.candidate.origin == Origin.REPLAY for p in out)
    assert "signature must be exactly" in out[2].candidate.reason
    assert "3 files" in proposer.stop_reason()
    with pytest.raises(ProposerError):
        proposer.propose(context)


def test_replay_without_a_directory_is_one_clear_error(tmp_path):
    config = RunConfig(proposer=ProposerConfig(backend="replay", replay_dir=str(tmp_path / "missing")))
    with pytest.raises(ProposerError, match="not a directory"):
        make_proposer(config, local_validate)


def test_symbolic_proposals_are_runnable_contract_code_and_new():
    config = RunConfig(proposer=ProposerConfig(backend="symbolic"))
    proposer = make_proposer(config, VALIDATE)
    baselines = [Candidate(name=loss.name, code=loss.code, origin=Origin.LIBRARY) for loss in library.LOSSES]
    context = ProposalContext(task=TASK, baselines=baselines)
    proposals = [proposer.propose(context) for _ in range(4)]
    assert sum(p.valid for p in proposals) >= 3
    library_prints = {VALIDATE(loss.code).fingerprint for loss in library.LOSSES}
    for p in proposals:
        assert p.candidate.origin == Origin.SYMBOLIC and p.candidate.thought.startswith("symbolic: ")
        if p.valid:
            assert p.candidate.fingerprint not in library_prints
    assert len({p.candidate.code for p in proposals}) == 4


def test_symbolic_is_deterministic_per_seed_and_needs_no_archive():
    def names(seed):
        config = RunConfig(proposer=ProposerConfig(backend="symbolic", seed=seed))
        proposer = make_proposer(config, local_validate)
        return [proposer.propose(ProposalContext(task=TASK)).candidate.code for _ in range(3)]

    assert names(1) == names(1) != names(2)


def test_symbolic_crosses_archive_members():
    config = RunConfig(proposer=ProposerConfig(backend="symbolic"))
    proposer = make_proposer(config, local_validate)
    parents = [scored("alpha", 0.6, 1), scored("beta_loss", 0.6, 2)]
    thoughts = [proposer.propose(ProposalContext(task=TASK, parents=parents)).candidate for _ in range(12)]
    assert any("crossover of" in c.thought for c in thoughts)
    assert all(c.parent_ids == (1, 2) for c in thoughts)


# ---------------------------------------------------------------- configuration errors


def test_unknown_backend_is_one_clear_error():
    config = RunConfig(proposer=ProposerConfig(backend="gpt5"))  # past the config's own check
    with pytest.raises(ProposerError, match="unknown proposer.backend 'gpt5'; available: llamacpp"):
        make_proposer(config, local_validate)


@pytest.mark.parametrize("model", ["/nowhere/model.gguf", "some-org/missing-GGUF:model.gguf"])
def test_unreachable_local_model_says_how_to_point_at_a_file_or_endpoint(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = RunConfig(proposer=ProposerConfig(model=model))
    with pytest.raises(ProposerError) as info:
        make_proposer(config, local_validate)
    message = str(info.value)
    assert "\n" not in message
    assert "proposer.model=/path/to/model.gguf" in message and "proposer.base_url=" in message


def test_normalize_adds_allowed_imports_and_drops_junk_and_example_usage():
    from discovery.proposer.extract import normalize

    body = DPO.replace("import torch.nn.functional as F\n", "import numpy as np\n").replace(
        "return -F.logsigmoid(beta * margin)", "return torch.relu(-F.logsigmoid(beta * margin))")
    code, notes = normalize(body + "\nx = torch.zeros(2)\nprint(dpo(x, x, x, x, 0.1))\n")
    assert code.startswith("import torch\nimport torch.nn.functional as F\n")
    assert "numpy" not in code and "print" not in code and "def dpo(" in code
    assert VALIDATE(code).valid and len(notes) == 4
    assert normalize(DPO) == (DPO, [])
