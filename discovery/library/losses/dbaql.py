import torch
import torch.nn.functional as F


def dbaql(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    tau = 0.05
    temperature = 0.9
    blend_rate = 1.0
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = beta * margin
    scaled = logits / tau
    count = torch.ones_like(scaled).sum()
    variability = ((scaled - scaled.mean()) ** 2).sum() / (count - 1).clamp(min=1)  # unbiased; 0 for one pair
    blend = torch.sigmoid(variability) * blend_rate
    return blend * -F.logsigmoid(logits / temperature) + (1 - blend) * torch.exp(-logits * temperature)
