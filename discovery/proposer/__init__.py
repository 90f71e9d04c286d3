"""Proposers: turn what the archive knows into new candidate losses."""
