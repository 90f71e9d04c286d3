"""Proposers: turn what the archive knows into new candidate losses.

`make_proposer(config, validator)` builds the configured backend (llamacpp, openai, replay, symbolic);
`proposer.propose(ProposalContext)` returns a `Proposal` whose candidate already went through the
validator (and, for LLM backends, the fix-up loop); `proposer.stop_reason()` says when to stop.
"""

from discovery.proposer.base import (
    Attempt,
    LLMCall,
    Proposal,
    ProposalContext,
    Proposer,
    ProposerError,
    Validator,
)
from discovery.proposer.factory import BACKENDS, make_proposer

__all__ = ["BACKENDS", "Attempt", "LLMCall", "Proposal", "ProposalContext", "Proposer", "ProposerError",
           "Validator", "make_proposer"]
