import torch


def kto_pair(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    chosen_kl = chosen.mean().clamp(min=0)
    rejected_kl = rejected.mean().clamp(min=0)
    chosen_losses = 1 - torch.sigmoid(beta * (chosen - rejected_kl))
    rejected_losses = 1 - torch.sigmoid(beta * (chosen_kl - rejected))
    return 0.5 * (chosen_losses + rejected_losses)
