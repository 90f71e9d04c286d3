"""P2: CandidateDPOTrainer step time / a bare PyTorch DPO loop on the same model and batch (goal <= 1.15x);
P3: reference forward passes per candidate, counted (goal 0 during training).

    python bench/inner_loop_trainer.py [--steps 60] [--repeats 3] [--set KEY=VALUE ...]

Uses the prepared synthetic task (its SFT model and pairs) in this process, 1 torch thread. The bare loop
is forward -> summed completion log-probs -> DPO loss -> backward -> grad-norm clip 1.0 -> AdamW step (the
same algorithm as the Trainer's defaults), on one pre-collated batch
(no data loading). Our trainer is timed per step by a callback (on_step_begin -> on_step_end; that window
includes its data loading and collation, logging and the NaN guard). TRL's fused LM head
(fused_lm_head=True) is timed as a third column for reference.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402

from discovery.config import load_config  # noqa: E402
from discovery.inner_loop.synthetic import dpo_config  # noqa: E402
from discovery.inner_loop.task import get_task  # noqa: E402
from discovery.inner_loop.trainer import CandidateDPOTrainer, completion_logps  # noqa: E402


def dpo_loss(c, r, rc, rr, beta):
    return -F.logsigmoid(beta * ((c - rc) - (r - rr)))


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._t = [], 0.0

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)


def bare_loop(model, batch, steps, beta, lr):
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        logps, _, _ = completion_logps(logits, batch["input_ids"], batch["completion_mask"])
        c, r = logps.chunk(2)
        loss = dpo_loss(c, r, batch["ref_chosen_logps"], batch["ref_rejected_logps"], beta).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the Trainer does (max_grad_norm=1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return times


def trainer_steps(task, state, steps, fused):
    config = task.config
    args = dpo_config(config.train, 0, config.train.beta)
    args.max_steps = steps
    timer = StepTimer()
    trainer = CandidateDPOTrainer(copy.deepcopy(state.reference), args=args, train_dataset=state.train,
                                  processing_class=state.tokenizer, loss_fn=dpo_loss, fused_lm_head=fused,
                                  callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return timer.times[5:]  # drop warm-up steps


def count_reference_passes(task, state):
    """Forward calls of the reference model while one candidate trains, and while it is scored.

    A forward pre-hook on the reference counts calls whose module *is* the reference (the policy is a deep
    copy and carries the hook along, but is not counted).
    """
    from discovery.inner_loop.task import Fidelity

    calls = []
    reference = state.reference
    handle = reference.register_forward_pre_hook(lambda m, a: calls.append(1) if m is reference else None)
    try:
        outcome = task._train(copy.deepcopy(reference), dpo_loss, 0, Fidelity(), task.config.train.beta)
        train_calls = len(calls)
        result = task.evaluate_fn(dpo_loss, 0)
        total = len(calls) - train_calls
    finally:
        handle.remove()
    assert outcome.ok and result.ok, (outcome.reason, result.reason)
    return train_calls, total - train_calls, len(state.eval_prompts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = get_task(load_config(None, args.overrides))
    task.prepare()
    state = task.load()
    cfg = task.config.train
    rows = state.train.select(range(cfg.per_device_train_batch_size))
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    batch = DataCollatorForPreference(pad_token_id=state.tokenizer.pad_token_id)([rows[i] for i in range(len(rows))])
    bare, ours, fused = [], [], []
    for _ in range(args.repeats):  # interleaved so that machine load hits all three alike
        bare += bare_loop(copy.deepcopy(state.reference), batch, args.steps, cfg.beta, cfg.learning_rate)[5:]
        ours += trainer_steps(task, state, args.steps, fused=False)
        fused += trainer_steps(task, state, args.steps, fused=True)
    b, o, f = (statistics.median(x) * 1000 for x in (bare, ours, fused))
    print(f"== P2 step time (median ms, batch {cfg.per_device_train_batch_size} pairs, {args.steps} steps x "
          f"{args.repeats} repeats, 1 thread)")
    print(f"  bare PyTorch DPO loop        {b:7.2f} ms  1.00x")
    print(f"  CandidateDPOTrainer (logits) {o:7.2f} ms  {o / b:.2f}x  (goal <= 1.15x)")
    print(f"  CandidateDPOTrainer (TRL fused LM head) {f:7.2f} ms  {f / b:.2f}x")
    train_calls, score_calls, samples = count_reference_passes(task, state)
    print("== P3 reference forward passes per candidate")
    print(f"  during training: {train_calls} (goal 0; reference log-probs are read from the cached dataset)")
    print(f"  during scoring:  {score_calls} batched no-grad call(s) over {samples} sampled completions "
          "(the Monte-Carlo KL to the reference needs the reference's log-probs of the policy's own samples)")


if __name__ == "__main__":
    main()
