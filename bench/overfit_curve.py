"""Over-optimisation under label noise on the synthetic proxy: gold reward vs epoch, DPO vs robust losses.

One in-process run per (loss, beta, seed) trains for --epochs passes over the task's train pairs (constant
learning rate) and scores the policy after every --every epochs (the task's own score_policy: gold reward of
sampled held-out completions, KL); it also reports how well the policy fits the train labels, split into
pairs whose label follows the gold reward ("clean") and pairs whose label contradicts it ("flipped": a label
flip or a near-tie that went the wrong way). A loss that fits the flipped labels as well as the clean ones
has memorised the noise; rDPO and cDPO are meant not to (Chowdhury et al. 2024, arXiv:2403.00409).

    nice -n 10 python bench/overfit_curve.py --set task.options.label_noise=0.3 --set task.options.train_pairs=256 \
        --epochs 16 --every 2 --losses dpo --extra bench/losses/robust_e30.py --betas 0.1 --seeds 0 1
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from discovery import library  # noqa: E402


def label_fit(policy, train, pad_token_id: int) -> tuple[float, float]:
    """Share of train pairs whose implicit-reward margin follows the given label: (clean pairs, flipped pairs)."""
    import torch

    from discovery.inner_loop.trainer import reference_logps

    chosen, rejected = reference_logps(policy, train, pad_token_id, batch_size=256)
    margin = (chosen - torch.tensor(train["ref_chosen_logps"])) - (rejected - torch.tensor(train["ref_rejected_logps"]))
    flipped = torch.tensor(train["gold_chosen"]) < torch.tensor(train["gold_rejected"])
    fits = (margin > 0).float()
    return fits[~flipped].mean().item(), fits[flipped].mean().item()


def curve(task, loss_fn, beta: float, seed: int, epochs: int, every: int) -> list[dict]:
    """Train `epochs` passes, scoring after every `every` epochs: one row per checkpoint (epoch 0 = reference)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from discovery.inner_loop.scoring import score_policy
    from discovery.inner_loop.synthetic import dpo_config
    from discovery.inner_loop.trainer import CandidateDPOTrainer

    state = task.load()
    per_epoch = -(-len(state.train) // task.config.train.per_device_train_batch_size)
    policy = copy.deepcopy(state.reference)
    rows = []

    def score(epoch: int) -> None:
        s = score_policy(policy, state.reference, state.language, state.eval_prompts, task.options.completion_len,
                         seed, state.heldout, state.tokenizer.pad_token_id)
        clean, flipped = label_fit(policy, state.train, state.tokenizer.pad_token_id)
        rows.append({"epoch": epoch, "gold": s["fitness"], "kl": s["kl"], "fit_clean": clean, "fit_flipped": flipped})

    class Checkpoints(TrainerCallback):
        def on_step_end(self, args, st, control, **kwargs):
            if st.global_step % (per_epoch * every) == 0:
                score(st.global_step // per_epoch)
                policy.train()

    score(0)
    args = dpo_config(task.config.train, seed, beta, 1.0, len(state.train))
    args.max_steps = per_epoch * epochs
    trainer = CandidateDPOTrainer(policy, args=args, train_dataset=state.train, processing_class=state.tokenizer,
                                  loss_fn=loss_fn, callbacks=[Checkpoints()])
    trainer.remove_callback(PrinterCallback)
    outcome = trainer.run()
    if not outcome.ok:
        rows.append({"epoch": outcome.steps / per_epoch, "failed": outcome.reason})
    return rows


def main(argv: list[str] | None = None) -> None:
    import torch

    from discovery.config import load_config
    from discovery.inner_loop.task import get_task
    from discovery.sandbox.loader import load_loss

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--losses", nargs="+", default=["dpo"], help="library losses")
    p.add_argument("--extra", nargs="+", default=[], type=Path, metavar="FILE", help="bench/losses/ files")
    p.add_argument("--betas", type=float, nargs="+", default=[0.1])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    opts = p.parse_args(argv)
    config = load_config(None, opts.set)
    task = get_task(config)
    task.prepare(None)
    torch.set_num_threads(1)
    # library and bench/losses code is ours (trusted): loaded without the sandbox, as --time in proxy_headroom
    losses = {n: library.get(n).code for n in opts.losses} | {f.stem: f.read_text() for f in opts.extra}
    print(f"`python bench/overfit_curve.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print("| loss | β | seed | epoch | gold reward | KL | fit clean | fit flipped |\n|---|---|---|---|---|---|---|---|")
    start = time.perf_counter()
    for name, code in losses.items():
        for beta in opts.betas:
            for seed in opts.seeds:
                for r in curve(task, load_loss(code), beta, seed, opts.epochs, opts.every):
                    if "failed" in r:
                        print(f"| {name} | {beta:g} | {seed} | {r['epoch']:.1f} | failed: {r['failed']} | | | |")
                        continue
                    print(f"| {name} | {beta:g} | {seed} | {r['epoch']} | {r['gold']:.4f} | {r['kl']:.2f} | "
                          f"{r['fit_clean']:.3f} | {r['fit_flipped']:.3f} |", flush=True)
    load = os.getloadavg()
    print(f"\nwall {time.perf_counter() - start:.0f} s, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")


if __name__ == "__main__":
    main()
