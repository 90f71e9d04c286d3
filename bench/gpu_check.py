"""One prepared check of the full-scale path on a GPU machine: `discovery run --task hf_dpo` end to end.

    python bench/gpu_check.py               # GPU: the 0.5B test model (GGUF, loaded by transformers), DPO baseline
                                            # with LoRA and with full fine-tuning in bf16, on 1 GPU and on 2 when
                                            # present, MT-Bench on 2 questions judged by the same GGUF served by
                                            # llama.cpp on 127.0.0.1 (with an API key); about 5 minutes on one GPU
    python bench/gpu_check.py --cpu-smoke   # anywhere: a tiny random model, 1 question, the same stages on CPU
                                            # (1 rank, and 2 gloo ranks with --ranks 1 2)

Each stage goes through the real executor: training isolated (one rank per GPU, loopback rendezvous), scoring
in the trusted `discovery run` process with the judge's key. Prints one JSON line per stage (seconds, the
evaluation's train seconds, the MT-Bench rating, peak GPU memory per GPU from nvidia-smi sampled every
0.25 s, or the peak RSS of finished child processes on CPU) and a summary table at the end.
Stage `sandbox cuda` runs one job in a GPU training runner (bubblewrap with the GPU binds where bwrap works)
and prints whether torch.cuda.is_available() inside it (untried on a GPU when it was added).
The GGUF comes from `../shared/tools/get-test-llm 0.5b` (run here when the file is missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
SHARED = ROOT.parent / "shared"
GGUF = Path.home() / ".cache" / "discovery-test" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
KEY_ENV, KEY = "GPU_CHECK_JUDGE_KEY", "sk-gpu-check-judge"


def emit(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    return record


def test_gguf() -> Path:
    if GGUF.is_file():
        return GGUF
    tool = SHARED / "tools" / "get-test-llm"
    out = subprocess.run([sys.executable, str(tool), "0.5b"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---------------------------------------------------------------- inputs


def build_policy(work: Path, cpu_smoke: bool, gguf: Path) -> Path:
    """The policy as a plain HF folder: the tiny random model, or the GGUF dequantized by transformers."""
    if cpu_smoke:
        from fixtures_hf import build_model

        return build_model(work / "policy")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None  # dequantized in memory: saved as a plain checkpoint
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(work / "policy")
    tokenizer.save_pretrained(work / "policy")
    return work / "policy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_judge(gguf: Path, threads: int) -> tuple[subprocess.Popen, str]:
    """llama.cpp's OpenAI-compatible server on loopback, serving the GGUF as `gguf-judge`, key required."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "gguf-judge",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads),
         "--api_key", KEY, "--n_gpu_layers", "-1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
    for _ in range(480):
        try:
            urllib.request.urlopen(request, timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("gpu_check: the llama.cpp judge did not start")


# ---------------------------------------------------------------- peak memory


class GpuMemoryPeak:
    """Peak memory.used per GPU (MiB) over the block, from nvidia-smi: it sees every process, isolated ones too."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.peak, self.before, self._stop = interval, {}, {}, threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def _sample(self) -> None:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        for line in out.strip().splitlines():
            index, used = (int(x) for x in line.split(","))
            self.peak[index] = max(self.peak.get(index, 0), used)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        if self.available:
            self._sample()
            self.before = dict(self.peak)  # what was in use before the stage (the judge when it sits on a GPU)
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()


# ---------------------------------------------------------------- one `discovery run`


def run_settings(a, policy: Path, pairs: Path, judge_url: str, work: Path, peft: bool, ranks: int) -> list[str]:
    """Settings of one stage; its own task and judgment caches, so no stage reuses another's baseline result or
    judgments (each stage's numbers include its own judging)."""
    lr = 5e-5 if peft else 5e-6
    sets = [
        "task.name=hf_dpo", f"task.model={policy}", f"task.dataset={pairs}", "task.eval_split=test",
        "task.options={scorer: mtbench}", f"task.cache_dir={work / f'cache-{int(peft)}-{ranks}'}",
        f"train.max_steps={a.steps}", f"train.per_device_train_batch_size={a.batch}", f"train.max_length={a.seq}",
        f"train.max_prompt_length={a.seq // 2}", f"train.learning_rate={lr}", "train.bf16=true",
        "train.gradient_checkpointing=false", f"train.peft={str(peft).lower()}", "train.lora_r=16",
        "train.lora_alpha=32", "eval.seeds=1", "eval.screen=false", "eval.reeval_seeds=0", "eval.baselines=[dpo]",
        f"eval.mtbench_source={a.mtbench}", f"eval.mtbench_questions={a.questions}",
        f"eval.mtbench_max_new_tokens={a.new_tokens}", "eval.mtbench_backend=hf",
        "eval.judge.model=gguf-judge", f"eval.judge.base_url={judge_url}", f"eval.judge.api_key_env={KEY_ENV}",
        f"eval.judge.cache_dir={work / f'judge-{int(peft)}-{ranks}'}", "eval.judge.concurrency=1", "eval.judge.timeout=600",
        f"eval.judge.max_tokens={a.judge_tokens}", "eval.judge.max_retries=1",
        "executor.workers=1", f"executor.threads_per_worker={a.threads}", "budget.proposals=1",
        f"budget.wall_time={a.timeout}", f"proposer.replay_dir={work / 'replay'}",
        "proposer.max_fix_attempts=0",
    ]
    if multi_rank_supported():
        sets.append(f"executor.processes_per_candidate={ranks}")
    return ["--proposer", "replay", "--quiet"] + [arg for text in sets for arg in ("--set", text)]


def multi_rank_supported() -> bool:
    from discovery.config import ExecutorConfig

    return "processes_per_candidate" in {f.name for f in dataclasses.fields(ExecutorConfig)}


def discovery_run(a, name: str, settings: list[str], work: Path) -> dict:
    from discovery.archive import Archive
    from discovery.archive.store import db_path

    run_dir = work / f"run-{name}"
    env = {**os.environ, KEY_ENV: KEY, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with GpuMemoryPeak() as memory:
        proc = subprocess.run([sys.executable, "-m", "discovery.cli", "run", "--run-dir", str(run_dir), *settings],
                              capture_output=True, text=True, env=env, timeout=a.timeout, cwd=str(ROOT))
    record = {"stage": name, "seconds": round(time.perf_counter() - start, 1), "exit": proc.returncode}
    if memory.available:
        record["peak_gpu_mib"] = memory.peak
        record["gpu_mib_before"] = memory.before
    else:
        record["peak_child_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    if proc.returncode != 0:
        record["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    if Path(db_path(run_dir)).is_file():
        with Archive.open(run_dir, readonly=True) as archive:
            for c in archive.candidates():
                for e in archive.evaluations(c.id):
                    r = e.result
                    m = r.metrics
                    record.update(candidate=c.name, ok=r.ok, fitness=r.fitness, steps=r.steps,
                                  evaluation_s=round(r.seconds, 1), train_s=_round(m.get("train/seconds")),
                                  world_size=m.get("train/world_size"), rated=m.get("mtbench/rated"),
                                  missing=m.get("mtbench/missing"), errors=m.get("mtbench/errors"),
                                  judge_cache_hits=m.get("mtbench/cache_hits"),
                                  reason=r.reason or None)
    return emit(record)


def _round(value):
    return round(value, 1) if isinstance(value, int | float) else value


# ---------------------------------------------------------------- main


def sandbox_cuda(gpus: int) -> dict:
    """One sandboxed training-runner job (bubblewrap with the GPU binds where bwrap works) that reports
    torch.cuda.is_available() from inside the child; on CPU it checks the runner starts and reports False."""
    from discovery.sandbox.isolation import IsolatedRunner, Limits

    start = time.perf_counter()
    limits = Limits(wall_seconds=120.0, memory_mb=0, cpu_seconds=240, file_mb=64, open_files=256)
    env = {"CUDA_VISIBLE_DEVICES": "0"} if gpus else {}
    with IsolatedRunner(preload=("torch",), limits=limits, env=env, gpu=gpus > 0, threads=1) as runner:
        job = runner.run("discovery.sandbox.jobs:cuda_probe", {}, limits=limits)
    value = job.value if isinstance(job.value, dict) else {}
    return emit({"stage": "sandbox cuda", "seconds": round(time.perf_counter() - start, 1),
                 "cuda_in_sandbox": value.get("cuda_available"), "cuda_sum": value.get("sum"),
                 "isolation": list(job.isolation), "error": job.error,
                 "ok": job.ok and bool(value.get("cuda_available")) == (gpus > 0)})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny random model, 1 question, on CPU")
    p.add_argument("--ranks", type=int, nargs="+", help="training ranks per candidate (default: 1 and 2 if 2 GPUs)")
    p.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for one `discovery run`")
    a = p.parse_args()
    gpus = 0 if a.cpu_smoke else gpu_count()
    if not a.cpu_smoke and gpus == 0:
        print("gpu_check: no CUDA GPU visible; use --cpu-smoke to check the script on CPU", file=sys.stderr)
        return 2
    smoke = a.cpu_smoke
    a.steps, a.batch, a.seq = (2, 2, 64) if smoke else (8, 4, 512)
    a.questions, a.new_tokens, a.judge_tokens = (1, 8, 48) if smoke else (2, 128, 128)
    a.threads = max(1, min(os.cpu_count() or 1, 2 if smoke else 8))
    a.mtbench = SHARED / "data" / "mtbench"
    ranks = a.ranks or ([1, 2] if gpus >= 2 else [1])
    if max(ranks) > 1 and not multi_rank_supported():
        print("gpu_check: this checkout has no executor.processes_per_candidate; only 1 rank", file=sys.stderr)
        ranks = [1]
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    (work / "replay").mkdir()  # the one proposal is refused by validation: the run trains the baseline only
    (work / "replay" / "not_a_loss.py").write_text("def not_a_loss(:\n")
    import torch

    emit({"stage": "machine", "gpus": gpus, "device": torch.cuda.get_device_name(0) if gpus else "cpu",
          "torch": torch.__version__, "mode": "cpu-smoke" if smoke else "gpu", "ranks": ranks, "work": str(work)})
    results, judge = [], None
    try:
        start = time.perf_counter()
        gguf = test_gguf()
        policy = build_policy(work, smoke, gguf)
        from fixtures_hf import build_preferences

        pairs = build_preferences(work / "pairs", conversational=True, n_train=4 * a.steps * a.batch, n_test=8)
        results.append(emit({"stage": "inputs", "seconds": round(time.perf_counter() - start, 1),
                             "policy": "tiny random Llama" if smoke else gguf.name}))
        results.append(sandbox_cuda(gpus))
        start = time.perf_counter()
        judge, url = start_judge(gguf, a.threads)
        results.append(emit({"stage": "judge server", "seconds": round(time.perf_counter() - start, 1)}))
        for n in ranks:
            for mode in a.modes:
                settings = run_settings(a, policy, pairs, url, work, mode == "lora", n)
                results.append(discovery_run(a, f"{mode} x{n}", settings, work))
    finally:
        if judge is not None:
            judge.terminate()
            judge.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print("\nstage            seconds  train_s  eval_s  fitness  rated  peak memory")
    for r in results:
        peak = r.get("peak_gpu_mib") or (f"{r['peak_child_rss_mib']} MiB RSS" if "peak_child_rss_mib" in r else "")
        print(f"{r['stage']:<16} {r['seconds']:>7}  {r.get('train_s', ''):>7}  {r.get('evaluation_s', ''):>6}  "
              f"{r.get('fitness', '')!s:>7}  {r.get('rated', '')!s:>5}  {peak}")
    failed = [r for r in results if r.get("exit") not in (None, 0) or r.get("ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
