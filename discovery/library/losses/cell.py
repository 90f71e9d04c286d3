import torch
import torch.nn.functional as F


def cell(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    alpha = 0.5
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = beta * margin
    return alpha * torch.exp(-logits) + (1 - alpha) * -F.logsigmoid(logits)
