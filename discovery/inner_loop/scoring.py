"""Scoring a policy on the synthetic task: sampled completions, gold reward, KL to the reference, accuracy."""

from __future__ import annotations

import torch

from discovery.inner_loop.trainer import reference_logps

N_SPECIAL = 4  # <pad> <bos> <eos> <unk>: never sampled; word w has token id w + N_SPECIAL


def _word_logprobs(model, ids: torch.Tensor) -> torch.Tensor:
    """Log-probs over words only (special tokens masked out) at every position of `ids`."""
    logits = model(input_ids=ids, use_cache=False).logits.float()
    return torch.log_softmax(logits[..., N_SPECIAL:], dim=-1)


@torch.no_grad()
def sample(model, prompts: torch.Tensor, length: int, generator: torch.Generator, batch_size: int = 512):
    """Sample `length` words after each prompt (token ids); returns (completion token ids, summed log-probs)."""
    model.eval()
    outs, logps = [], []
    for start in range(0, len(prompts), batch_size):
        ids = prompts[start:start + batch_size]
        total = torch.zeros(len(ids))
        for _ in range(length):
            lp = _word_logprobs(model, ids)[:, -1]
            word = torch.multinomial(lp.exp(), 1, generator=generator)
            total += lp.gather(1, word).squeeze(1)
            ids = torch.cat([ids, word + N_SPECIAL], dim=1)
        outs.append(ids[:, -length:])
        logps.append(total)
    return torch.cat(outs), torch.cat(logps)


@torch.no_grad()
def completion_word_logps(model, prompts: torch.Tensor, completions: torch.Tensor, batch_size: int = 512):
    """Summed word-level log-probs of given completions (the same distribution `sample` draws from)."""
    model.eval()
    out = []
    for start in range(0, len(prompts), batch_size):
        p, c = prompts[start:start + batch_size], completions[start:start + batch_size]
        lp = _word_logprobs(model, torch.cat([p, c], dim=1))[:, p.shape[1] - 1:-1]
        out.append(lp.gather(2, (c - N_SPECIAL).unsqueeze(2)).squeeze(2).sum(dim=1))
    return torch.cat(out)


def heldout_accuracy(model, heldout, pad_token_id: int) -> tuple[float, float]:
    """(accuracy, mean margin) of the implicit reward log-ratio margin against the held-out labels."""
    chosen, rejected = reference_logps(model, heldout, pad_token_id, batch_size=256)
    margin = (chosen - torch.tensor(heldout["ref_chosen_logps"])) - (
        rejected - torch.tensor(heldout["ref_rejected_logps"]))
    hits = (margin > 0).float() + 0.5 * (margin == 0).float()  # a tie (the untrained reference) counts half
    return hits.mean().item(), margin.mean().item()


def score_policy(policy, reference, language, eval_prompts: torch.Tensor, completion_len: int, seed: int,
                 heldout, pad_token_id: int) -> dict[str, float]:
    """Fitness (mean gold reward of sampled held-out completions) and the diagnostics around it."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    completions, policy_logps = sample(policy, eval_prompts, completion_len, generator)
    ref_logps = completion_word_logps(reference, eval_prompts, completions)
    words = completions - N_SPECIAL
    prompt_last = eval_prompts[:, -1] - N_SPECIAL
    reward = language.gold_reward(prompt_last, words)
    accuracy, margin = heldout_accuracy(policy, heldout, pad_token_id)
    return {
        "fitness": reward.mean().item(),
        "gold_reward_stderr": (reward.std() / len(reward) ** 0.5).item(),
        "kl": (policy_logps - ref_logps).mean().item(),
        "valence": language.valence[words].mean().item(),
        "fluency": language.fluency(prompt_last, words).mean().item(),
        "heldout_accuracy": accuracy,
        "heldout_margin": margin,
    }
