"""Task imdb on tiny stand-ins: a beta sweep, reward from a (random, local) sentiment classifier, KL to the
reference, the frontier and the reward at the KL budget."""

from __future__ import annotations

import pytest
from fixtures_hf import build_model, build_preferences

from discovery import library
from discovery.config import from_dict
from discovery.inner_loop.imdb import reward_at_kl
from discovery.inner_loop.task import get_task


def build_classifier(folder, tokenizer_dir):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=2, pad_token_id=tok.pad_token_id,
                         id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_reward_at_kl_interpolates_the_upper_frontier():
    points = [(0.0, 0.5), (1.0, 0.7), (2.0, 0.6), (3.0, 0.9)]
    assert reward_at_kl(points, 0.5) == pytest.approx(0.6)
    assert reward_at_kl(points, 2.0) == pytest.approx(0.8)  # (2.0, 0.6) is dominated
    assert reward_at_kl(points, 10.0) == 0.9 and reward_at_kl([(0.4, 0.3)], 0.1) == 0.3


def test_beta_sweep_frontier_and_fitness(tmp_path):
    model = build_model(tmp_path / "policy")
    config = from_dict({
        "task": {"name": "imdb", "model": str(model), "dataset": str(build_preferences(tmp_path / "pairs")),
                 "eval_split": "test", "cache_dir": str(tmp_path / "cache"),
                 "options": {"reward_model": str(build_classifier(tmp_path / "clf", model)), "kl_budget": 0.05,
                             "prompts": 4, "max_new_tokens": 6}},
        "train": {"learning_rate": 1e-2, "max_steps": 2, "per_device_train_batch_size": 4, "max_length": 48},
        "eval": {"betas": [0.1, 0.5]},
    })
    task = get_task(config)
    task.prepare()
    result = task.evaluate(library.get("dpo").code, seed=0)
    assert result.ok and result.steps == 4
    frontier = result.metrics["frontier"]
    assert len(frontier) == 3 and frontier[0]["kl"] == 0.0  # the reference, then one point per beta
    assert all(0.0 <= p["reward"] <= 1.0 for p in frontier)
    points = [(p["kl"], p["reward"]) for p in frontier]
    assert result.fitness == pytest.approx(reward_at_kl(points, 0.05))
    assert {"beta0.1/kl", "beta0.5/reward"} <= set(result.metrics)
