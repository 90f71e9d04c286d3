import torch
import torch.nn.functional as F


def pfl(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    focus_scale = 2.0
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = beta * margin
    is_correct = policy_chosen_logps > policy_rejected_logps
    return torch.where(is_correct, -F.logsigmoid(logits) / focus_scale, torch.relu(1 - logits) * focus_scale)
