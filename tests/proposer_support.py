"""The validator for proposer tests: the real sandbox (`discovery.sandbox.validate`), no stand-in."""

from __future__ import annotations

from discovery.sandbox import validate


def local_validate(code: str):
    """The sandbox's full validation (static policy, isolated child, unit checks, fingerprint)."""
    return validate(code)


def best_validator(run: bool = True):
    return validate
