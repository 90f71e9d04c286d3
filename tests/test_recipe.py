"""The paper's training recipe: bf16 mixed precision with fp32 master weights, warmup as a ratio, every
`train.*` setting reaching TRL's configs, the paper's truncation, one revision and one device everywhere."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from fixtures_hf import build_model, build_preferences

from discovery import library
from discovery.config import TrainConfig, from_dict, with_values
from discovery.errors import DiscoveryError
from discovery.inner_loop import hf_data, recipe
from discovery.inner_loop.task import Fidelity, get_task


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    return {"model": str(build_model(root / "model")), "pairs": str(build_preferences(root / "pairs"))}


def make_config(s, tmp_path, **train):
    return from_dict({
        "task": {"name": "hf_dpo", "model": s["model"], "dataset": s["pairs"], "eval_split": "test",
                 "cache_dir": str(tmp_path / "cache"), "options": {"scorer": "heldout"}},
        "train": {"beta": 0.1, "learning_rate": 5e-7, "max_steps": 4, "per_device_train_batch_size": 4,
                  "max_length": 48, **train},
    })


def fraction_changed(task, tmp_path) -> tuple[float, torch.dtype]:
    """Train plain DPO for max_steps; the fraction of parameters that differ from their loaded values."""
    from transformers import AutoModelForCausalLM

    trainer, _, outcome = task.train(library.get("dpo").code, 0, Fidelity(), str(tmp_path / "out"))
    assert outcome.ok, outcome.reason
    dtype = next(trainer.model.parameters()).dtype
    start = dict(AutoModelForCausalLM.from_pretrained(task.config.task.model, dtype=dtype).named_parameters())
    changed = total = 0
    for name, p in trainer.model.named_parameters():
        changed += (p.detach() != start[name].detach()).sum().item()
        total += p.numel()
    print(f"{dtype} weights: {changed:,} of {total:,} parameters changed")  # shown with pytest -s
    return changed / total, dtype


# ---------------------------------------------------------------- precision


def test_bf16_training_at_lr_5e7_moves_nearly_every_weight(stand_ins, tmp_path, monkeypatch):
    task = get_task(make_config(stand_ins, tmp_path, bf16=True))
    task.prepare()
    frac, dtype = fraction_changed(task, tmp_path)
    assert dtype == torch.float32  # master weights
    assert task.dpo_args(0, Fidelity(), str(tmp_path / "a")).bf16  # bf16 autocast (CPU here, CUDA on a GPU)
    assert frac > 0.9, f"only {frac:.1%} of the parameters moved"
    # the old recipe (bf16 weights updated by AdamW directly) fails the same check: the updates round away
    monkeypatch.setattr(recipe, "weights_dtype", lambda train, for_training=True: torch.bfloat16)
    task.prepare()  # (its own cache: the reference is computed in the weights' dtype)
    old, dtype = fraction_changed(task, tmp_path)
    assert dtype == torch.bfloat16 and old < 0.1, f"{old:.1%}"


def test_lora_trains_float32_adapters_on_a_bf16_base(stand_ins, tmp_path):
    task = get_task(make_config(stand_ins, tmp_path, bf16=True, peft=True, lora_r=4, lora_alpha=8))
    task.prepare()
    trainer, _, outcome = task.train(library.get("dpo").code, 0, Fidelity(), str(tmp_path / "out"))
    assert outcome.ok
    dtypes = {p.dtype for p in trainer.model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in trainer.model.parameters() if not p.requires_grad}
    assert dtypes == {torch.float32} and frozen == {torch.bfloat16}


def test_reference_logps_match_the_untrained_policy_under_bf16(stand_ins, tmp_path):
    """Reference log-probs are computed under the same autocast as training: at lr 0 the margin stays 0."""
    task = get_task(make_config(stand_ins, tmp_path, bf16=True, learning_rate=0.0, max_steps=1))
    task.prepare()
    _, _, outcome = task.train(library.get("dpo").code, 0, Fidelity(), str(tmp_path / "out"))
    assert outcome.history[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert outcome.history[0]["loss"] == pytest.approx(0.693147, abs=1e-5)


# ---------------------------------------------------------------- warmup and checkpointing across versions


def test_warmup_ratio_is_a_ratio_on_transformers_4_and_5():
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to=[], **recipe.warmup_kwargs(0.1))
    assert args.get_warmup_steps(200) == 20  # the installed version
    assert recipe.warmup_kwargs(0.1, fields={"warmup_ratio": None, "warmup_steps": None}) == {"warmup_ratio": 0.1}
    assert recipe.warmup_kwargs(0.1, fields={"warmup_steps": None}) == {"warmup_steps": 0.1}  # 5.x: float < 1
    with pytest.raises(DiscoveryError, match="warmup_ratio must be in"):
        recipe.warmup_kwargs(1.0)


def test_checkpointing_off_stays_off():
    """TRL's configs default activation checkpointing to on; `train.gradient_checkpointing: false` wins."""
    from trl import DPOConfig

    for enabled in (False, True):
        args = DPOConfig(output_dir="/tmp/unused", use_cpu=True, report_to=[], **recipe.checkpointing_kwargs(enabled))
        assert args.gradient_checkpointing is enabled
    assert recipe.checkpointing_kwargs(True, fields={"gradient_checkpointing": None}) == {"gradient_checkpointing": True}


