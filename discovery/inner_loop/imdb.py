"""Task `imdb` (DiscoPOP section 5.3): positive-sentiment generation, reward vs KL to the reference.

Policy `lvwerra/gpt2-imdb` by default; preference pairs from `task.dataset` (prompt/chosen/rejected);
reward = P(positive) from a sentiment classifier (`task.options.reward_model`, default
siebert/sentiment-roberta-large-english); KL per generated token to the reference. Each candidate is
trained at every beta of the sweep (`eval.betas`, else `train.beta`); the frontier of (KL, reward) points,
with the reference at (0, its reward), is reported, and fitness is the frontier's reward at the KL
budget `task.options.kl_budget`. Training and reference caching come from hf_dpo; as there, the isolated
worker only trains (one checkpoint per beta) and the reward model scores them in the trusted process.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

from discovery.candidate import EvalResult
from discovery.config import RunConfig
from discovery.inner_loop.hf_dpo import HFDPOTask
from discovery.inner_loop.task import CHECKPOINT_NAME, Fidelity, ProgressFn, TaskInfo, TrainedCheckpoint

DEFAULTS = {"reward_model": "siebert/sentiment-roberta-large-english", "positive_label": "POSITIVE",
            "kl_budget": 2.0, "prompts": 32, "max_new_tokens": 48}


def reward_at_kl(points: list[tuple[float, float]], budget: float) -> float:
    """Reward of the upper frontier of (kl, reward) points, linearly interpolated at `budget`."""
    frontier: list[tuple[float, float]] = []
    for kl, reward in sorted(points):
        if not frontier or reward > frontier[-1][1]:
            frontier.append((kl, reward))
    if budget <= frontier[0][0]:
        return frontier[0][1]
    for (k0, r0), (k1, r1) in zip(frontier, frontier[1:], strict=False):
        if k0 <= budget <= k1:
            return r0 + (r1 - r0) * (budget - k0) / max(k1 - k0, 1e-12)
    return frontier[-1][1]


class ImdbTask(HFDPOTask):
    name = "imdb"

    def __init__(self, config: RunConfig):
        config = self.resolved(config)
        super().__init__(config)
        self.opts = {**DEFAULTS, **{k: v for k, v in config.task.options.items() if k in DEFAULTS}}

    @staticmethod
    def resolved(config: RunConfig) -> RunConfig:
        """`config` with this task's settings (a new config): the gpt2-imdb policy unless task.model is set, and
        the held-out scorer (the reward model scores the frontier; MT-Bench does not apply)."""
        task = replace(config.task, model=config.task.model or "lvwerra/gpt2-imdb",
                       options={**config.task.options, "scorer": "heldout"})
        return replace(config, task=task)

    def info(self) -> TaskInfo:
        return TaskInfo(
            name=self.name,
            description=(f"Fine-tune {self.config.task.model} to write positive movie reviews from preference pairs "
                         "with the candidate loss; a sentiment classifier gives the reward."),
            fitness_description=(f"P(positive) of generated reviews at a KL budget of {self.opts['kl_budget']} "
                                 "nats per token to the reference; higher is better"),
            beta=self.config.train.beta, cost_class="moderate", betas=tuple(self.config.eval.betas),
        )

    def prepare(self, progress: ProgressFn | None = None) -> None:
        super().prepare(progress)
        meta_path = self.data_dir() / "meta.json"
        meta = json.loads(meta_path.read_text())
        if "reference_reward" not in meta:
            model, tok = self._reference(meta)
            meta["reference_reward"], _ = self._reward_and_kl(model, model, tok, seed=0)
            meta_path.write_text(json.dumps(meta, indent=2))

    def _reference(self, meta: dict):
        """The frozen reference (the prepared policy at its revision) on the device the policy trains on."""
        from discovery.inner_loop import recipe
        from discovery.inner_loop.hf_data import load_policy

        model, tok = load_policy(meta["policy"], meta.get("revision"), recipe.weights_dtype(self.config.train))
        return model.to(recipe.device()).eval(), tok

    def _prompts(self, tokenizer) -> list[str]:
        from discovery.inner_loop.hf_data import load_split

        t = self.config.task
        rows = load_split(t.dataset, t.eval_split or t.dataset_split, self.opts["prompts"])
        return [p if isinstance(p, str) else p[-1]["content"] for p in rows["prompt"]]

    def _reward_and_kl(self, policy, reference, tokenizer, seed: int) -> tuple[float, float]:
        """Mean P(positive) of sampled continuations and mean per-token KL(policy || reference) on them."""
        import torch
        from transformers import pipeline

        from discovery.inner_loop import recipe

        device = recipe.device()
        reference = reference.to(next(policy.parameters()).device)  # (the Trainer placed the policy)
        torch.manual_seed(seed)
        prompts = self._prompts(tokenizer)
        texts, kls = [], []
        policy.eval()
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt").to(policy.device)
            with torch.no_grad():
                out = policy.generate(**ids, do_sample=True, max_new_tokens=self.opts["max_new_tokens"],
                                      pad_token_id=tokenizer.pad_token_id)
                n = ids["input_ids"].shape[1]
                lp = torch.log_softmax(policy(out).logits[0, n - 1:-1].float(), -1)
                lr = torch.log_softmax(reference(out).logits[0, n - 1:-1].float(), -1)
                token = out[0, n:].unsqueeze(-1)
                kls.append((lp.gather(-1, token) - lr.gather(-1, token)).mean().item() if token.numel() else 0.0)
            texts.append(tokenizer.decode(out[0, n:], skip_special_tokens=True))
        classify = pipeline("text-classification", model=self.opts["reward_model"], top_k=None, device=device)
        scores = classify(texts, truncation=True)
        label = self.opts["positive_label"]
        rewards = [next((s["score"] for s in row if s["label"] == label), 0.0) for row in scores]
        return sum(rewards) / len(rewards), sum(kls) / len(kls)

    def _betas(self, fidelity: Fidelity) -> list[float]:
        return [fidelity.beta] if fidelity.beta is not None else list(self.config.training_betas())

    def train_checkpoint(self, code: str, seed: int, fidelity: Fidelity, out_dir: str) -> TrainedCheckpoint:
        """One trained policy per beta of the sweep, in out_dir/checkpoint/beta<b> (isolated worker)."""
        from discovery.inner_loop import hf_checkpoint

        start = time.perf_counter()
        folder = os.path.join(out_dir, CHECKPOINT_NAME)
        metrics, steps, kind = {}, 0, "lora" if self.config.train.peft else "full"
        for beta in self._betas(fidelity):
            trainer, _, outcome = self.train(code, seed, replace(fidelity, beta=beta), os.path.join(out_dir, "t"))
            steps += outcome.steps
            metrics.update({f"beta{beta:g}/train/{k}": v for k, v in outcome.metrics.items()})
            if not outcome.ok:
                return TrainedCheckpoint(seed, fidelity.name, fidelity.beta, None, kind, steps,
                                         time.perf_counter() - start, metrics, ok=False,
                                         reason=f"beta {beta}: {outcome.reason}")
            hf_checkpoint.save(trainer, os.path.join(folder, f"beta{beta:g}"))
        return TrainedCheckpoint(seed, fidelity.name, fidelity.beta, folder, kind, steps,
                                 time.perf_counter() - start, metrics)

    def score_checkpoint(self, checkpoint: TrainedCheckpoint, code: str, fidelity: Fidelity) -> EvalResult:
        """The reward model and KL of each beta's policy, and the frontier's reward at the budget (trusted side)."""
        from discovery.inner_loop import hf_checkpoint, recipe

        start = time.perf_counter()
        betas = self._betas(fidelity)
        beta_field = betas[0] if len(betas) == 1 else None
        metrics = dict(checkpoint.metrics)
        if not checkpoint.ok or checkpoint.path is None:
            return EvalResult.failure(checkpoint.seed, fidelity.name, beta_field, checkpoint.reason or "training failed",
                                      metrics=metrics, seconds=checkpoint.seconds, steps=checkpoint.steps)
        meta = self._meta()
        reference, _ = self._reference(meta)
        points = [(0.0, meta["reference_reward"])]
        for beta in betas:
            policy, tok = hf_checkpoint.load(meta["policy"], meta.get("revision"),
                                             os.path.join(checkpoint.path, f"beta{beta:g}"), checkpoint.kind == "lora",
                                             recipe.weights_dtype(self.config.train, for_training=False),
                                             self.score_device or recipe.device())
            reward, kl = self._reward_and_kl(policy, reference, tok, checkpoint.seed)
            points.append((kl, reward))
            metrics[f"beta{beta:g}/reward"], metrics[f"beta{beta:g}/kl"] = reward, kl
        metrics["frontier"] = [{"kl": k, "reward": r} for k, r in sorted(points)]
        metrics["kl_budget"] = self.opts["kl_budget"]
        fitness = reward_at_kl(points, float(self.opts["kl_budget"]))
        return EvalResult(checkpoint.seed, fitness, metrics, checkpoint.seconds + time.perf_counter() - start,
                          checkpoint.steps, fidelity.name, beta_field)
