"""The LLM proposer: render the prompt, ask, extract, validate, and repair with the validator's error."""

from __future__ import annotations

from dataclasses import replace

from discovery import contract
from discovery.candidate import Candidate, Origin, Status, code_hash
from discovery.config import ProposerConfig
from discovery.proposer import context as ctx
from discovery.proposer import operators, templates
from discovery.proposer.accounting import Ledger, PriceTable
from discovery.proposer.base import (
    Attempt,
    LLMCall,
    Proposal,
    ProposalContext,
    Proposer,
    ProposerError,
    Validator,
    attach_paid_calls,
    candidate_from,
    prompt_hash,
)
from discovery.proposer.client import ChatClient, ChatReply, estimate_tokens
from discovery.proposer.extract import normalize, read
from discovery.proposer.novelty import duplicate_of

_ANSWER_MARGIN = 128  # tokens kept free beyond max_tokens for chat-template overhead
_TEMPLATES = {"full": "propose", "diff": "mutate", "crossover": "crossover"}  # operator -> prompts/<name>.j2


class LLMProposer(Proposer):
    """Any chat model behind the OpenAI API; fix-up attempts are free of the training budget."""

    def __init__(self, client: ChatClient, validator: Validator, config: ProposerConfig, ledger: Ledger,
                 prices: PriceTable, name: str = "openai"):
        self.client = client
        self.validator = validator
        self.config = config
        self.ledger = ledger
        self.prices = prices
        self.name = name
        self.mix = operators.check_mix(config.operators)
        self._proposals = 0  # proposals asked for so far: the seeded operator choice of the next one

    # ------------------------------------------------------------------ prompts

    def system_prompt(self, task) -> str:
        return templates.render("system", contract=contract.DESCRIPTION,
                                task_description=task.description, fitness_description=task.fitness_description,
                                beta=task.beta, betas=task.betas, params=contract.PARAMS)

    def propose_prompt(self, context: ProposalContext, system: str, choice: operators.Choice | None = None) -> str:
        """The first request of a proposal: the operator's template (propose, mutate, crossover) over the archive."""
        budget = self.config.context_window - self.config.max_tokens - _ANSWER_MARGIN - estimate_tokens(system)
        choice = choice or operators.Choice("full")
        if choice.parents:  # an edit or a crossover shows the parents it works on (and their measured behaviour)
            context = replace(context, parents=list(choice.parents))

        def render(shown: dict) -> str:
            return templates.render(_TEMPLATES[choice.operator], generation=context.generation, **shown)

        shown = ctx.fit(ctx.entries(context), lambda s: estimate_tokens(render(s)), budget)
        return render(shown)

    def fix_prompt(self, attempt: Attempt, edit_of: str | None = None) -> str:
        """A fix-up request; `edit_of` is the code a SEARCH/REPLACE edit that did not apply was meant for."""
        code = edit_of if edit_of is not None else attempt.code
        return templates.render("fix", loss_name=attempt.name, code=code.strip(), reason=attempt.reason,
                                params=contract.PARAMS, duplicate=attempt.verdict == "duplicate",
                                edit=edit_of is not None)

    def temperature(self, kind: str) -> float:
        """The sampling temperature of a request: per operator, "fix" for fix-ups, else proposer.temperature."""
        return float(self.config.temperatures.get(kind, self.config.temperature))

    # ------------------------------------------------------------------ the loop

    def propose(self, context: ProposalContext) -> Proposal:
        choice = operators.choose(self.mix, context, self.config.seed, self._proposals)
        self._proposals += 1
        system = {"role": "system", "content": self.system_prompt(context.task)}
        messages = [system, {"role": "user", "content": self.propose_prompt(context, system["content"], choice)}]
        attempts: list[Attempt] = []
        calls: list[LLMCall] = []
        report = None
        base = choice.parents[0].code if choice.operator == "diff" else None  # what an edit applies to
        for index in range(1 + max(0, self.config.max_fix_attempts)):
            if index and self.ledger.exceeded():
                break
            reply = None
            try:
                reply = self.client.complete(messages, temperature=self.temperature("fix" if index else
                                                                                    choice.operator))
                attempt, report, failed_edit = self._judge(index, messages, reply, context, base)
            except Exception as exc:  # what was bought before the failure is still stored (the loop reads it)
                if reply is not None:
                    calls.append(self._call(messages, reply, "error"))
                attach_paid_calls(exc, calls)
                raise
            calls.append(attempt.call)
            attempts.append(attempt)
            if attempt.verdict == "valid":
                break
            base = base if failed_edit else attempt.code or base
            fix = self.fix_prompt(attempt, base if failed_edit else None)
            messages = [system, {"role": "user", "content": fix}]
        candidate = self._candidate(context, attempts, report, choice)
        return Proposal(candidate=candidate, calls=calls, attempts=attempts, report=report)

    def _judge(self, index: int, messages, reply: ChatReply, context: ProposalContext, base: str | None = None):
        found, was_edit = read(reply.text, base)
        found.code, edits = normalize(found.code) if found.ok else (found.code, [])
        report = None
        if not found.ok and reply.finish_reason == "length":
            verdict = "truncated"
            reason = (f"the answer was cut off at max_tokens={self.config.max_tokens} before it was complete; "
                      "answer with shorter thought and code")
        elif not found.ok:
            verdict, reason = "unparseable", found.reason
        else:
            report = self.validator(found.code)
            verdict = "valid" if report.valid else "invalid"
            reason = "" if report.valid else report.summary()
            if report.valid and self.config.retry_duplicates:
                original, _ = duplicate_of(context.known_losses, report.fingerprint, code_hash(found.code),
                                           report.probe_values, context.duplicate_distance)
                if original is not None:
                    verdict = "duplicate"
                    reason = (f"it trains exactly like the known loss `{original.name}` (the same gradients, up to "
                              "a constant added or a constant factor), so it is not new")
        call = self._call(messages, reply, verdict)
        attempt = Attempt(index=index, kind="fix" if index else "propose", prompt_hash=call.prompt_hash,
                          reply=reply.text, verdict=verdict, reason=reason, name=found.name, code=found.code,
                          thought=found.thought,
                          call=call, fingerprint=report.fingerprint if report else None, edits=edits)
        return attempt, report, was_edit and not found.ok

    def _call(self, messages, reply: ChatReply, verdict: str) -> LLMCall:
        """The accounting record of one answered request, counted in the ledger."""
        call = LLMCall(model=self.config.model, prompt_hash=prompt_hash(messages), prompt_tokens=reply.prompt_tokens,
                       completion_tokens=reply.completion_tokens, latency_s=reply.latency_s,
                       cost_usd=self.prices.cost(self.config.model, reply.prompt_tokens, reply.completion_tokens),
                       verdict=verdict, reply=reply.text, finish_reason=reply.finish_reason)
        self.ledger.record(call)
        return call

    def count_spent(self, cost_usd: float, tokens: int) -> None:
        self.ledger.add_spent(cost_usd, tokens)

    def _candidate(self, context: ProposalContext, attempts: list[Attempt], report,
                   choice: operators.Choice | None = None) -> Candidate:
        valid = attempts[-1].verdict in ("valid", "duplicate")  # a duplicate is valid code: the loop stores it so
        if not valid and not attempts[-1].reason:
            attempts[-1] = replace(attempts[-1], reason="the budget cap stopped the fix-up loop")
        last = attempts[-1]
        with_code = next((a for a in reversed(attempts) if a.code), last)
        final_report = report if with_code is last else None
        choice = choice or operators.Choice("full")
        parents = choice.parents or context.parents
        candidate = candidate_from(
            final_report,
            name=with_code.name or "unnamed", code=with_code.code, thought=with_code.thought, origin=Origin.LLM,
            parent_ids=tuple(c.id for c in parents if c.id is not None), generation=context.generation,
            proposer=self.name, model=self.config.model, status=Status.PROPOSED if valid else Status.INVALID,
            reason="" if valid else ctx.one_line(f"after {len(attempts)} attempt(s): {last.reason}", 500),
        )
        return replace(candidate, diagnostics={**candidate.diagnostics, "operator": choice.operator})

    def probe(self) -> None:
        """A one-token answer before any slow work: wrong URL, key or model (or a crashing server) fail here."""
        try:
            self.client.probe(timeout=min(30.0, self.config.timeout))
        except ProposerError as exc:
            raise ProposerError(f"the {self.name} proposer does not answer: {exc}") from None

    def stop_reason(self) -> str | None:
        return self.ledger.exceeded()

    def close(self) -> None:
        self.client.close()
