import torch.nn.functional as F


def bco_pair(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    chosen = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected = beta * (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(chosen) - F.logsigmoid(-rejected)
