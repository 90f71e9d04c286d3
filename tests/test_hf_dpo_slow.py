"""Slow: a real pretrained 0.5B chat model (the test GGUF, loaded by transformers) -> a short LoRA DPO with
hf_dpo -> MT-Bench on a few questions, judged by the same GGUF served by llama.cpp on 127.0.0.1.

    python -m pytest -q -m slow tests/test_hf_dpo_slow.py -s      # prints timings and the score
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures_hf import build_mtbench, build_preferences

from discovery import library
from discovery.config import from_dict
from discovery.inner_loop.task import get_task

pytestmark = [pytest.mark.slow, pytest.mark.llm]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_judge(test_gguf):
    pytest.importorskip("llama_cpp")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", test_gguf, "--model_alias", "qwen-judge",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("llama.cpp server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_real_05b_lora_dpo_scored_by_a_llama_cpp_judge(test_gguf, llama_judge, tmp_path, request):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    timings = {}
    t0 = time.perf_counter()
    folder, name = str(Path(test_gguf).parent), Path(test_gguf).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    model.hf_quantizer = None  # GGUF weights are dequantized in memory: save them as a plain checkpoint
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp_path / "qwen05")
    tokenizer.save_pretrained(tmp_path / "qwen05")
    del model
    timings["load_gguf_and_save_s"] = time.perf_counter() - t0

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtbench"
    source = shared if (shared / "question.jsonl").is_file() else build_mtbench(tmp_path / "mt")
    config = from_dict({
        "task": {"name": "hf_dpo", "model": str(tmp_path / "qwen05"),
                 "dataset": str(build_preferences(tmp_path / "pairs", conversational=True, n_train=8, n_test=4)),
                 "eval_split": "test", "cache_dir": str(tmp_path / "cache"), "options": {"scorer": "mtbench"}},
        "train": {"beta": 0.1, "learning_rate": 5e-5, "max_steps": 2, "per_device_train_batch_size": 2,
                  "max_length": 128, "peft": True, "lora_r": 8, "lora_alpha": 16},
        "eval": {"mtbench_source": str(source), "mtbench_questions": 2, "mtbench_max_new_tokens": 48,
                 "judge": {"model": "qwen-judge", "base_url": llama_judge, "cache_dir": str(tmp_path / "judge"),
                           "concurrency": 1, "timeout": 600, "max_tokens": 256}},
    })
    task = get_task(config)
    t0 = time.perf_counter()
    task.prepare()
    timings["prepare_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = task.evaluate(library.get("dpo").code, seed=0)
    timings["evaluate_s"] = time.perf_counter() - t0
    report = {"timings": {k: round(v, 1) for k, v in timings.items()}, "ok": result.ok, "fitness": result.fitness,
              "steps": result.steps,
              "metrics": {k: v for k, v in result.metrics.items() if k.startswith(("mtbench/", "heldout/", "train/"))}}
    print(json.dumps(report, indent=2, default=str))
    assert result.ok, result.reason
    assert result.metrics["mtbench/rated"] + result.metrics["mtbench/missing"] == 4
    assert result.metrics["heldout/n"] == 4
    # a run where the judge rated nothing has measured nothing: at least one rating, and a fitness from them
    assert result.metrics["mtbench/rated"] >= 1, report
    assert result.fitness is not None and 1.0 <= result.fitness <= 10.0, report
