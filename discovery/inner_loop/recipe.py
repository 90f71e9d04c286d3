"""The training recipe shared by the SFT and DPO stages: precision, device, warmup, checkpointing, truncation.

One place that turns `train.*` into TrainingArguments keywords, so every setting reaches both stages and
works on every supported transformers version (>= 4.56 and 5.x):

- precision: `train.bf16` is mixed precision. Fully fine-tuned weights are loaded in float32 (the master
  weights AdamW updates) and the forward/backward runs under bf16 autocast (`bf16=True`, on CUDA and on
  CPU); under DeepSpeed/FSDP the same flags give their bf16 mixed precision with fp32 master weights.
  Loading the weights in bf16 instead makes AdamW's small updates (lr 5e-7) round away: measured on the
  tiny test model, 294 of 30,240 parameters moved in 4 steps against 30,239 in float32. With LoRA only the
  adapters train: the frozen base is loaded in bf16 and PEFT keeps the adapters in float32.
- warmup: `train.warmup_ratio` is a fraction of the training steps. transformers 4.x takes it as
  `warmup_ratio`; 5.x removed that field and reads a float `warmup_steps` below 1 as the ratio.
- checkpointing: passed explicitly (TRL's configs default it to on), under the name the version knows.
- truncation: the paper's TRL (0.8): when prompt + longer completion exceed `max_length`, the prompt is
  cut to `max_prompt_length` (keeping its end with `truncation_mode: keep_end`, TRL 0.8's default), then
  the completions to `max_length - max_prompt_length`. No pair is dropped.
- device: one function picks the device for every model of a task (policy, reference, reward model).
"""

from __future__ import annotations

import contextlib
from typing import Any

from discovery.config import TrainConfig
from discovery.errors import DiscoveryError

TRUNCATION_MODES = ("keep_end", "keep_start")


def device():
    """The torch device every model of a task uses: the (local) CUDA GPU when there is one, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def weights_dtype(train: TrainConfig, for_training: bool = True):
    """float32 master weights for full fine-tuning; bf16 for a frozen base (LoRA) or inference with bf16 on."""
    import torch

    if train.bf16 and (train.peft or not for_training):
        return torch.bfloat16
    return torch.float32


def autocast(train: TrainConfig, device_type: str | None = None):
    """The bf16 autocast the Trainer uses, for forward passes outside it (reference log-probs, the screen)."""
    import torch

    if not train.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type or device().type, dtype=torch.bfloat16)


def warmup_kwargs(ratio: float, fields=None) -> dict[str, float]:
    """`warmup_ratio` for transformers 4.x, a fractional `warmup_steps` for 5.x (which has no warmup_ratio)."""
    if not 0.0 <= ratio < 1.0:
        raise DiscoveryError(f"train.warmup_ratio must be in [0, 1), got {ratio}")
    if fields is None:
        from transformers import TrainingArguments

        fields = TrainingArguments.__dataclass_fields__
    if "warmup_ratio" in fields:
        return {"warmup_ratio": ratio}
    return {"warmup_steps": ratio}


def checkpointing_kwargs(enabled: bool, fields=None) -> dict[str, bool]:
    """Activation checkpointing on or off, always explicit (TRL defaults to on), under the version's name."""
    if fields is None:
        from transformers import TrainingArguments

        fields = TrainingArguments.__dataclass_fields__
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: bool(enabled)}


def training_kwargs(train: TrainConfig, seed: int) -> dict[str, Any]:
    """TrainingArguments keywords from `train.*` common to SFTConfig and DPOConfig."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "learning_rate": train.learning_rate, "per_device_train_batch_size": train.per_device_train_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps, "max_length": train.max_length,
        "lr_scheduler_type": train.lr_scheduler_type, "weight_decay": train.weight_decay,
        "bf16": train.bf16, "use_cpu": not cuda, "seed": seed,
        **warmup_kwargs(train.warmup_ratio), **checkpointing_kwargs(train.gradient_checkpointing),
    }


def max_prompt_length(train: TrainConfig) -> int | None:
    if train.max_length is None:
        return None
    limit = train.max_prompt_length if train.max_prompt_length is not None else train.max_length // 2
    if not 0 < limit < train.max_length:
        raise DiscoveryError(f"train.max_prompt_length must be in (0, max_length={train.max_length}), got {limit}")
    return limit


def truncate_pair(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int,
                  prompt_limit: int, mode: str = "keep_end") -> tuple[list[int], list[int], list[int]]:
    """TRL 0.8's DPO truncation of one tokenized pair: first the prompt, then the completions."""
    if mode not in TRUNCATION_MODES:
        raise DiscoveryError(f"train.truncation_mode must be one of {', '.join(TRUNCATION_MODES)}, got '{mode}'")
    longer = max(len(chosen), len(rejected))
    if len(prompt) + longer > max_length:
        prompt = prompt[-prompt_limit:] if mode == "keep_end" else prompt[:prompt_limit]
    if len(prompt) + longer > max_length:
        keep = max_length - prompt_limit
        chosen, rejected = chosen[:keep], rejected[:keep]
    return prompt, chosen, rejected
