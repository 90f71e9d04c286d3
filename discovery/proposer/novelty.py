"""Is a proposal new? Its behaviour compared with every stored loss (exact fingerprint, code, gradient probes)."""

from __future__ import annotations

from dataclasses import dataclass

from discovery.sandbox.fingerprint import distance


@dataclass(frozen=True)
class KnownLoss:
    """A stored loss (valid, not itself a duplicate) that a new proposal must differ from."""

    id: int
    name: str
    fingerprint: str | None
    code_hash: str
    probes: tuple[float, ...] = ()


def duplicate_of(known: list[KnownLoss], fingerprint: str | None, code_hash: str, probes,
                 max_distance: float) -> tuple[KnownLoss | None, str]:
    """The first known loss this one duplicates, and why; (None, "") when it is new.

    Exact: the same behavioural fingerprint or the same code. Near: gradient probes within `max_distance`
    (a loss plus a constant, or times a positive constant, trains like the original: Adam ignores the scale).
    """
    for k in known:
        if (fingerprint and k.fingerprint == fingerprint) or k.code_hash == code_hash:
            return k, f"fingerprint {fingerprint}" if fingerprint and k.fingerprint == fingerprint else "same code"
    if probes and max_distance > 0:
        for k in known:
            gap = distance(probes, k.probes)
            if gap < max_distance:
                return k, f"same gradients up to a constant factor, probe distance {gap:.1e}"
    return None, ""
