"""Build the configured proposer: `make_proposer(config, validator)`."""

from __future__ import annotations

import os
import shlex
from dataclasses import replace

from discovery.config import ModelConfig, ProposerConfig, RunConfig
from discovery.proposer.accounting import Ledger, PriceTable
from discovery.proposer.base import Proposer, ProposerError, Validator
from discovery.proposer.client import ChatClient
from discovery.proposer.llm import LLMProposer

BACKENDS = ("llamacpp", "openai", "replay", "symbolic")


def make_proposer(config: RunConfig, validator: Validator) -> Proposer:
    """The configured proposer; `proposer.tune_constants` wraps an LLM one in the constant tuner."""
    proposer = _make(config, validator)
    p = config.proposer
    if p.tune_constants and p.backend in ("llamacpp", "openai"):
        from discovery.proposer.symbolic import SymbolicProposer
        from discovery.proposer.tuning import TuningProposer

        tuner = SymbolicProposer(validator, seed=p.seed, max_tries=1 + p.max_fix_attempts)
        return TuningProposer(proposer, tuner, p.tune_constants)
    return proposer


def model_config(p: ProposerConfig, m: ModelConfig) -> ProposerConfig:
    """The proposer settings of one model of `proposer.models` (what it leaves unset: the proposer's)."""
    prices = {**p.prices, m.model: list(m.prices)} if m.prices else p.prices
    return replace(p, backend=m.backend, model=m.model, base_url=m.base_url, api_key_env=m.api_key_env,
                   prices=prices, temperature=p.temperature if m.temperature is None else m.temperature,
                   max_tokens=m.max_tokens or p.max_tokens, n_threads=m.n_threads or p.n_threads, models=[])


def _ensemble(config: RunConfig, validator: Validator, ledger: Ledger) -> Proposer:
    from discovery.proposer.bandit import make_bandit
    from discovery.proposer.ensemble import EnsembleProposer

    arms: dict[str, Proposer] = {}
    try:
        for m in config.proposer.models:
            arms[m.model] = _single(replace(config, proposer=model_config(config.proposer, m)), validator, ledger)
    except BaseException:
        for arm in arms.values():
            arm.close()
        raise
    return EnsembleProposer(arms, make_bandit(config.proposer.bandit), ledger, seed=config.proposer.seed)


def _make(config: RunConfig, validator: Validator) -> Proposer:
    p = config.proposer
    if p.backend == "replay":
        from discovery.proposer.replay import ReplayProposer

        return ReplayProposer(p.replay_dir, validator)
    if p.backend == "symbolic":
        from discovery.proposer.symbolic import SymbolicProposer

        return SymbolicProposer(validator, seed=p.seed, max_tries=1 + p.max_fix_attempts)
    ledger = Ledger(config.budget.max_cost_usd, config.budget.max_tokens)  # one for all models: exact caps
    if p.models:
        return _ensemble(config, validator, ledger)
    return _single(config, validator, ledger)


def _single(config: RunConfig, validator: Validator, ledger: Ledger) -> Proposer:
    p = config.proposer
    if p.backend == "openai":
        client = ChatClient(p.base_url, os.environ.get(p.api_key_env, ""), p.model, **_client_options(p))
        return LLMProposer(client, validator, p, ledger, PriceTable.build(p.prices), name="openai")
    if p.backend == "llamacpp":
        return _llamacpp(config, validator, ledger)
    raise ProposerError(f"unknown proposer.backend '{p.backend}'; available: {', '.join(BACKENDS)}")


def llm_configs(p: ProposerConfig) -> list[ProposerConfig]:
    """The settings of each LLM the run talks to: every model of `proposer.models`, else the proposer's own."""
    return [model_config(p, m) for m in p.models] or [p]


def probe_endpoint(config: RunConfig) -> None:
    """A remote endpoint answers one token (seconds), or its one-line error stops the run before anything slow."""
    for p in llm_configs(config.proposer):
        if p.backend != "openai":
            continue
        client = ChatClient(p.base_url, os.environ.get(p.api_key_env, ""), p.model, **_client_options(p))
        named = f" ({p.model})" if config.proposer.models else ""
        try:
            client.probe(timeout=min(30.0, p.timeout))
        except ProposerError as exc:
            raise ProposerError(f"the openai proposer{named} does not answer: {exc}") from None
        finally:
            client.close()


def _client_options(p: ProposerConfig, response_format: str | None = None) -> dict:
    """The ChatClient settings both LLM backends take from the proposer config."""
    return dict(timeout=p.timeout, max_retries=p.max_retries, temperature=p.temperature, max_tokens=p.max_tokens,
                response_format=response_format or p.response_format, seed=p.seed)


def server_options(p: ProposerConfig):
    """The embedded server's settings (measured in bench/proposer_speed.py, see docs/proposers.md)."""
    from discovery.proposer.llamacpp_server import ServerOptions, usable_cores

    # Half the usable cores (the physical ones on SMT machines) for prompt and answer alike: the training
    # workers share the CPU, and a llama.cpp thread waiting for a descheduled sibling stalls every step.
    threads = p.n_threads or max(1, usable_cores() // 2)
    return ServerOptions(n_ctx=p.context_window, n_threads=threads, n_threads_batch=threads, seed=p.seed,
                         extra_bufts=p.cpu_repack, logits_all=False, draft_tokens=max(0, p.draft_tokens))


class LlamaCppProposer(LLMProposer):
    """The LLM proposer talking to its own embedded llama.cpp server; `close()` stops the server."""

    def __init__(self, server, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server = server

    def close(self) -> None:
        super().close()
        self.server.close()


def _llamacpp(config: RunConfig, validator: Validator, ledger: Ledger) -> Proposer:
    from discovery.proposer.llamacpp_server import (
        EmbeddedChatClient,
        LlamaCppServer,
        ensure_llama_cpp,
        resolve_model,
    )

    p = config.proposer
    ensure_llama_cpp()
    path = resolve_model(p.model)
    launcher = shlex.split(p.server_command) if p.server_command else None
    server = LlamaCppServer(path, options=server_options(p), start_timeout=max(p.timeout, 60.0), launcher=launcher)
    try:
        # Measured (bench/proposer_validity.py): grammar-constrained JSON makes small local models write
        # empty or broken "code" strings, so "auto" means text + robust extraction here; "json_object"
        # (llama-cpp-python's JSON mode with our schema) stays available.
        fmt = "text" if p.response_format == "auto" else p.response_format
        client = EmbeddedChatClient(server, p.model, **_client_options(p, fmt))
        return LlamaCppProposer(server, client, validator, p, ledger, PriceTable.build(p.prices, local=True),
                                name="llamacpp")
    except BaseException:
        server.close()
        raise