# ---------------------------------------------------------------- every train.* setting


NON_DEFAULT = {
    "beta": 0.07, "learning_rate": 3e-6, "max_steps": 9, "num_train_epochs": 3.0, "per_device_train_batch_size": 3,
    "gradient_accumulation_steps": 5, "max_length": 40, "max_prompt_length": 24, "truncation_mode": "keep_start",
    "lr_scheduler_type": "cosine", "warmup_ratio": 0.2, "weight_decay": 0.01, "bf16": True,
    "gradient_checkpointing": True, "peft": True, "lora_r": 6, "lora_alpha": 12, "lora_dropout": 0.1, "threads": 2,
}


def checks(train: TrainConfig):
    """Where each train.* field must show up: (DPOConfig, SFTConfig) attributes, or another consumer."""
    from discovery.inner_loop.evaluate import make_runner  # noqa: F401  (threads: the worker's torch threads)

    return {
        "beta": lambda dpo, sft, lora: dpo.beta == train.beta,
        "learning_rate": lambda dpo, sft, lora: dpo.learning_rate == train.learning_rate,
        "max_steps": lambda dpo, sft, lora: dpo.max_steps == train.max_steps,
        "num_train_epochs": lambda dpo, sft, lora: dpo.num_train_epochs == train.num_train_epochs,
        "per_device_train_batch_size": lambda dpo, sft, lora: (
            dpo.per_device_train_batch_size == sft.per_device_train_batch_size == train.per_device_train_batch_size),
        "gradient_accumulation_steps": lambda dpo, sft, lora: (
            dpo.gradient_accumulation_steps == sft.gradient_accumulation_steps == train.gradient_accumulation_steps),
        "max_length": lambda dpo, sft, lora: dpo.max_length == sft.max_length == train.max_length,
        "max_prompt_length": lambda dpo, sft, lora: recipe.max_prompt_length(train) == train.max_prompt_length,
        "truncation_mode": None,  # test_long_prompts_are_truncated_not_dropped
        "lr_scheduler_type": lambda dpo, sft, lora: (
            str(dpo.lr_scheduler_type.value) == str(sft.lr_scheduler_type.value) == train.lr_scheduler_type),
        "warmup_ratio": lambda dpo, sft, lora: (
            dpo.get_warmup_steps(100) == sft.get_warmup_steps(100) == round(100 * train.warmup_ratio)),
        "weight_decay": lambda dpo, sft, lora: dpo.weight_decay == sft.weight_decay == train.weight_decay,
        "bf16": lambda dpo, sft, lora: dpo.bf16 is sft.bf16 is train.bf16,
        "gradient_checkpointing": lambda dpo, sft, lora: (
            dpo.gradient_checkpointing is sft.gradient_checkpointing is train.gradient_checkpointing),
        "peft": None,  # test_lora_trains_float32_adapters_on_a_bf16_base
        "lora_r": lambda dpo, sft, lora: lora.r == train.lora_r,
        "lora_alpha": lambda dpo, sft, lora: lora.lora_alpha == train.lora_alpha,
        "lora_dropout": lambda dpo, sft, lora: lora.lora_dropout == train.lora_dropout,
        "threads": None,  # evaluate.make_runner: the isolated worker's torch threads
    }


