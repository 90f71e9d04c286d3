"""The cheap screen: implicit-reward accuracy on held-out pairs (one forward pass, no generation, no API).

Usable by any task whose held-out pairs are tokenized (prompt_ids/chosen_ids/rejected_ids) and carry the
reference log-probs (ref_chosen_logps/ref_rejected_logps), as every preference task here prepares them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

COST_CLASS = "cheap"  # one forward pass over the held-out pairs


@dataclass
class HeldoutScore:
    accuracy: float  # fraction of pairs where the implicit reward prefers the chosen answer
    margin: float  # mean beta * ((pi_c - ref_c) - (pi_r - ref_r))
    chosen_reward: float
    rejected_reward: float
    n: int

    def to_dict(self) -> dict:
        return {f"heldout/{k}": v for k, v in asdict(self).items()}


def implicit_reward_accuracy(model, dataset, pad_token_id: int, beta: float, batch_size: int = 16,
                             max_length: int | None = None) -> HeldoutScore:
    """Score `model` on held-out pairs against the reference log-probs stored in `dataset`."""
    import torch

    from discovery.inner_loop.trainer import reference_logps

    chosen, rejected = reference_logps(model, dataset, pad_token_id, batch_size, max_length)
    ref_chosen = torch.tensor(dataset["ref_chosen_logps"], dtype=torch.float32)
    ref_rejected = torch.tensor(dataset["ref_rejected_logps"], dtype=torch.float32)
    chosen_reward = beta * (chosen - ref_chosen)
    rejected_reward = beta * (rejected - ref_rejected)
    margin = chosen_reward - rejected_reward
    return HeldoutScore(
        accuracy=(margin > 0).float().mean().item(), margin=margin.mean().item(),
        chosen_reward=chosen_reward.mean().item(), rejected_reward=rejected_reward.mean().item(), n=len(margin),
    )
