"""The sandbox: static policy, isolated processes, unit checks, fingerprints.

`validate(code)` runs all layers; `IsolatedRunner` is the reusable isolation for any untrusted job.
"""

from discovery.sandbox.validation import CheckError, ValidationReport, validate

__all__ = ["CheckError", "ValidationReport", "validate"]
