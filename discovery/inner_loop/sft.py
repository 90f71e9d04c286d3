"""The SFT stage: TRL's SFTTrainer on an instruction dataset, full or LoRA, before preference tuning.

`sft_train` works on an in-memory model (the synthetic task can call it); `ensure_sft_model` runs it for
an HF task once, caches the merged result on disk and returns its folder, used as policy and reference.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from discovery.config import RunConfig

SFT_METRICS = ("loss", "mean_token_accuracy", "eval_loss", "eval_mean_token_accuracy")


@dataclass
class SFTResult:
    path: str | None
    metrics: dict[str, float] = field(default_factory=dict)  # last logged value of each SFT_METRICS
    steps: int = 0


def lora_config(config: RunConfig):
    from peft import LoraConfig

    t = config.train
    return LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _last(history: list[dict], key: str) -> float | None:
    values = [h[key] for h in history if key in h]
    return float(values[-1]) if values else None


def sft_args(config: RunConfig, seed: int = 0, output_dir: str | None = None, evaluate: bool = False):
    """SFTConfig from `train.*` (the shared recipe) and the `task.sft_*` settings."""
    from trl import SFTConfig

    from discovery.inner_loop.recipe import training_kwargs

    task = config.task
    return SFTConfig(
        output_dir=output_dir or tempfile.mkdtemp(prefix="sft-"),
        **{**training_kwargs(config.train, seed), "learning_rate": task.sft_learning_rate},
        max_steps=task.sft_max_steps, num_train_epochs=task.sft_num_train_epochs,
        logging_steps=1, save_strategy="no", report_to=[], eval_strategy="steps" if evaluate else "no",
        eval_steps=max(1, task.sft_max_steps // 2) if task.sft_max_steps > 0 else None,
    )


def sft_train(model, tokenizer, train_dataset, config: RunConfig, eval_dataset=None, output_dir: str | None = None,
              seed: int = 0):
    """Supervised fine-tuning with TRL's SFTTrainer; returns (model with LoRA merged, SFTResult metrics)."""
    from trl import SFTTrainer

    t = config.train
    args = sft_args(config, seed, output_dir, eval_dataset is not None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=tokenizer, peft_config=lora_config(config) if t.peft else None)
    trainer.train()
    if eval_dataset is not None:
        trainer.evaluate()
    history = trainer.state.log_history
    metrics = {k: v for k in SFT_METRICS if (v := _last(history, k)) is not None}
    trained = trainer.model
    if t.peft:
        trained = trained.merge_and_unload()
    return trained, SFTResult(None, metrics, trainer.state.global_step)


def sft_key(config: RunConfig) -> str:
    t, task = config.train, config.task
    parts = [task.model, task.revision, task.sft_dataset, task.sft_split, task.sft_eval_split, task.max_samples,
             task.sft_learning_rate, task.sft_max_steps, task.sft_num_train_epochs, t.max_length, t.peft,
             t.lora_r, t.lora_alpha, config.seed, t.lora_dropout, t.per_device_train_batch_size,
             t.gradient_accumulation_steps, t.lr_scheduler_type, t.warmup_ratio, t.weight_decay, t.bf16,
             "recipe-v2"]
    return "sft-" + hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def ensure_sft_model(config: RunConfig, cache_root: Path) -> SFTResult:
    """The SFT model folder for this config: trained once, then read from the cache."""
    from discovery.inner_loop.hf_data import load_policy, load_split
    from discovery.inner_loop.recipe import weights_dtype

    folder = cache_root / sft_key(config)
    meta = folder / "sft.json"
    if meta.is_file():
        return SFTResult(str(folder), **json.loads(meta.read_text()))
    task = config.task
    model, tokenizer = load_policy(task.model, task.revision, weights_dtype(config.train))
    train = load_split(task.sft_dataset, task.sft_split, task.max_samples)
    held = load_split(task.sft_dataset, task.sft_eval_split, task.max_samples) if task.sft_eval_split else None
    trained, result = sft_train(model, tokenizer, train, config, held, seed=config.seed)
    folder.mkdir(parents=True, exist_ok=True)
    trained.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta.write_text(json.dumps({"metrics": result.metrics, "steps": result.steps}))
    return SFTResult(str(folder), result.metrics, result.steps)
