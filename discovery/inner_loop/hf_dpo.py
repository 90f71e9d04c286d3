"""Task `hf_dpo`: any HF causal LM on any preference dataset (full or LoRA), scored by MT-Bench or a screen.

prepare(): optional SFT stage, then TRL's tokenization of the pairs and the reference log-probs, computed
once per (model, revision, dataset fingerprint, max_length) and stored on disk for every candidate.
train_checkpoint() (isolated worker, candidate code): trains one candidate loss with CandidateDPOTrainer and
saves the weights or the LoRA adapter. score_checkpoint() (trusted process: the judge's key and network): the
held-out implicit-reward accuracy (cheap, no generation) at screen fidelity or with `task.options.scorer:
heldout`, else MT-Bench with the configured judge (expensive). Multi-GPU: `executor.processes_per_candidate`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from pathlib import Path

from discovery import paths
from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.errors import DiscoveryError
from discovery.inner_loop import heldout
from discovery.inner_loop.task import (
    CHECKPOINT_NAME,
    Fidelity,
    ProgressFn,
    Task,
    TaskInfo,
    TrainedCheckpoint,
    TrainResources,
    cache_lock,
    train_resources,
)

SCORERS = ("mtbench", "heldout")


def cache_root(config: RunConfig) -> Path:
    return paths.cache_root(config.task.cache_dir)


def compile_loss(code: str):
    """The candidate's contract function (compiled by the sandbox loader, restricted builtins)."""
    from discovery.sandbox.loader import load_loss

    return load_loss(code)


