"""discovery: let an LLM discover preference-optimization losses (DiscoPOP), trained with TRL."""

__version__ = "0.1.0"
