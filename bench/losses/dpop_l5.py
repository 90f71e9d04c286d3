import torch
import torch.nn.functional as F


def dpop_l5(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    # DPO-Positive (Pal et al. 2024, arXiv:2402.13228, eq. 3): DPO's margin minus lambda * max(0, log ref/policy
    # of the chosen completion), inside the log-sigmoid; lambda = 5 here (a sensitivity check: the paper and common
    # reimplementations use 50). Zero extra term while the chosen log-ratio stays >= 0.
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    penalty = torch.clamp(-chosen, min=0.0)
    return -F.logsigmoid(beta * (chosen - rejected - 5.0 * penalty))
