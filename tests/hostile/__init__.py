"""Hostile jobs and candidates for the sandbox tests."""
