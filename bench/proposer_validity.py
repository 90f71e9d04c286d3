"""Proposer validity on local GGUF models: share valid after the fix-up loop, share new, seconds each.

    python bench/proposer_validity.py --models 0.5b 1.5b --n 10

Models come from ../shared/tools/get-test-llm (or --gguf PATH). The context is the reference library
as baselines (no fitness: nothing here is trained). "new" = valid and its sandbox fingerprint differs
from every library loss's fingerprint. Prints one table row per model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from discovery import library  # noqa: E402
from discovery.candidate import Candidate, Origin, Status  # noqa: E402
from discovery.config import ProposerConfig, RunConfig  # noqa: E402
from discovery.inner_loop.task import TaskInfo  # noqa: E402
from discovery.proposer import ProposalContext, make_proposer  # noqa: E402

TASK = TaskInfo("synthetic", "a policy is trained with your loss on preference pairs and scored on held-out pairs",
                "the held-out preference accuracy of the trained policy", 0.1, "cheap")


def validator():
    try:
        from discovery.sandbox import validate
    except ImportError:  # before the sandbox lands: the tests' stand-in (static checks + a probe run)
        sys.path.insert(0, str(REPO / "tests"))
        from proposer_support import local_validate

        return lambda code: local_validate(code, run=True), "stand-in"
    return validate, "discovery.sandbox.validate"


def gguf(model: str) -> str:
    tool = REPO.parent / "shared" / "tools" / "get-test-llm"
    out = subprocess.run([sys.executable, str(tool), model], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def run(path: str, n: int, validate, args) -> dict:
    p = ProposerConfig(backend="llamacpp", model=path, context_window=args.context_window, max_tokens=args.max_tokens,
                       n_threads=args.threads, max_fix_attempts=args.fix, temperature=args.temperature,
                       seed=args.seed, response_format=args.response_format)
    config = RunConfig(proposer=p)
    library_prints = {validate(loss.code).fingerprint for loss in library.LOSSES}
    baselines = [Candidate(name=loss.name, code=loss.code, origin=Origin.LIBRARY, status=Status.PROPOSED)
                 for loss in library.LOSSES]
    context = ProposalContext(task=TASK, baselines=baselines)
    start = time.monotonic()
    with make_proposer(config, validate) as proposer:
        cold = time.monotonic() - start
        rows = []
        for i in range(n):
            t0 = time.monotonic()
            proposal = proposer.propose(context)
            seconds = time.monotonic() - t0
            first = proposal.attempts[0].verdict == "valid"
            new = proposal.valid and proposal.candidate.fingerprint not in library_prints
            rows.append((proposal.valid, first, new, seconds, len(proposal.attempts)))
            print(f"  [{i + 1}/{n}] {'valid' if proposal.valid else 'invalid'} "
                  f"first={first} new={new} {seconds:.1f}s attempts={len(proposal.attempts)} "
                  f"{proposal.candidate.name}: {proposal.candidate.reason[:120]}", flush=True)
    return {"n": n, "valid": sum(r[0] for r in rows) / n, "first": sum(r[1] for r in rows) / n,
            "new": sum(r[2] for r in rows) / n, "seconds": sum(r[3] for r in rows) / n,
            "attempts": sum(r[4] for r in rows) / n, "cold": cold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["0.5b", "1.5b"])
    parser.add_argument("--gguf", help="a local GGUF instead of --models")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--fix", type=int, default=2, help="proposer.max_fix_attempts")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: llama.cpp's)")
    parser.add_argument("--context-window", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=768)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--response-format", default="auto", help="proposer.response_format")
    args = parser.parse_args()
    validate, which = validator()
    print(f"validator: {which}; n={args.n}; max_fix_attempts={args.fix}; threads={args.threads}; "
          f"response_format={args.response_format}")
    models = [(args.gguf, args.gguf)] if args.gguf else [(m, gguf(m)) for m in args.models]
    results = []
    for label, path in models:
        print(f"{label}: {path}", flush=True)
        results.append((label, run(path, args.n, validate, args)))
    print("\n| model | n | valid after fix-up | valid first try | new (not a library fingerprint) "
          "| attempts/proposal | s/proposal | cold start s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results:
        print(f"| {label} | {r['n']} | {r['valid']:.0%} | {r['first']:.0%} | {r['new']:.0%} | {r['attempts']:.2f} "
              f"| {r['seconds']:.1f} | {r['cold']:.1f} |")


if __name__ == "__main__":
    main()
