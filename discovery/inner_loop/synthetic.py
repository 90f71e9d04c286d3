"""The `synthetic` task: a fast, exact CPU proxy of preference tuning (the embedded default task).

prepare (once, cached under task.cache_dir or ~/.cache/discovery/synthetic/<key>): a hidden true language
(sparse Markov chain), a tiny Llama SFT-trained on it (the reference policy), preference pairs sampled from
it and labelled by Bradley-Terry on a hidden gold reward with label noise, and reference log-probs of
every pair. evaluate: train a copy of the SFT model with the candidate loss through CandidateDPOTrainer
(zero reference forward passes), then sample completions for held-out prompts and score them:
fitness = mean gold reward; metrics: KL to the reference (Monte Carlo over the samples, per sequence; one
batched no-grad reference forward over the samples), held-out preference accuracy of the implicit reward,
the trainer's metrics (train/...), seconds and steps.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from discovery.candidate import EvalResult
from discovery.errors import DiscoveryError
from discovery.inner_loop.task import Fidelity, ProgressFn, Task, TaskInfo, cache_lock
from discovery.paths import cache_root

DESCRIPTION = (
    "A small causal language model (a tiny Llama) was fine-tuned on a hidden language and is now preference-"
    "tuned on pairs of its own completions, labelled by noisy comparisons of a hidden reward (some labels are "
    "flipped, some pairs are near-ties). The reference model is the fine-tuned starting point. The loss sees "
    "each pair only through the policy's and the reference's log-probs; it must raise the hidden reward of the "
    "policy's completions by how it turns each pair's preference margin into a training signal."
)
# with task.options.edit_pairs / target_weight set, the prompt says what those pairs and that reward are
EDITED_PAIRS = {False: "pairs that compare one completion with a copy of it in which one word is replaced",
                True: "pairs that compare a correct answer with a copy of it in which one word is wrong (as in math "
                      "data: a reference solution against one corrupted step)"}
CORRECTNESS = "a hidden reward that is high mainly for completions that follow the correct answer"
# no "fluency" wording: it invited terms on the raw log-probs that train too conservatively (issue 17)
FITNESS = ("mean hidden (gold) reward of completions sampled from the trained policy on held-out prompts; "
           "higher is better")


@dataclass
class SyntheticState:
    """Everything `prepare` built, loaded in memory (shared copy-on-write by forked workers)."""

    language: Any
    reference: Any  # the SFT model; each candidate trains a deep copy
    tokenizer: Any
    train: Any  # datasets.Dataset with ref log-probs
    heldout: Any
    eval_prompts: Any  # (N, 1 + prompt_len) token ids
    meta: dict


class SyntheticTask(Task):
    name = "synthetic"

    def __init__(self, config):
        from discovery.inner_loop.synthetic_build import SyntheticOptions

        super().__init__(config)
        self.options = SyntheticOptions.from_dict(config.task.options)
        self._state: SyntheticState | None = None

    def info(self) -> TaskInfo:
        return TaskInfo(self.name, describe(self.options), FITNESS, self.config.train.beta, "cheap",
                        tuple(self.config.eval.betas))

    def cache_key(self) -> str:
        from discovery.inner_loop.synthetic_build import BUILD_VERSION, key_options

        blob = json.dumps({"options": key_options(self.options), "version": BUILD_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @cached_property
    def path(self) -> Path:
        return cache_root(self.config.task.cache_dir) / "synthetic" / self.cache_key()

    def is_prepared(self) -> bool:
        return (self.path / "meta.json").is_file()

    def prepare(self, progress: ProgressFn | None = None) -> None:
        from discovery.inner_loop.synthetic_build import build

        with cache_lock(self.path):
            if self.is_prepared():  # (perhaps by another run while this one waited for the lock)
                if progress:
                    progress("cached", 1.0)
                return
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(self.config.train.threads or 1)  # a tiny model: more threads only contend
            try:
                build(self.options, self.path, progress)
            finally:
                torch.set_num_threads(threads)

    def load(self) -> SyntheticState:
        """The prepared state, read once per process."""
        if self._state is None:
            if not self.is_prepared():
                raise DiscoveryError(f"task 'synthetic' is not prepared at {self.path}; run `discovery tasks prepare "
                                     "synthetic` first")
            self._state = _read_state(self.path, self.options)
        return self._state

    def evaluate(self, code: str, seed: int, fidelity: Fidelity = Fidelity()) -> EvalResult:
        """Runs candidate code: call only inside the sandbox's isolated child (see worker.evaluate_job)."""
        from discovery.sandbox.loader import load_loss

        return self.evaluate_fn(load_loss(code), seed, fidelity)

    def evaluate_reference(self, seed: int, fidelity: Fidelity = Fidelity()) -> EvalResult:
        """Score the untrained SFT policy (no candidate code): the floor a useful loss must beat."""
        return self.evaluate_fn(None, seed, fidelity)

    def evaluate_fn(self, loss_fn, seed: int, fidelity: Fidelity = Fidelity()) -> EvalResult:
        """Train a copy of the reference with `loss_fn` (None = no training: the SFT policy) and score it."""
        from discovery.inner_loop.scoring import score_policy

        state = self.load()
        start = time.perf_counter()
        beta = self.config.train.beta if fidelity.beta is None else fidelity.beta
        policy, outcome = copy.deepcopy(state.reference), None
        if loss_fn is not None:
            outcome = self._train(policy, loss_fn, seed, fidelity, beta)
            policy = policy.to("cpu")  # scored on CPU like the reference, whatever device trained it
            if not outcome.ok:
                return EvalResult.failure(seed, fidelity.name, beta, outcome.reason, steps=outcome.steps,
                                          metrics=_prefixed(outcome.metrics), seconds=time.perf_counter() - start)
        scores = score_policy(policy, state.reference, state.language, state.eval_prompts,
                              self.options.completion_len, seed, state.heldout, state.tokenizer.pad_token_id)
        metrics = {k: v for k, v in scores.items() if k != "fitness"}
        metrics["peak_rss_mb"] = _peak_rss_mb()
        steps = 0
        if outcome is not None:
            metrics.update(_prefixed(outcome.metrics))
            metrics["train_seconds"] = outcome.seconds
            steps = outcome.steps
        return EvalResult(seed=seed, fitness=scores["fitness"], metrics=metrics, seconds=time.perf_counter() - start,
                          steps=steps, fidelity=fidelity.name, beta=beta)

    def _train(self, policy, loss_fn, seed: int, fidelity: Fidelity, beta: float):
        from transformers.trainer_callback import PrinterCallback

        from discovery.inner_loop.trainer import CandidateDPOTrainer

        state = self.load()
        args = dpo_config(self.config.train, seed, beta, fidelity.steps_fraction, len(state.train))
        trainer = CandidateDPOTrainer(policy, args=args, train_dataset=state.train,
                                      processing_class=state.tokenizer, loss_fn=loss_fn)
        trainer.remove_callback(PrinterCallback)  # the task reports metrics itself
        outcome = trainer.run()
        if trainer.reference_forward_passes:
            raise RuntimeError("the synthetic task ran a reference forward pass during training")
        return outcome


