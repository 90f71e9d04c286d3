import torch.nn.functional as F


def padll(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    base_decay = 0.9
    mismatch_penalty = 0.5
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    logits = beta * margin
    mismatches = (logits < 0).type_as(logits)
    decay = base_decay * (1 - mismatches * mismatch_penalty)
    return decay * -F.logsigmoid(logits)
