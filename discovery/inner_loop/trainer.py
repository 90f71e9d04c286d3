"""`CandidateDPOTrainer`: TRL's DPOTrainer with the loss replaced by a candidate function.

TRL 1.16 has no loss hook, so `compute_loss` is overridden. Everything else (optimizer, scheduler,
data collation, logging, PEFT, accelerate) is TRL's/transformers' own. Model-agnostic: any causal LM
(tiny Llama on CPU, a 7B HF model with LoRA on GPU).

API
---
    trainer = CandidateDPOTrainer(
        model, args=DPOConfig(..., precompute_ref_log_probs=True), train_dataset=ds,
        processing_class=tokenizer, loss_fn=fn, fused_lm_head=None,
    )
    outcome = trainer.run()   # TrainOutcome(ok, steps, reason, metrics, seconds)

- `loss_fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta)`
  is the contract function (discovery.contract); it must return a (B,) tensor, the trainer takes its mean.
- `train_dataset` is either text (prompt/chosen/rejected, tokenized by TRL) or pre-tokenized
  (prompt_ids/chosen_ids/rejected_ids). It should carry `ref_chosen_logps`/`ref_rejected_logps` columns
  (see `add_reference_logps`): then no reference forward pass ever runs during training. Without them TRL
  precomputes them once at construction; `reference_forward_passes` counts every reference forward.
- Log-probs are summed over completion tokens. `fused_lm_head=None` picks plain logits on CPU (TRL's
  chunked fused head costs 2.4x per step there) and TRL's fused head on CUDA (saves logits memory).
- Logged per step (TRL's names): loss, rewards/{chosen,rejected,accuracies,margins}, logps/{chosen,rejected},
  mean_token_accuracy (top-1 accuracy on chosen completion tokens).
- The candidate runs under `discovery.sandbox.consistency.TrainingGuard` (`guard=True`): inputs edited in
  place or aliased, a call over `call_seconds`, a loss that differs without gradients or (beyond batch
  statistics) with the batch size stops training like a NaN, with the rule in the reason.
- A non-finite loss, or a non-finite gradient of the loss w.r.t. the summed log-probs (a backward hook: the
  candidate's own gradient, where a loss can turn NaN/Inf), stops training before the optimizer step:
  `run()` returns ok=False with the step and the reason.
- Settings: `use_cpu=True, bf16=False` on CPU; `bf16=True` on a GPU (see `device_defaults`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from discovery.sandbox.consistency import Inconsistent, TrainingGuard

LossFn = Callable[..., torch.Tensor]
TOKENIZED = ("prompt_ids", "chosen_ids", "rejected_ids")
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected", "mean_token_accuracy")


class NonFiniteError(RuntimeError):
    """Raised inside training when the loss or a gradient is NaN/Inf."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"{reason} at step {step}")
        self.step = step
        self.reason = reason


class LossShapeError(ValueError):
    """The candidate returned something that is not a (B,) or scalar tensor."""


@dataclass
class TrainOutcome:
    ok: bool
    steps: int
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # mean over the last logged window
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per logging step
    seconds: float = 0.0


def device_defaults() -> dict[str, Any]:
    """DPOConfig device settings: CPU float32, or bf16 on a CUDA GPU."""
    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": True}
    return {"use_cpu": True, "bf16": False}


def completion_logps(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor):
    """Per-sequence summed log-probs of completion tokens and per-token top-1 hits, from plain logits."""
    logits = logits[:, :-1].float()
    labels = input_ids[:, 1:]
    mask = completion_mask[:, 1:].bool()
    token_logps = -F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    logps = (token_logps * mask).sum(dim=1)
    with torch.no_grad():
        hits = (logits.argmax(dim=-1) == labels) & mask
    return logps, hits, mask


def add_reference_logps(model, dataset, pad_token_id: int, batch_size: int = 64, max_length: int | None = None):
    """Compute summed reference log-probs of every pair once (no grad) and add them as dataset columns."""
    chosen, rejected = reference_logps(model, dataset, pad_token_id, batch_size, max_length)
    for name in REF_COLUMNS:
        if name in dataset.column_names:
            dataset = dataset.remove_columns(name)
    dataset = dataset.add_column("ref_chosen_logps", chosen.tolist())
    return dataset.add_column("ref_rejected_logps", rejected.tolist())


@torch.no_grad()
def reference_logps(model, dataset, pad_token_id: int, batch_size: int = 64, max_length: int | None = None):
    """(chosen, rejected) summed completion log-probs of a pre-tokenized preference dataset under `model`."""
    collator = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    rows = dataset.select_columns(list(TOKENIZED))
    for start in range(0, len(rows), batch_size):
        batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        logps, _, _ = completion_logps(logits, batch["input_ids"], batch["completion_mask"])
        c, r = logps.float().cpu().chunk(2)
        chosen.append(c)
        rejected.append(r)
    model.train(was_training)
    return torch.cat(chosen), torch.cat(rejected)


class CandidateDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is `loss_fn`, fed precomputed reference log-probs."""

    def __init__(self, *args, loss_fn: LossFn, fused_lm_head: bool | None = None, guard: bool = True,
                 call_seconds: float = 5.0, **kwargs):
        # the sandbox's training guard: purity, a per-call time limit, same behaviour as in the checks
        self.loss_fn = TrainingGuard(loss_fn, call_seconds) if guard else loss_fn
        self.reference_forward_passes = 0
        self._fused = torch.cuda.is_available() if fused_lm_head is None else fused_lm_head
        super().__init__(*args, **kwargs)
        if not self.precompute_ref_logps:
            raise ValueError("CandidateDPOTrainer needs DPOConfig(precompute_ref_log_probs=True)")

    # ---------------------------------------------------------------- data: skip work already done

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if all(c in (dataset.column_names or ()) for c in TOKENIZED):
            return dataset  # pre-tokenized by the task
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if all(c in (dataset.column_names or ()) for c in REF_COLUMNS):
            return dataset  # precomputed once per task and cached
        self.reference_forward_passes += math.ceil(len(dataset) / batch_size)
        return super()._precompute_ref_logps(dataset, name, batch_size)

    # ---------------------------------------------------------------- the loss

    def _policy_logps(self, model, inputs):
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
        mask = inputs["completion_mask"]
        if self._fused:
            labels = inputs["input_ids"].masked_fill(mask == 0, -100)
            out = model(**kwargs, labels=labels, fused_lm_head=True)
            shift = mask[:, 1:].bool()
            per_token = out.log_probs[:, -shift.size(1):]
            return (per_token * shift).sum(dim=1), out.is_top1[:, -shift.size(1):] & shift, shift
        logits = model(**kwargs).logits
        return completion_logps(logits, inputs["input_ids"], mask)

    def _candidate_loss(self, chosen, rejected, ref_chosen, ref_rejected) -> torch.Tensor:
        losses = self.loss_fn(chosen, rejected, ref_chosen, ref_rejected, float(self.beta))
        if not isinstance(losses, torch.Tensor):
            raise LossShapeError(f"the loss function returned {type(losses).__name__}, expected a tensor")
        if losses.dim() > 1 or (losses.dim() == 1 and losses.shape[0] != chosen.shape[0]):
            raise LossShapeError(f"the loss function returned shape {tuple(losses.shape)}, expected ({chosen.shape[0]},)")
        if torch.is_grad_enabled() and not losses.requires_grad:
            raise LossShapeError("the loss does not depend on the policy log-probs (no gradient)")
        return losses.mean()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        logps, hits, mask = self._policy_logps(model, inputs)
        logps = logps.float()
        if logps.requires_grad:
            logps.register_hook(self._check_gradient)
        chosen, rejected = logps.chunk(2, dim=0)
        ref_chosen = inputs["ref_chosen_logps"].to(chosen)
        ref_rejected = inputs["ref_rejected_logps"].to(chosen)
        loss = self._candidate_loss(chosen, rejected, ref_chosen, ref_rejected)
        if not torch.isfinite(loss.detach()):
            raise NonFiniteError(self.state.global_step + 1, f"non-finite loss ({loss.item()})")
        self._log_metrics(mode, chosen.detach(), rejected.detach(), ref_chosen, ref_rejected, hits, mask)
        return (loss, {"logps": logps}) if return_outputs else loss

    def _log_metrics(self, mode, chosen, rejected, ref_chosen, ref_rejected, hits, mask) -> None:
        chosen_rewards = self.beta * (chosen - ref_chosen)
        rejected_rewards = self.beta * (rejected - ref_rejected)
        chosen_hits, _ = hits.chunk(2, dim=0)
        chosen_mask, _ = mask.chunk(2, dim=0)
        values = torch.stack([
            chosen_rewards.mean(), rejected_rewards.mean(), (chosen_rewards > rejected_rewards).float().mean(),
            (chosen_rewards - rejected_rewards).mean(), chosen.mean(), rejected.mean(),
            chosen_hits.sum() / chosen_mask.sum().clamp(min=1),
        ]).tolist()  # one device sync for all metrics
        for key, value in zip(METRICS, values, strict=True):
            self._metrics[mode][key].append(value)

    # ---------------------------------------------------------------- NaN/Inf guard on gradients

    def _check_gradient(self, grad: torch.Tensor) -> None:
        """Backward hook on the summed log-probs: the candidate's gradient, where it can turn NaN/Inf."""
        if not torch.isfinite(grad).all():
            raise NonFiniteError(self.state.global_step + 1, "non-finite gradient")

    # ---------------------------------------------------------------- one call that never raises on NaN

    def run(self) -> TrainOutcome:
        """Train; a NaN/Inf stops early and is reported, not raised."""
        start = time.perf_counter()
        try:
            self.train()
        except NonFiniteError as exc:
            return TrainOutcome(False, exc.step, str(exc), self._window(), self._history(),
                                time.perf_counter() - start)
        except Inconsistent as exc:  # the candidate misbehaved in training (guard), reported like NaN
            step = self.state.global_step + 1
            return TrainOutcome(False, step, f"[{exc.rule}] {exc.message} at step {step}", self._window(),
                                self._history(), time.perf_counter() - start)
        return TrainOutcome(True, self.state.global_step, "", self._window(), self._history(),
                            time.perf_counter() - start)

    def _history(self) -> list[dict[str, float]]:
        return [dict(h) for h in self.state.log_history if "loss" in h]

    def _window(self) -> dict[str, float]:
        """Training metrics of the last logging window (or of the partial window when stopped)."""
        history = self._history()
        pending = {k: sum(v) / len(v) for k, v in self._metrics["train"].items() if v}
        if pending:
            return pending
        return {k: float(v) for k, v in history[-1].items() if isinstance(v, int | float)} if history else {}
