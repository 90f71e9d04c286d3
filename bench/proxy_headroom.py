"""How much room does the synthetic proxy task leave above DPO? DPO at other effective betas, same harness.

Re-evaluates DPO and -logsigmoid(c * beta * margin) for several c on the experiment's fresh seeds, with the
run config of an experiment's arm-seed, and prints each against DPO paired by seed. If no c beats c = 1 (and
no library loss beats DPO, see the experiment), the task's optimum sits at DPO and small gains are all
there is to find.

    python bench/proxy_headroom.py --run bench/results/experiment/runs/symbolic-seed0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import discovery_experiment as experiment  # noqa: E402

from discovery import library  # noqa: E402

HEAD = ("import torch.nn.functional as F\n\n\ndef scaled_dpo(policy_chosen_logps, policy_rejected_logps, "
        "reference_chosen_logps, reference_rejected_logps, beta):\n"
        "    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="an experiment run dir (its config is used)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.5, 2.0, 4.0, 8.0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(1000, 1005)))
    p.add_argument("--cache", default="bench/results/experiment/headroom-cache.json")
    p.add_argument("--workers", type=int, default=2)
    opts = p.parse_args(argv)
    config = experiment.analyse_run(Path(opts.run), 1)["config"]
    entries = {"dpo": library.get("dpo").code}
    entries |= {f"dpo, beta x{c:g}": HEAD + f"    return -F.logsigmoid({c} * beta * margin)\n" for c in opts.scales}
    fresh = experiment.reevaluate(entries, config, opts.seeds, Path(opts.cache), opts.workers)
    print(f"\nseeds {opts.seeds}; paired by seed against DPO (beta x1)")
    for label, s in fresh.items():
        c = experiment.compare(s["by_seed"], fresh["dpo"]["by_seed"])
        print(f"{label:16s} {s['mean']:+.4f} ± {s['ci_half']:.4f}   diff {c['diff']:+.4f}  z {c['z']:+.1f}")
    return fresh


if __name__ == "__main__":
    main()
