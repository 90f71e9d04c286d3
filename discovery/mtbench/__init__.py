"""MT-Bench scoring: FastChat's 80 two-turn questions, answered by a policy, rated by an LLM judge."""
