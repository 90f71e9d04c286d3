"""One-time build of the synthetic task: true language, SFT reference model, preference pairs, ref log-probs."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from discovery.config import build_dataclass
from discovery.errors import ConfigError
from discovery.inner_loop.language import TrueLanguage
from discovery.inner_loop.scoring import N_SPECIAL, sample
from discovery.inner_loop.task import ProgressFn
from discovery.inner_loop.tinylm import build_llama, build_tokenizer
from discovery.inner_loop.trainer import add_reference_logps

BUILD_VERSION = 2  # bump when the build changes what it produces (2: 1024 train pairs, label statistics in meta)


@dataclass(frozen=True)
class SyntheticOptions:
    """task.options of the synthetic task; every field changes the cache key."""

    vocab: int = 32  # words of the true language
    successors: int = 4  # allowed next words per word
    epsilon: float = 0.01  # smoothing mass spread over all next words
    fluency_weight: float = 1.0  # gold reward = valence + fluency_weight * fluency
    prompt_len: int = 4
    completion_len: int = 12
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    sft_sequences: int = 20000
    sft_steps: int = 600  # the SFT model matches the true language to 0.02 nats/word (measured)
    sft_batch: int = 64
    sft_lr: float = 3e-3
    train_pairs: int = 1024  # train.max_steps = 128 at batch 16 = 2 epochs (DiscoPOP's inner loop: 2)
    heldout_pairs: int = 512
    eval_prompts: int = 512
    bt_temperature: float = 0.1  # Bradley-Terry: P(a > b) = sigmoid((r_a - r_b) / T)
    label_noise: float = 0.1  # extra probability of flipping a label
    seed: int = 0
    # Low-edit-distance pairs (likelihood displacement, Pal et al. 2024 arXiv:2402.13228): this share of pairs
    # compares a completion with itself, `edit_words` words replaced by other random words (their MetaMath
    # pairs corrupt one intermediate result of the reference solution); that completion is the best of
    # `edit_best_of` reference samples by gold reward (a curated answer; 1 = one sample). Added after build 2:
    # in the cache key only when set.
    edit_pairs: float = 0.0
    edit_words: int = 1
    edit_best_of: int = 1
    # Correctness-like gold reward (a hidden target answer per prompt; TrueLanguage.correct_prefix): its weight,
    # 0 = off. Added after build 2: in the cache key only when set.
    target_weight: float = 0.0
    edit_from_target: bool = False  # the edited pairs' kept completion is the target answer itself (MetaMath's
    # reference solution as chosen, one intermediate result corrupted as rejected); late option as above

    @classmethod
    def from_dict(cls, options: dict) -> SyntheticOptions:
        opts = build_dataclass(cls, options, "task.options")
        if (not 0.0 <= opts.edit_pairs <= 1.0 or not 1 <= opts.edit_words <= opts.completion_len
                or opts.edit_best_of < 1):
            raise ConfigError(f"task.options: edit_pairs must be in [0, 1] (got {opts.edit_pairs}), edit_words in "
                              f"[1, completion_len = {opts.completion_len}] (got {opts.edit_words}) and "
                              f"edit_best_of >= 1 (got {opts.edit_best_of})")
        return opts


# options added after build 2: keyed only when not at their default
LATE_OPTIONS = ("edit_pairs", "edit_words", "edit_best_of", "target_weight", "edit_from_target")


def key_options(opts: SyntheticOptions) -> dict:
    """The options that make the cache key: an option added later counts only when set, so the key of every
    task built before it (the default included) stays the same."""
    defaults = asdict(SyntheticOptions())
    return {k: v for k, v in asdict(opts).items() if k not in LATE_OPTIONS or v != defaults[k]}


def words(opts: SyntheticOptions) -> list[str]:
    return [f"w{i}" for i in range(opts.vocab)]


def _stage(progress: ProgressFn | None, stage: str, fraction: float) -> None:
    if progress:
        progress(stage, fraction)


def train_sft(opts: SyntheticOptions, language: TrueLanguage, progress: ProgressFn | None = None):
    """Plain next-token SFT of a tiny Llama on sequences of the true language: the reference policy."""
    g = torch.Generator().manual_seed(opts.seed + 1)
    seqs = language.sample(opts.sft_sequences, opts.prompt_len + opts.completion_len, g) + N_SPECIAL
    seqs = torch.cat([torch.ones(len(seqs), 1, dtype=torch.long), seqs], dim=1)  # <bos> first
    model = build_llama(opts.vocab + N_SPECIAL, opts.hidden, opts.layers, opts.heads, seed=opts.seed)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.sft_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, opts.sft_steps)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts.seed + 2)
        for step in range(opts.sft_steps):
            batch = seqs[torch.randint(len(seqs), (opts.sft_batch,))]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            if step % 50 == 0:
                _stage(progress, "sft", step / opts.sft_steps)
    model.eval()
    return model, loss.item()


def make_pairs(opts: SyntheticOptions, language: TrueLanguage, model, n: int, seed: int) -> dict[str, list]:
    """n prompts; two reference samples each; Bradley-Terry labels on the gold reward plus label noise."""
    g = torch.Generator().manual_seed(seed)
    prompt_words = language.sample(n, opts.prompt_len, g)
    prompts = torch.cat([torch.ones(n, 1, dtype=torch.long), prompt_words + N_SPECIAL], dim=1)
    a, _ = sample(model, prompts, opts.completion_len, g)
    b, _ = sample(model, prompts, opts.completion_len, g)
    last = prompt_words[:, -1]
    if opts.edit_pairs > 0:
        edit = (torch.rand(n, generator=g) < opts.edit_pairs)[:, None]
        base = a if opts.edit_best_of == 1 else best_of(opts, language, model, prompts, g)
        if opts.edit_from_target:
            base = language.target(last, opts.completion_len) + N_SPECIAL
        a, b = torch.where(edit, base, a), torch.where(edit, edited(base, opts, g), b)
    ra, rb = language.gold_reward(last, a - N_SPECIAL), language.gold_reward(last, b - N_SPECIAL)
    a_wins = torch.rand(n, generator=g) < torch.sigmoid((ra - rb) / opts.bt_temperature)
    a_wins ^= torch.rand(n, generator=g) < opts.label_noise
    chosen = torch.where(a_wins[:, None], a, b)
    rejected = torch.where(a_wins[:, None], b, a)
    return {
        "prompt_ids": prompts.tolist(), "chosen_ids": chosen.tolist(), "rejected_ids": rejected.tolist(),
        "gold_chosen": torch.where(a_wins, ra, rb).tolist(), "gold_rejected": torch.where(a_wins, rb, ra).tolist(),
    }


def best_of(opts: SyntheticOptions, language: TrueLanguage, model, prompts: torch.Tensor, g: torch.Generator):
    """Per prompt, the best of `opts.edit_best_of` reference samples by gold reward (token ids)."""
    draws = torch.stack([sample(model, prompts, opts.completion_len, g)[0] for _ in range(opts.edit_best_of)])
    last = prompts[:, -1] - N_SPECIAL
    gold = torch.stack([language.gold_reward(last, d - N_SPECIAL) for d in draws])  # (k, n)
    return draws[gold.argmax(dim=0), torch.arange(len(prompts))]


def edited(completions: torch.Tensor, opts: SyntheticOptions, g: torch.Generator) -> torch.Tensor:
    """Each row with `opts.edit_words` distinct positions replaced by a different, uniformly drawn word."""
    n, length = completions.shape
    where = torch.rand(n, length, generator=g).argsort(dim=1)[:, :opts.edit_words]
    shift = torch.randint(1, opts.vocab, (n, opts.edit_words), generator=g)
    words_ = completions.gather(1, where) - N_SPECIAL
    return completions.clone().scatter_(1, where, (words_ + shift) % opts.vocab + N_SPECIAL)


def label_stats(opts: SyntheticOptions, gold_chosen, gold_rejected) -> dict[str, float]:
    """How imperfect the labels are, in the terms human preference sets are reported in.

    Each pair's label follows the better completion with probability q = (1 - noise) s + noise (1 - s),
    s = sigmoid(|r_a - r_b| / T). Two labellers drawn this way agree with probability q^2 + (1 - q)^2: the
    inter-annotator agreement (reported for human preference sets: InstructGPT 72.6% +- 1.5% among training
    labelers, AlpacaFarm ~66% among humans; sources in docs/tasks.md). `near_ties` = share of pairs whose
    label is closer to a coin flip than 60/40.
    """
    gap = (torch.as_tensor(gold_chosen) - torch.as_tensor(gold_rejected)).abs()
    s = torch.sigmoid(gap / opts.bt_temperature)
    q = (1 - opts.label_noise) * s + opts.label_noise * (1 - s)
    return {"label_accuracy": q.mean().item(), "inter_annotator_agreement": (q ** 2 + (1 - q) ** 2).mean().item(),
            "near_ties": (q < 0.6).float().mean().item(),
            "chosen_is_better": (torch.as_tensor(gold_chosen) > torch.as_tensor(gold_rejected)).float().mean().item()}


def build(opts: SyntheticOptions, target: Path, progress: ProgressFn | None = None) -> None:
    """Build everything into `target` (written to a temporary folder, then renamed: all or nothing)."""
    from datasets import Dataset

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _stage(progress, "language", 0.0)
    language = TrueLanguage.random(opts.vocab, opts.successors, opts.epsilon, opts.fluency_weight, opts.seed,
                                   opts.target_weight)
    torch.save(language.state_dict(), tmp / "language.pt")
    model, sft_loss = train_sft(opts, language, progress)
    tokenizer = build_tokenizer(words(opts))
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    splits = {"train": (opts.train_pairs, opts.seed + 3), "heldout": (opts.heldout_pairs, opts.seed + 4)}
    labels = {}
    for i, (name, (n, seed)) in enumerate(splits.items()):
        _stage(progress, f"pairs:{name}", i / len(splits))
        pairs = make_pairs(opts, language, model, n, seed)
        labels[name] = label_stats(opts, pairs["gold_chosen"], pairs["gold_rejected"])
        differ = torch.tensor(pairs["chosen_ids"]) != torch.tensor(pairs["rejected_ids"])
        labels[name]["mean_edit_distance"] = differ.sum(dim=1).float().mean().item()  # words that differ
        ds = add_reference_logps(model, Dataset.from_dict(pairs), tokenizer.pad_token_id, batch_size=256)
        ds.save_to_disk(str(tmp / name))
    meta = {"options": asdict(opts), "version": BUILD_VERSION, "sft_final_loss": sft_loss, "labels": labels}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _stage(progress, "done", 1.0)
