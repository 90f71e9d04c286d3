import torch
import torch.nn.functional as F


def aql(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    tau = 0.05
    percentile = 0.5
    moving_quantile_weight = 0.01
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = beta * margin
    quantile = percentile + moving_quantile_weight * (torch.sigmoid((logits / tau).mean()) - percentile)
    weights = torch.sigmoid(-(logits / tau - quantile))
    return weights * -F.logsigmoid(logits) + (1 - weights) * torch.relu(1 - logits)
