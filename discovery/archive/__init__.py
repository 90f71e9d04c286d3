"""The archive: a durable SQLite store of runs, candidates, evaluations and LLM calls."""
