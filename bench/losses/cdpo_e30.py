import torch.nn.functional as F


def cdpo_e30(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    eps = 0.3  # the task's flip rate in the label_noise=0.3 setting (rDPO/cDPO assume it known)
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -(1 - eps) * F.logsigmoid(beta * margin) - eps * F.logsigmoid(-beta * margin)
