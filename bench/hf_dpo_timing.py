"""Time the hf_dpo path on one machine: prepare (reference log-probs), LoRA and full DPO steps, the held-out
screen, and MT-Bench answer generation. Prints one JSON object of measurements.

    python bench/hf_dpo_timing.py --config-dir DIR_WITH_config.json+tokenizer [--random-init] [--steps 10]

With --random-init the model is built from config.json with random weights (same architecture and size,
for timing only: the numbers say nothing about quality). Synthetic pairs of about --seq tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def build_model(src: Path, out: Path, random_init: bool) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    if random_init:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src), dtype=torch.bfloat16)
    else:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_pairs(folder: Path, words_per_part: int, n_train: int, n_test: int) -> Path:
    from fixtures_hf import WORDS

    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for _ in range(n):
                text = [" ".join(rng.choice(WORDS) for _ in range(words_per_part)) for _ in range(3)]
                f.write(json.dumps({"prompt": [{"role": "user", "content": text[0]}],
                                    "chosen": [{"role": "assistant", "content": text[1]}],
                                    "rejected": [{"role": "assistant", "content": text[2]}]}) + "\n")
    return folder


def run(args) -> dict:
    import torch
    from fixtures_hf import build_mtbench

    from discovery import library
    from discovery.config import from_dict
    from discovery.inner_loop import hf_dpo
    from discovery.inner_loop.task import Fidelity
    from discovery.mtbench import answers, data

    work = Path(tempfile.mkdtemp(prefix="hfbench-"))
    t0 = time.perf_counter()
    model = build_model(Path(args.config_dir), work / "model", args.random_init)
    out = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
           "torch": torch.__version__, "build_model_s": round(time.perf_counter() - t0, 1)}
    pairs = build_pairs(work / "pairs", args.seq // 3, args.pairs, args.pairs // 2)
    for mode in args.modes:
        config = from_dict({
            "task": {"name": "hf_dpo", "model": str(model), "dataset": str(pairs), "eval_split": "test",
                     "cache_dir": str(work / "cache"), "options": {"scorer": "heldout"}},
            "train": {"beta": 0.1, "learning_rate": 5e-5, "max_steps": args.steps, "max_length": args.seq,
                      "per_device_train_batch_size": args.batch, "bf16": True, "peft": mode == "lora",
                      "gradient_checkpointing": args.checkpointing},
        })
        task = hf_dpo.HFDPOTask(config)
        t0 = time.perf_counter()
        task.prepare()
        prep = time.perf_counter() - t0
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        trainer, tok, outcome = task.train(library.get("dpo").code, 0, Fidelity(), str(work / f"out-{mode}"))
        total = time.perf_counter() - t0
        t0 = time.perf_counter()
        screen = task._score(trainer.model, tok, library.get("dpo").code, 0.1, 0, Fidelity("screen"), {})
        screen_s = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        out[mode] = {"prepare_s": round(prep, 2), "train_s": round(outcome.seconds, 2),
                     "build_and_train_s": round(total, 2), "steps": outcome.steps, "ok": outcome.ok,
                     "s_per_step": round(outcome.seconds / max(1, outcome.steps), 3),
                     "final_loss": outcome.metrics.get("loss"), "heldout_accuracy": screen,
                     "heldout_s": round(screen_s, 2), "peak_gpu_gib": peak and round(peak, 2),
                     "seq": args.seq, "batch": args.batch}
        print(json.dumps({mode: out[mode]}), flush=True)
        if mode == args.modes[-1]:
            mt = data.load(str(build_mtbench(work / "mt")))
            t0 = time.perf_counter()
            ans = answers.generate_hf(hf_dpo._merged(trainer.model), tok, mt.questions, args.new_tokens)
            out["mtbench_answers"] = {"questions": len(ans), "turns": 2 * len(ans), "max_new_tokens": args.new_tokens,
                                      "seconds": round(time.perf_counter() - t0, 2),
                                      "sample": ans[81][0][:120]}
        del trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config-dir", required=True)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--modes", nargs="+", default=["lora", "full"])
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
