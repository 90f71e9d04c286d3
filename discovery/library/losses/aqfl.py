import torch
import torch.nn.functional as F


def aqfl(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    tau = 0.05
    quantile_update_rate = 0.05
    distance_scale = 0.1
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = beta * margin
    scaled = logits / tau
    count = torch.ones_like(scaled).sum()
    variance = ((scaled - scaled.mean()) ** 2).sum() / (count - 1).clamp(min=1)
    spread = variance.clamp(min=1e-30).sqrt()  # the unbiased std; 0 (and a zero gradient) for one pair
    quantile = spread * torch.sigmoid(-scaled).mean()
    quantile = quantile + quantile_update_rate * (torch.sigmoid(scaled.mean()) - quantile)
    blend = torch.sigmoid(distance_scale * (scaled - quantile).abs())
    return blend * -F.logsigmoid(logits) + (1 - blend) * torch.relu(1 - logits)