@pytest.mark.parametrize("values", [NON_DEFAULT, {**NON_DEFAULT, "bf16": False, "gradient_checkpointing": False,
                                                  "warmup_ratio": 0.0, "lr_scheduler_type": "linear"}])
def test_every_train_setting_reaches_trl(stand_ins, tmp_path, values):
    from discovery.inner_loop.sft import lora_config, sft_args

    assert set(values) == {f.name for f in dataclasses.fields(TrainConfig)}, "a new train.* field needs a check"
    config = make_config(stand_ins, tmp_path, **values)
    task = get_task(config)
    dpo = task.dpo_args(0, Fidelity(), str(tmp_path / "dpo"))
    sft = sft_args(config, 0, str(tmp_path / "sft"))
    lora = lora_config(config)
    for name, check in checks(config.train).items():
        assert check is None or check(dpo, sft, lora), f"train.{name}={getattr(config.train, name)!r} not passed on"


# ---------------------------------------------------------------- truncation


def test_long_prompts_are_truncated_not_dropped(stand_ins):
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(stand_ins["model"])
    long_prompt = " ".join(["the cat sat on the mat"] * 20)
    rows = datasets.Dataset.from_list([{"prompt": long_prompt, "chosen": " good answer " * 10, "rejected": " no"},
                                       {"prompt": "short", "chosen": " yes", "rejected": " no"}])
    full = hf_data.tokenize_pairs(rows, tok, None)
    assert len(full[0]["prompt_ids"]) > 40
    for mode, part in (("keep_end", slice(-16, None)), ("keep_start", slice(None, 16))):
        cut = hf_data.tokenize_pairs(rows, tok, 40, max_prompt_length=16, truncation_mode=mode)
        assert len(cut) == 2  # nothing dropped
        assert cut[0]["prompt_ids"] == full[0]["prompt_ids"][part]
        assert cut[0]["chosen_ids"] == full[0]["chosen_ids"][:24] and cut[0]["rejected_ids"] == full[0]["rejected_ids"]
        assert cut[1] == full[1]  # a pair that fits is untouched
    with pytest.raises(DiscoveryError, match="truncation_mode"):
        recipe.truncate_pair([1] * 50, [2], [3], 40, 16, "keep_middle")


def test_paper_config_truncates_like_the_paper(stand_ins, tmp_path):
    from discovery.config import load_config

    paper = load_config(__import__("pathlib").Path(__file__).resolve().parents[1] / "configs" /
                        "discopop_zephyr_gemma.yaml")
    assert (paper.train.max_length, recipe.max_prompt_length(paper.train), paper.train.truncation_mode) == \
        (1024, 512, "keep_end")


# ---------------------------------------------------------------- one revision, one device


def test_the_prepared_revision_is_used_for_training(stand_ins, tmp_path, monkeypatch):
    config = with_values(make_config(stand_ins, tmp_path), {"task.revision": "main"})
    task = get_task(config)
    calls = []
    real = hf_data.load_policy
    monkeypatch.setattr(hf_data, "load_policy", lambda name, revision=None, *a, **k: (
        calls.append((name, revision)), real(name, revision, *a, **k))[1])
    task.prepare()
    assert task._meta()["revision"] == "main"
    task.train(library.get("dpo").code, 0, Fidelity(), str(tmp_path / "out"))
    assert calls == [(stand_ins["model"], "main")] * 2  # prepare (reference) and training (policy)


def test_imdb_reference_and_policy_share_one_device_choice(stand_ins, tmp_path, monkeypatch):
    from discovery.inner_loop.imdb import ImdbTask

    config = with_values(make_config(stand_ins, tmp_path), {"task.name": "imdb"})
    task = ImdbTask(config)
    super(ImdbTask, task).prepare()  # the hf_dpo part; the reward model is not needed here
    chosen = []
    monkeypatch.setattr(recipe, "device", lambda: chosen.append(1) or torch.device("cpu"))
    reference, _ = task._reference(task._meta())
    assert chosen and next(reference.parameters()).device == torch.device("cpu")
    assert next(reference.parameters()).dtype == recipe.weights_dtype(config.train)  # as the policy trains
