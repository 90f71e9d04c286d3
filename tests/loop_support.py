"""In-process seams for fast tests of the loop's decisions (no training, no sandbox child).

`TableExecutor` is an `Executor` whose results come from a table `name -> fitness per seed` (or a function);
`ScriptedProposer` is a `Proposer` that hands out the given candidates in order. The loop, the archive
(real SQLite) and the selection strategy under test are the real ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future

from discovery.candidate import Candidate, EvalResult, Origin, Status
from discovery.config import BudgetConfig, EvalConfig, ProposerConfig, RunConfig
from discovery.executors import Executor
from discovery.executors.layout import Layout
from discovery.inner_loop.task import Fidelity, TaskInfo
from discovery.proposer.base import LLMCall, Proposal, ProposalContext, Proposer, ProposerError

TASK = TaskInfo("synthetic", "a toy preference task", "held-out preference accuracy", 0.1, "cheap")

Fitness = Callable[[str, int, Fidelity], float | None]


def loss_code(name: str, offset: float = 0.0) -> str:
    """A distinct, well-formed loss per name (the table executor never runs it)."""
    return (f"import torch.nn.functional as F\n\n\ndef {name}(policy_chosen_logps, policy_rejected_logps, "
            f"reference_chosen_logps, reference_rejected_logps, beta):\n"
            f"    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - "
            f"reference_rejected_logps)\n    return -F.logsigmoid(beta * logits) + {offset!r}\n")


def name_of(code: str) -> str:
    found = re.search(r"^def (\w+)\(", code, re.M)
    assert found, code
    return found.group(1)


class TableExecutor(Executor):
    """Fitness from `table[name]` (a value, a list indexed by seed, or a function of seed and fidelity)."""

    def __init__(self, table: dict[str, object], workers: int = 2, fail: set[str] = frozenset()):
        self.table, self.fail = table, set(fail)
        self.layout = Layout(workers=workers, threads_per_worker=1)
        self.jobs: list[tuple[str, int, str]] = []  # (name, seed, fidelity) in submission order

    def submit(self, candidate_id: int, code: str, seed: int, fidelity: Fidelity) -> Future[EvalResult]:
        name = name_of(code)
        self.jobs.append((name, seed, fidelity.name))
        future: Future[EvalResult] = Future()
        if name in self.fail:
            future.set_result(EvalResult(seed=seed, fitness=None, fidelity=fidelity.name, beta=fidelity.beta,
                                         ok=False, reason="loss is nan"))
            return future
        value = self.table[name]
        if callable(value):
            value = value(seed, fidelity)
        elif isinstance(value, list | tuple):
            value = value[seed % len(value)]
        future.set_result(EvalResult(seed=seed, fitness=float(value), fidelity=fidelity.name, beta=fidelity.beta,
                                     metrics={"kl": 0.1}, steps=1))
        return future

    def close(self) -> None:
        pass

    def seeds_of(self, name: str, fidelity: str | None = None) -> list[int]:
        return [s for n, s, f in self.jobs if n == name and (fidelity is None or f == fidelity)]


class ScriptedProposer(Proposer):
    """Proposes the given names in order (valid code), then says it is done."""

    name = "scripted"

    def __init__(self, names: list[str], cost_usd: float = 0.0, tokens: int = 0):
        self.names = list(names)
        self.cost_usd, self.tokens = cost_usd, tokens  # what each proposal's one LLM call costs
        self.proposed: list[str] = []
        self.contexts: list[ProposalContext] = []
        self.resumed: list[Candidate] | None = None
        self.spent: tuple[float, int] | None = None

    def propose(self, context: ProposalContext) -> Proposal:
        self.contexts.append(context)
        name = self.names[len(self.proposed)]
        self.proposed.append(name)
        if name.startswith("raise"):
            raise ProposerError(f"endpoint gone ({name})")
        call = LLMCall(model="m", prompt_hash="h", prompt_tokens=self.tokens, completion_tokens=0, latency_s=0.0,
                       cost_usd=self.cost_usd, verdict="valid")
        return Proposal(Candidate(name=name, code=loss_code(name, len(self.proposed)), origin=Origin.LLM,
                                  proposer=self.name, generation=context.generation, status=Status.PROPOSED,
                                  parent_ids=tuple(c.id for c in context.parents if c.id is not None)),
                        calls=[call])

    def stop_reason(self) -> str | None:
        return "scripted proposals done" if len(self.proposed) >= len(self.names) else None

    def resume(self, stored: list[Candidate]) -> None:
        self.resumed = list(stored)
        self.proposed = [c.name for c in stored]

    def count_spent(self, cost_usd: float, tokens: int) -> None:
        self.spent = (cost_usd, tokens)


def fast_config(*, budget: dict | None = None, proposer: dict | None = None, **eval_overrides) -> RunConfig:
    """Small plan: 2 seeds, 1 screen seed, 2 re-evaluation seeds, baseline dpo only, no wall clock; `budget`,
    `proposer` and the keyword arguments (eval) set fields of those sections."""
    evaluation = {"baselines": ("dpo",), "seeds": 2, "screen_seeds": 1, "reeval_seeds": 2, "promote_fraction": 0.5,
                  "racing": "off", "heldout_instances": (), "betas": (),  # one beta, all seeds at once, no held-out
                  **eval_overrides}  # (the defaults: tests/test_loop_racing.py)
    return RunConfig(eval=EvalConfig(**evaluation), budget=BudgetConfig(**{"wall_time": None, **(budget or {})}),
                     proposer=ProposerConfig(**(proposer or {})))
