"""Seconds per proposal of the embedded llama.cpp proposer: the old server settings against the new, side by side.

    nice -n 10 python bench/proposer_speed.py --gguf ~/.cache/discovery-test/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --n 3

One server per setting, all loaded at once; proposal i of every setting runs back to back (ABAB...), so
a machine whose load drifts slows them alike. Same model, context (the library as baselines; round i
is generation i, as in the loop), proposer seed and validator (the real sandbox); a proposal's
seconds include its fix-ups. Settings:
  before  what the code did before (llama-cpp-python's server defaults: weight repacking on, half the
          cores for generation, logits of every prompt token kept)
  after   the defaults now (`discovery.proposer.factory.server_options`)
  +lookup after, plus prompt-lookup decoding (proposer.draft_tokens=10)
Prompt tokens reused = the prefix the server found already in its KV cache (its own log), of all prompt
tokens sent. Prints one row per setting and the ratio of seconds per proposal to `before`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from discovery import library  # noqa: E402
from discovery.candidate import Candidate, Origin, Status  # noqa: E402
from discovery.config import ProposerConfig, RunConfig  # noqa: E402
from discovery.inner_loop.task import TaskInfo  # noqa: E402
from discovery.proposer import ProposalContext  # noqa: E402
from discovery.proposer.accounting import Ledger, PriceTable  # noqa: E402
from discovery.proposer.factory import LlamaCppProposer, _client_options, server_options  # noqa: E402
from discovery.proposer.llamacpp_server import EmbeddedChatClient, LlamaCppServer, ServerOptions  # noqa: E402
from discovery.sandbox import validate  # noqa: E402

TASK = TaskInfo("synthetic", "a policy is trained with your loss on preference pairs and scored on held-out pairs",
                "the held-out preference accuracy of the trained policy", 0.1, "cheap")
HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit")
PROMPT_EVAL = re.compile(r"prompt eval time =\s+([\d.]+) ms /\s+(\d+) tokens")
EVAL = re.compile(r"^\S*\s*eval time =\s+([\d.]+) ms /\s+(\d+) runs", re.M)


@dataclass
class Tally:
    seconds: list[float] = field(default_factory=list)
    valid: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reused: int = 0
    prompt_ms: float = 0.0
    prompt_evaluated: int = 0
    eval_ms: float = 0.0
    eval_runs: int = 0


def settings(config: RunConfig, lookup: int) -> dict[str, tuple[ServerOptions, int]]:
    p = config.proposer
    before = ServerOptions(n_ctx=p.context_window, n_threads=None, n_threads_batch=None, seed=p.seed,
                           extra_bufts=True, logits_all=None, draft_tokens=0, verbose=True, passive_wait=False)
    after = replace(server_options(p), verbose=True)
    return {"before": (before, 1024), "after": (after, p.max_tokens),
            "+lookup": (replace(after, draft_tokens=lookup), p.max_tokens)}


def start(path: str, config: RunConfig, options: ServerOptions, max_tokens: int) -> LlamaCppProposer:
    p = replace(config.proposer, max_tokens=max_tokens, timeout=1800.0)  # a busy CPU: slow, not failed
    server = LlamaCppServer(path, options=options, start_timeout=600)
    client = EmbeddedChatClient(server, path, **_client_options(p, "text"))
    return LlamaCppProposer(server, client, validate, p, Ledger(None, None), PriceTable.build({}, local=True),
                            name="llamacpp")


def log_since(server: LlamaCppServer, offset: int) -> tuple[str, int]:
    text = Path(server.log_path).read_text(errors="replace")
    return text[offset:], len(text)


def add(tally: Tally, proposal, seconds: float, log: str) -> None:
    tally.seconds.append(seconds)
    tally.valid += int(proposal.valid)
    tally.attempts += len(proposal.attempts)
    tally.prompt_tokens += sum(c.prompt_tokens for c in proposal.calls)
    tally.completion_tokens += sum(c.completion_tokens for c in proposal.calls)
    tally.reused += sum(int(x) for x in HIT.findall(log))
    for ms, n in PROMPT_EVAL.findall(log):
        tally.prompt_ms, tally.prompt_evaluated = tally.prompt_ms + float(ms), tally.prompt_evaluated + int(n)
    for ms, n in EVAL.findall(log):
        tally.eval_ms, tally.eval_runs = tally.eval_ms + float(ms), tally.eval_runs + int(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", required=True, help="a local GGUF model")
    parser.add_argument("--n", type=int, default=3, help="proposals per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lookup", type=int, default=10, help="draft tokens of the +lookup setting")
    parser.add_argument("--only", nargs="*", help="a subset of: before after +lookup")
    args = parser.parse_args()
    config = RunConfig(proposer=ProposerConfig(model=args.gguf, seed=args.seed))
    chosen = {k: v for k, v in settings(config, args.lookup).items() if not args.only or k in args.only}
    baselines = [Candidate(name=loss.name, code=loss.code, origin=Origin.LIBRARY, status=Status.PROPOSED)
                 for loss in library.LOSSES]
    context = ProposalContext(task=TASK, baselines=baselines)
    print(f"{Path(args.gguf).name}: {args.n} proposals per setting, seed {args.seed}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    proposers = {name: start(args.gguf, config, opt, mt) for name, (opt, mt) in chosen.items()}
    tallies = {name: Tally() for name in proposers}
    offsets = dict.fromkeys(proposers, 0)
    try:
        for i in range(args.n):
            round_context = replace(context, generation=i + 1)  # as in the loop: the prompt says which generation
            for name, proposer in proposers.items():
                _, offsets[name] = log_since(proposer.server, 0)
                t0 = time.monotonic()
                proposal = proposer.propose(round_context)
                seconds = time.monotonic() - t0
                log, offsets[name] = log_since(proposer.server, offsets[name])
                add(tallies[name], proposal, seconds, log)
                print(f"  [{i + 1}/{args.n}] {name:8s} {seconds:6.1f}s {len(proposal.attempts)} attempt(s) "
                      f"{'valid' if proposal.valid else 'invalid'} {proposal.candidate.name}", flush=True)
    finally:
        for proposer in proposers.values():
            proposer.close()
    print_table(tallies, args.n)


def print_table(tallies: dict[str, Tally], n: int) -> None:
    base = sum(tallies["before"].seconds) / n if "before" in tallies else None
    print("\n| setting | s/proposal | vs before | attempts/proposal | valid | generation tok/s | prompt tok/s "
          "| prompt tokens reused |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t in tallies.items():
        mean = sum(t.seconds) / n
        ratio = f"{base / mean:.2f}x faster" if base and name != "before" else "-"
        gen = t.eval_runs / (t.eval_ms / 1000) if t.eval_ms else float("nan")
        pp = t.prompt_evaluated / (t.prompt_ms / 1000) if t.prompt_ms else float("nan")
        reused = f"{t.reused}/{t.prompt_tokens} ({t.reused / max(1, t.prompt_tokens):.0%})"
        print(f"| {name} | {mean:.1f} | {ratio} | {t.attempts / n:.1f} | {t.valid}/{n} | {gen:.1f} | {pp:.0f} "
              f"| {reused} |")


if __name__ == "__main__":
    main()
