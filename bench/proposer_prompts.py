"""What the LLM writes for one fixed archive context: valid %, new %, off-contract %, tokens per proposal.

    nice -n 10 python bench/proposer_prompts.py --n 12 --label after
    nice -n 10 python bench/proposer_prompts.py --n 12 --label before --code /tmp/before   # an older tree

`--code ROOT` imports `discovery` (and its prompts) from another source tree, so the prompts of two commits
are compared with this one script on the same seeds, the same model and the same context. The context is
the reference library as baselines, with the behaviour measured in docs/results.md ("Headroom on the
synthetic proxy", seed-paired sweep over beta 0.05/0.1/0.2) as their fitness, KL and frontier; the two
parents are `robust` and `aqfl`. "new" = valid and its sandbox fingerprint differs from every library loss;
"off-contract" = valid but its loss changes when both policy log-probs move by the same amount (it depends
on more than the margin: the raw log-prob "fluency" terms); tokens = prompt + completion of every call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
GGUF = Path.home() / ".cache" / "discovery-test" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

# docs/results.md, "Headroom on the synthetic proxy": fitness and KL at the best beta, fitness per beta
HEADROOM = {
    "dpo": (0.1, -0.7670, 4.43, {0.05: -0.8296, 0.1: -0.7670, 0.2: -0.7895}),
    "cdpo": (0.1, -0.7682, 3.83, {0.05: -0.7998, 0.1: -0.7682, 0.2: -0.8275}),
    "robust": (0.2, -0.7785, 3.92, {0.05: -0.8468, 0.1: -0.7954, 0.2: -0.7785}),
    "aqfl": (0.2, -0.7794, 3.51, {0.05: -0.8324, 0.1: -0.7942, 0.2: -0.7794}),
    "ipo": (0.05, -0.8078, 2.72, {0.05: -0.8078, 0.1: -0.9594, 0.2: -1.1151}),
}
PARENTS = ("robust", "aqfl")


def context(validate):
    from discovery import library
    from discovery.candidate import Candidate, Fitness, Origin, Status
    from discovery.inner_loop.synthetic import DESCRIPTION, FITNESS
    from discovery.inner_loop.task import TaskInfo
    from discovery.proposer import ProposalContext

    def member(i: int, loss) -> Candidate:
        report = validate(loss.code)
        fields = dict(name=loss.name, code=loss.code, origin=Origin.LIBRARY, id=i + 1, fingerprint=report.fingerprint,
                      diagnostics=dict(report.diagnostics or {}), status=Status.PROPOSED)
        if loss.name in HEADROOM:
            _, fit, kl, _ = HEADROOM[loss.name]
            fields.update(status=Status.EVALUATED, fitness=Fitness(fit, fit - 0.01, fit + 0.01, 10),
                          metrics={"kl": kl, "heldout_accuracy": 0.67})
        return Candidate(**fields)

    members = [member(i, loss) for i, loss in enumerate(library.LOSSES)]
    by_name = {c.name: c for c in members}
    options = dict(task=TaskInfo("synthetic", DESCRIPTION, FITNESS, 0.1, "cheap"), baselines=members,
                   parents=[by_name[n] for n in PARENTS])
    if "frontiers" in ProposalContext.__dataclass_fields__:  # trees that show the per-beta frontier
        options["frontiers"] = {by_name[n].id: [(b, f, None) for b, f in sorted(HEADROOM[n][3].items())]
                                for n in HEADROOM}
    return ProposalContext(**options), {c.fingerprint for c in members}


def run(args) -> dict:
    from discovery.config import from_dict
    from discovery.proposer import make_proposer
    from discovery.sandbox import validate

    config = from_dict({"proposer": {"backend": "llamacpp", "model": str(args.gguf), "seed": args.seed,
                                     "context_window": args.context_window, "max_tokens": args.max_tokens,
                                     "n_threads": args.threads, "max_fix_attempts": args.fix,
                                     "timeout": args.timeout}})
    ctx, library_prints = context(validate)
    library_names = {c.fingerprint: c.name for c in ctx.baselines}
    rows = []
    with make_proposer(config, validate) as proposer:
        for i in range(args.n):
            t0 = time.monotonic()
            proposal = proposer.propose(ctx)
            c = proposal.candidate
            diag = c.diagnostics or {}
            row = {"valid": proposal.valid, "new": proposal.valid and c.fingerprint not in library_prints,
                   "off_contract": proposal.valid and diag.get("margin_only") is False,
                   "operator": diag.get("operator", "full"), "attempts": len(proposal.attempts),
                   "tokens": sum(call.prompt_tokens + call.completion_tokens for call in proposal.calls),
                   "completion_tokens": sum(call.completion_tokens for call in proposal.calls),
                   "seconds": time.monotonic() - t0, "name": c.name, "reason": c.reason[:160],
                   "same_as": library_names.get(c.fingerprint, "") if proposal.valid else "",
                   "first_try": f"{proposal.attempts[0].verdict}: {proposal.attempts[0].reason[:160]}"}
            rows.append(row)
            print(f"  [{i + 1}/{args.n}] {json.dumps(row)}", flush=True)
    return {"label": args.label, "n": args.n, "rows": rows}


def table(result: dict) -> str:
    rows, n = result["rows"], result["n"]
    share = lambda key: sum(r[key] for r in rows) / n  # noqa: E731
    mean = lambda key: sum(r[key] for r in rows) / n  # noqa: E731
    ops = {}
    for r in rows:
        ops.setdefault(r["operator"], []).append(r["valid"])
    per_op = ", ".join(f"{op} {sum(v)}/{len(v)}" for op, v in sorted(ops.items()))
    return (f"| {result['label']} | {n} | {share('valid'):.0%} | {share('new'):.0%} | {share('off_contract'):.0%} "
            f"| {mean('attempts'):.2f} | {mean('tokens'):.0f} | {mean('completion_tokens'):.0f} "
            f"| {mean('seconds'):.1f} | {per_op} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=REPO, help="the source tree whose discovery package to use")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--gguf", type=Path, default=GGUF)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--fix", type=int, default=2, help="proposer.max_fix_attempts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context-window", type=int, default=8192)
    parser.add_argument("--max-tokens", type=int, default=768)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0, help="proposer.timeout (a slow shared CPU)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    load = os.getloadavg()
    result = run(args)
    result["load"] = [load, os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(f"code: {args.code}; load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}")
    print("| prompts | n | valid | new | off-contract | attempts | tokens/proposal | completion tokens "
          "| s/proposal | valid per operator |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(table(result))


if __name__ == "__main__":
    main()
