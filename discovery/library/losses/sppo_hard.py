def sppo_hard(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta):
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    return (chosen - 0.5 / beta) ** 2 + (rejected + 0.5 / beta) ** 2