def describe(options) -> str:
    """The task as the proposer's prompt tells it: DESCRIPTION at the default options; with low-edit-distance
    pairs or the correctness-like reward (docs/tasks.md) the pairs and the reward it names are those."""
    text = DESCRIPTION
    if options.edit_pairs > 0:
        edited = EDITED_PAIRS[options.edit_from_target]
        if options.edit_pairs == 1:
            text = text.replace("pairs of its own completions", edited).replace(", some pairs are near-ties", "")
        else:
            text = text.replace("pairs of its own completions", f"a mix of pairs of its own completions and {edited}")
    if options.target_weight > 0:
        text = text.replace("a hidden reward", CORRECTNESS)
    return text


def train_steps(train, pairs: int, steps_fraction: float = 1.0) -> int:
    """Optimizer steps of one run: train.max_steps, or (max_steps <= 0) train.num_train_epochs passes over
    `pairs` preference pairs; a screen (steps_fraction < 1) runs that fraction of them."""
    if train.max_steps > 0:
        return max(1, round(train.max_steps * steps_fraction))
    per_epoch = math.ceil(pairs / (train.per_device_train_batch_size * train.gradient_accumulation_steps))
    return max(1, round(per_epoch * train.num_train_epochs * steps_fraction))


def dpo_config(train, seed: int, beta: float, steps_fraction: float = 1.0, pairs: int = 0):
    """TRL DPOConfig from our TrainConfig (same field names), quiet and stateless (no checkpoints, no logs)."""
    import tempfile

    from trl import DPOConfig

    from discovery.inner_loop.trainer import device_defaults

    steps = train_steps(train, pairs, steps_fraction)
    return DPOConfig(
        output_dir=tempfile.gettempdir(), beta=beta, learning_rate=train.learning_rate, max_steps=steps,
        per_device_train_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps, max_length=train.max_length,
        lr_scheduler_type=train.lr_scheduler_type, warmup_steps=train.warmup_ratio,  # < 1: a ratio
        weight_decay=train.weight_decay,
        precompute_ref_log_probs=True, gradient_checkpointing=False, disable_dropout=True, seed=seed, data_seed=seed,
        logging_steps=max(1, steps // 4), report_to="none", save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, **device_defaults(),
    )


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (a forked worker counts the shared pages it touched)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prefixed(metrics: dict) -> dict:
    skip = {"epoch", "step", "learning_rate", "grad_norm"}
    return {f"train/{k}": float(v) for k, v in metrics.items() if k not in skip and isinstance(v, int | float)}


def _read_state(path: Path, options) -> SyntheticState:
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from discovery.inner_loop.language import TrueLanguage

    language = TrueLanguage.from_state_dict(torch.load(path / "language.pt", weights_only=True))
    reference = AutoModelForCausalLM.from_pretrained(path / "model", attn_implementation="eager").eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path / "model")
    train = load_from_disk(str(path / "train"))
    heldout = load_from_disk(str(path / "heldout"))
    prompts = torch.tensor(heldout["prompt_ids"])
    reps = -(-options.eval_prompts // len(prompts))
    eval_prompts = prompts.repeat(reps, 1)[: options.eval_prompts]
    meta = json.loads((path / "meta.json").read_text())
    return SyntheticState(language, reference, tokenizer, train, heldout, eval_prompts, meta)
