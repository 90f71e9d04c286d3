"""Per-call cost from a price table, and the running totals behind budget.max_cost_usd / max_tokens."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

from discovery.proposer.base import LLMCall

# USD per 1M tokens: [prompt, completion]. proposer.prices overrides or extends it; local models cost 0.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4": (30.0, 60.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
}


@dataclass
class PriceTable:
    prices: dict[str, tuple[float, float]]
    local: bool = False  # a model we run ourselves: always free

    @classmethod
    def build(cls, overrides: dict[str, list[float]] | None, local: bool = False) -> PriceTable:
        table = dict(DEFAULT_PRICES)
        table.update({k: (float(v[0]), float(v[1])) for k, v in (overrides or {}).items()})
        return cls(table, local)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        if self.local:
            return 0.0
        price = self.prices.get(model)
        if price is None:
            warnings.warn(f"no price for model '{model}': its cost counts as 0; set proposer.prices", stacklevel=2)
            self.prices[model] = (0.0, 0.0)
            return 0.0
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


class Ledger:
    """Running totals of all calls; thread-safe, so several proposals may be in flight at once."""

    def __init__(self, max_cost_usd: float | None = None, max_tokens: int | None = None):
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.cost_usd = 0.0
        self.tokens = 0
        self.calls = 0
        self._lock = threading.Lock()

    def record(self, call: LLMCall) -> None:
        with self._lock:
            self.cost_usd += call.cost_usd
            self.tokens += call.tokens
            self.calls += 1

    def add_spent(self, cost_usd: float, tokens: int) -> None:
        """Count spending from before this process (a resumed run)."""
        with self._lock:
            self.cost_usd += cost_usd
            self.tokens += tokens

    def exceeded(self) -> str | None:
        with self._lock:
            if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
                return f"budget.max_cost_usd reached (${self.cost_usd:.4f} of ${self.max_cost_usd:.4f})"
            if self.max_tokens is not None and self.tokens >= self.max_tokens:
                return f"budget.max_tokens reached ({self.tokens} of {self.max_tokens} tokens)"
        return None
