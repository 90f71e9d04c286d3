"""The hidden "true language" of the synthetic task and its gold reward.

A sparse random first-order Markov chain over `vocab` word tokens: each word has `successors` allowed next
words with Dirichlet weights; a little smoothing mass `epsilon` keeps every transition possible, so the
fluency (mean log-probability of a completion under the true language) is finite but very low off-support.

The gold reward of a completion mixes a preference signal (the mean hidden valence of its words) with
fluency: pushing valence by leaving the language is penalised, the way degenerate answers lose on MT-Bench.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrueLanguage:
    transition: torch.Tensor  # (V, V) row-stochastic, smoothed
    initial: torch.Tensor  # (V,) distribution of the first word
    valence: torch.Tensor  # (V,) hidden per-word preference signal
    fluency_weight: float
    # weight of a correctness-like term: the share of the completion that matches, from its start up to the first
    # wrong word, the hidden target answer (each word the true language's second most likely next word: a fluent
    # answer that is not the reference's mode, so sharpening the policy does not find it)
    target_weight: float = 0.0

    @classmethod
    def random(cls, vocab: int, successors: int, epsilon: float, fluency_weight: float, seed: int,
               target_weight: float = 0.0) -> TrueLanguage:
        g = torch.Generator().manual_seed(seed)
        weights = torch.zeros(vocab, vocab)
        for word in range(vocab):
            nxt = torch.randperm(vocab, generator=g)[:successors]
            weights[word, nxt] = torch._standard_gamma(torch.ones(successors), generator=g)
        sparse = weights / weights.sum(dim=1, keepdim=True)
        transition = (1 - epsilon) * sparse + epsilon / vocab
        valence = torch.randn(vocab, generator=g)
        return cls(transition, torch.full((vocab,), 1.0 / vocab), valence, fluency_weight, target_weight)

    @property
    def vocab(self) -> int:
        return self.transition.shape[0]

    def sample(self, n: int, length: int, generator: torch.Generator, start: torch.Tensor | None = None):
        """(n, length) word ids continuing `start` (last word of each row) or from the initial distribution."""
        out = torch.empty(n, length, dtype=torch.long)
        prev = start
        for t in range(length):
            probs = self.initial.expand(n, -1) if prev is None else self.transition[prev]
            prev = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            out[:, t] = prev
        return out

    def fluency(self, prompt_last: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
        """Mean log-probability per word of each completion under the true language."""
        prev = torch.cat([prompt_last[:, None], completion[:, :-1]], dim=1)
        return self.transition.log()[prev, completion].mean(dim=1)

    def target(self, prompt_last: torch.Tensor, length: int) -> torch.Tensor:
        """(n, length) the hidden target answer: from each prompt's last word, the second most likely next word."""
        out, prev = torch.empty(len(prompt_last), length, dtype=torch.long), prompt_last
        for t in range(length):
            prev = self.transition[prev].topk(2, dim=1).indices[:, 1]
            out[:, t] = prev
        return out

    def correct_prefix(self, prompt_last: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
        """Share of each completion that matches the target from its first word up to the first wrong one."""
        hits = completion == self.target(prompt_last, completion.shape[1])
        return hits.long().cumprod(dim=1).float().mean(dim=1)

    def gold_reward(self, prompt_last: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
        """valence + fluency_weight * fluency (+ target_weight * correct_prefix), one number per completion (word
        ids, not token ids)."""
        reward = self.valence[completion].mean(dim=1) + self.fluency_weight * self.fluency(prompt_last, completion)
        if self.target_weight:
            reward = reward + self.target_weight * self.correct_prefix(prompt_last, completion)
        return reward

    def state_dict(self) -> dict:
        return {"transition": self.transition, "initial": self.initial, "valence": self.valence,
                "fluency_weight": self.fluency_weight, "target_weight": self.target_weight}

    @classmethod
    def from_state_dict(cls, state: dict) -> TrueLanguage:
        return cls(state["transition"], state["initial"], state["valence"], float(state["fluency_weight"]),
                   float(state.get("target_weight", 0.0)))  # archives built before the option have none