class HFDPOTask(Task):
    name = "hf_dpo"

    def __init__(self, config: RunConfig):
        super().__init__(config)
        if not config.task.model or not config.task.dataset:
            raise DiscoveryError("task hf_dpo needs task.model and task.dataset (hub names or local paths)")
        self.scorer = config.task.options.get("scorer", "mtbench")
        if self.scorer not in SCORERS:
            raise DiscoveryError(f"task.options.scorer must be one of {', '.join(SCORERS)}, got '{self.scorer}'")

    def info(self) -> TaskInfo:
        t = self.config.task
        fitness = ("MT-Bench overall score (1-10, mean of turn 1 and 2 ratings by the judge)"
                   if self.scorer == "mtbench" else "held-out implicit-reward accuracy (0-1)")
        return TaskInfo(
            name=self.name,
            description=(f"Preference-tune the language model {t.model} on the preference pairs of {t.dataset} "
                         "with the candidate loss, starting from the supervised model, which is also the reference."),
            fitness_description=fitness + "; higher is better",
            beta=self.config.train.beta,
            cost_class="expensive" if self.scorer == "mtbench" else "moderate", betas=tuple(self.config.eval.betas),
        )

    # ---------------------------------------------------------------- shared state

    def _policy_path(self) -> str:
        if not self.config.task.sft_dataset:
            return self.config.task.model
        from discovery.inner_loop.sft import ensure_sft_model

        return ensure_sft_model(self.config, cache_root(self.config)).path

    def cache_key(self) -> str:
        t = self.config.task
        from discovery.inner_loop.recipe import weights_dtype
        from discovery.inner_loop.sft import sft_key

        sft = sft_key(self.config) if t.sft_dataset else None
        train = self.config.train
        parts = [self.name, t.model, t.revision, sft, t.dataset, t.dataset_split, t.eval_split, t.max_samples,
                 train.max_length, train.max_prompt_length, train.truncation_mode, str(weights_dtype(train)), train.bf16,
                 "truncate-v2"]  # (the reference is computed in the policy's dtype: LoRA's bf16 base differs)
        return "hf_dpo-" + hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    def data_dir(self) -> Path:
        return cache_root(self.config) / self.cache_key()

    def prepare(self, progress: ProgressFn | None = None) -> None:
        folder = self.data_dir()
        with cache_lock(folder):
            if not (folder / "meta.json").is_file():  # (perhaps by another run while this one waited)
                self._build(folder, progress)

    def _build(self, folder: Path, progress: ProgressFn | None) -> None:
        from discovery.inner_loop import recipe
        from discovery.inner_loop.hf_data import load_policy, load_split, tokenize_pairs
        from discovery.inner_loop.trainer import add_reference_logps

        t, train = self.config.task, self.config.train
        if progress:
            progress("policy", 0.0)
        policy = self._policy_path()
        revision = None if t.sft_dataset else t.revision  # the SFT model is a local folder
        model, tokenizer = load_policy(policy, revision, recipe.weights_dtype(train))
        model = model.to(recipe.device())
        splits = {"train": t.dataset_split, **({"eval": t.eval_split} if t.eval_split else {})}
        fingerprints = {}
        for i, (name, split) in enumerate(splits.items()):
            if progress:
                progress(f"reference log-probs ({name})", i / len(splits))
            raw = load_split(t.dataset, split, t.max_samples)
            fingerprints[name] = raw._fingerprint
            pairs = tokenize_pairs(raw, tokenizer, train.max_length, max_prompt_length=recipe.max_prompt_length(train),
                                   truncation_mode=train.truncation_mode)
            with recipe.autocast(train):  # the same bf16 autocast the policy trains under: equal at step 0
                pairs = add_reference_logps(model, pairs, tokenizer.pad_token_id, train.per_device_train_batch_size,
                                            train.max_length)
            pairs.save_to_disk(str(folder / name))
        meta = {"policy": policy, "revision": revision, "fingerprints": fingerprints, "max_length": train.max_length}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
        if progress:
            progress("prepared", 1.0)

    def _meta(self) -> dict:
        path = self.data_dir() / "meta.json"
        if not path.is_file():
            raise DiscoveryError(f"task hf_dpo is not prepared ({path} missing); run `discovery tasks prepare`")
        return json.loads(path.read_text())

    # ---------------------------------------------------------------- one candidate

    def dpo_args(self, seed: int, fidelity: Fidelity, output_dir: str):
        from trl import DPOConfig

        from discovery.inner_loop.recipe import training_kwargs

        t = self.config.train
        steps = t.max_steps if t.max_steps <= 0 else max(1, math.ceil(t.max_steps * fidelity.steps_fraction))
        epochs = t.num_train_epochs * (fidelity.steps_fraction if t.max_steps <= 0 else 1.0)
        return DPOConfig(
            output_dir=output_dir, beta=fidelity.beta if fidelity.beta is not None else t.beta,
            max_steps=steps, num_train_epochs=epochs, **training_kwargs(t, seed),
            precompute_ref_log_probs=True, logging_steps=1, save_strategy="no", report_to=[],
        )

    def train(self, code: str, seed: int, fidelity: Fidelity, output_dir: str):
        """(trainer, TrainOutcome) for one candidate loss at one seed."""
        import datasets

        from discovery.inner_loop.hf_data import load_policy
        from discovery.inner_loop.recipe import weights_dtype
        from discovery.inner_loop.sft import lora_config
        from discovery.inner_loop.trainer import CandidateDPOTrainer

        meta = self._meta()
        model, tokenizer = load_policy(meta["policy"], meta.get("revision"), weights_dtype(self.config.train))
        pairs = datasets.load_from_disk(str(self.data_dir() / "train"))
        trainer = CandidateDPOTrainer(
            model, args=self.dpo_args(seed, fidelity, output_dir), train_dataset=pairs, processing_class=tokenizer,
            loss_fn=compile_loss(code), peft_config=lora_config(self.config) if self.config.train.peft else None,
        )
        return trainer, tokenizer, trainer.run()

    # ---------------------------------------------------------------- train (isolated) / score (trusted)

    scores_trusted = True  # MT-Bench calls the keyed judge: the worker only trains and saves a checkpoint

    def train_resources(self) -> TrainResources:
        """A 7B full fine-tune: tens of GB, hours, multi-GB checkpoint shards (`sandbox.train_*` override)."""
        return train_resources(self.config, TrainResources(wall_seconds=24 * 3600.0, memory_mb=0,
                                                           file_mb=1024 * 1024, open_files=4096))

    def score_key(self) -> dict:
        """The scorer's identity: a cached baseline scored by another judge (or questions) is not reused."""
        e = self.config.eval
        key: dict = {"options": self.config.task.options}
        if self.scorer == "mtbench":
            key["mtbench"] = [e.judge.model, e.judge.base_url, e.mtbench_source, e.mtbench_questions,
                              e.mtbench_max_new_tokens, e.mtbench_backend]
        return key

    def train_checkpoint(self, code: str, seed: int, fidelity: Fidelity, out_dir: str) -> TrainedCheckpoint:
        """Train one candidate (as one rank, when the worker starts several) and save it to out_dir/checkpoint."""
        from discovery.inner_loop import hf_checkpoint

        start = time.perf_counter()
        beta = fidelity.beta if fidelity.beta is not None else self.config.train.beta
        trainer, _, outcome = self.train(code, seed, fidelity, os.path.join(out_dir, "trainer"))
        metrics = {f"train/{k}": v for k, v in outcome.metrics.items()}
        metrics["train/seconds"] = outcome.seconds
        metrics["train/world_size"] = trainer.args.world_size  # ranks that trained it (processes_per_candidate)
        if not outcome.ok:
            return TrainedCheckpoint(seed, fidelity.name, beta, None, steps=outcome.steps, metrics=metrics,
                                     seconds=time.perf_counter() - start, ok=False, reason=outcome.reason)
        path = os.path.join(out_dir, CHECKPOINT_NAME)
        hf_checkpoint.save(trainer, path)
        return TrainedCheckpoint(seed, fidelity.name, beta, path, "lora" if self.config.train.peft else "full",
                                 outcome.steps, time.perf_counter() - start, metrics)

    def score_checkpoint(self, checkpoint: TrainedCheckpoint, code: str, fidelity: Fidelity) -> EvalResult:
        """The held-out screen and MT-Bench of a saved checkpoint (trusted side: runs no candidate code)."""
        from discovery.executors.checkpoints import digest
        from discovery.inner_loop import hf_checkpoint
        from discovery.inner_loop.recipe import device, weights_dtype

        start = time.perf_counter()
        beta = checkpoint.beta if checkpoint.beta is not None else self.config.train.beta
        metrics = dict(checkpoint.metrics)
        if not checkpoint.ok or checkpoint.path is None:
            return EvalResult.failure(checkpoint.seed, fidelity.name, beta, checkpoint.reason or "training failed",
                                      metrics=metrics, seconds=checkpoint.seconds, steps=checkpoint.steps)
        meta = self._meta()
        model, tokenizer = hf_checkpoint.load(meta["policy"], meta.get("revision"), checkpoint.path,
                                              checkpoint.kind == "lora",
                                              weights_dtype(self.config.train, for_training=False),
                                              self.score_device or device())
        key = digest(checkpoint.path)
        metrics["checkpoint/sha256"] = key
        fitness = self._score(model, tokenizer, key, beta, checkpoint.seed, fidelity, metrics)
        seconds = checkpoint.seconds + time.perf_counter() - start
        return EvalResult(checkpoint.seed, fitness, metrics, seconds, checkpoint.steps, fidelity.name, beta)

    def evaluate(self, code: str, seed: int, fidelity: Fidelity = Fidelity()) -> EvalResult:
        """Both halves in this process (tests, `evaluate` without an executor): train, save, score."""
        with tempfile.TemporaryDirectory(prefix="hf_dpo-") as scratch:
            return self.score_checkpoint(self.train_checkpoint(code, seed, fidelity, scratch), code, fidelity)

    def _score(self, model, tokenizer, model_key: str, beta: float, seed: int, fidelity: Fidelity,
               metrics: dict) -> float | None:
        """Fitness of a trained model; `model_key` (the checkpoint's weight hash) keys its saved MT-Bench answers."""
        screen = None
        if (self.data_dir() / "eval").is_dir():
            import datasets

            from discovery.inner_loop.recipe import autocast

            held = datasets.load_from_disk(str(self.data_dir() / "eval"))
            with autocast(self.config.train):  # as the reference log-probs were computed
                screen = heldout.implicit_reward_accuracy(model, held, tokenizer.pad_token_id, beta,
                                                          self.config.train.per_device_train_batch_size,
                                                          self.config.train.max_length)
            metrics.update(screen.to_dict())
        if self.scorer == "heldout" or fidelity.name == "screen":
            if screen is None:
                raise DiscoveryError("the held-out screen needs task.eval_split")
            return screen.accuracy
        from discovery.mtbench import score as mtbench

        # Answers are keyed by the trained weights themselves: a different lr (or anything else that changes the
        # model) is a different key; the same weights (a resumed run) reuse them.
        root = Path(self.config.task.options.get("mtbench_dir") or self.data_dir() / "mtbench")
        out_dir = root / f"{model_key}-seed{seed}"
        result = mtbench.score(self.config, _merged(model), tokenizer, out_dir, seed=seed, model_key=model_key)
        metrics.update({f"mtbench/{k}": v for k, v in result.to_dict().items() if not isinstance(v, dict)})
        metrics.update({f"mtbench/{c}": v for c, v in result.per_category.items()})
        return result.overall


def _merged(model):
    """The policy for generation: LoRA adapters merged (a no-op for full fine-tuning)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
