"""The inner loop: tasks that train a candidate loss with TRL and score it."""
