import torch
import torch.nn.functional as F


def dbaql(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    tau = 0.05
    temperature = 0.9
    blend_rate = 1.0
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = beta * margin
    scaled = logits / tau
    variability = scaled.var() if scaled.numel() > 1 else torch.zeros_like(scaled.sum())
    blend = torch.sigmoid(variability) * blend_rate
    return blend * -F.logsigmoid(logits / temperature) + (1 - blend) * torch.exp(-logits * temperature)
