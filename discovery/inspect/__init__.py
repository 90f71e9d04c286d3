"""Read-only views of a run: the archive table, one candidate, diffs, JSONL, and the HTML report."""
