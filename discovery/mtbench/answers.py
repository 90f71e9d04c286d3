"""Answers to MT-Bench questions from a policy: its chat template, both turns, FastChat's temperatures.

HF `generate` by default; vLLM when it is installed (or asked for). Answers are saved next to the
scores so a re-run judges the same text (and hits the judgment cache). A turn whose generation fails
(a RuntimeError such as CUDA out of memory) is answered "ERROR" and judged like any answer, as FastChat's
gen_model_answer.py does; the evaluation goes on and `errors` counts such turns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from discovery.mtbench.data import Question

Answers = dict[int, tuple[str, ...]]  # question_id -> answer per turn
ERROR_ANSWER = "ERROR"  # FastChat gen_model_answer.py: the answer of a turn whose generation raised
BACKENDS = ("auto", "hf", "vllm")


def _messages(question: Question, answers: Sequence[str], turn: int) -> list[dict[str, str]]:
    messages = []
    for i in range(turn):
        messages.append({"role": "user", "content": question.turns[i]})
        if i < turn - 1:
            messages.append({"role": "assistant", "content": answers[i]})
    return messages


def backend(choice: str, model_path: str | None) -> str:
    """'vllm' or 'hf' for eval.mtbench_backend (auto: vLLM when installed and the model is a saved folder/name)."""
    from discovery.errors import DiscoveryError

    if choice not in BACKENDS:
        raise DiscoveryError(f"eval.mtbench_backend must be auto, hf or vllm, got '{choice}'")
    if choice == "vllm" and not vllm_available():
        raise DiscoveryError("eval.mtbench_backend=vllm but vllm is not installed")
    return "vllm" if choice == "vllm" or (choice == "auto" and model_path and vllm_available()) else "hf"


def errors(answers: Answers) -> int:
    """Turns answered ERROR_ANSWER (generation failed)."""
    return sum(turn == ERROR_ANSWER for turns in answers.values() for turn in turns)


def _hf_reply(model, tokenizer, messages, temperature: float, max_new_tokens: int) -> str:
    """One turn; a RuntimeError while generating gives FastChat's "ERROR" answer instead of ending the run."""
    try:
        return _generate(model, tokenizer, messages, temperature, max_new_tokens)
    except RuntimeError as exc:  # torch.OutOfMemoryError included
        import logging

        logging.getLogger(__name__).warning("MT-Bench generation failed, answered %s: %s", ERROR_ANSWER,
                                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return ERROR_ANSWER


def _generate(model, tokenizer, messages, temperature: float, max_new_tokens: int) -> str:
    import torch

    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    device = next(model.parameters()).device
    ids = {k: v.to(device) for k, v in ids.items()}
    sample = temperature >= 1e-4  # FastChat: below this, greedy
    kwargs = {"do_sample": sample, "max_new_tokens": max_new_tokens,
              "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    if sample:
        kwargs["temperature"] = temperature
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    with torch.no_grad():
        out = model.generate(**ids, **kwargs)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def generate_hf(model, tokenizer, questions: Sequence[Question], max_new_tokens: int = 1024, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> Answers:
    """Both turns of every question with HF `generate` (turn 2 sees the model's own turn-1 answer)."""
    import torch

    was_training = model.training
    model.eval()
    answers: Answers = {}
    for n, q in enumerate(questions):
        torch.manual_seed(seed + q.question_id)
        replies: list[str] = []
        for turn in range(1, len(q.turns) + 1):
            replies.append(_hf_reply(model, tokenizer, _messages(q, replies, turn), q.temperature, max_new_tokens))
        answers[q.question_id] = tuple(replies)
        if progress:
            progress(n + 1, len(questions))
    model.train(was_training)
    return answers


def generate_vllm(model_path: str, questions: Sequence[Question], max_new_tokens: int = 1024,
                  seed: int = 0, gpu_memory_utilization: float = 0.9, revision: str | None = None) -> Answers:
    """Both turns with vLLM's chat API, batched per turn; each question keeps its own temperature.
    `gpu_memory_utilization` (eval.vllm_gpu_memory_utilization) is the share of the GPU vLLM takes."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_path, seed=seed, gpu_memory_utilization=gpu_memory_utilization, revision=revision)
    replies: dict[int, list[str]] = {q.question_id: [] for q in questions}
    for turn in (1, 2):
        batch = [q for q in questions if len(q.turns) >= turn]
        conversations = [_messages(q, replies[q.question_id], turn) for q in batch]
        params = [SamplingParams(temperature=q.temperature, max_tokens=max_new_tokens, seed=seed + q.question_id)
                  for q in batch]
        for q, out in zip(batch, llm.chat(conversations, params, use_tqdm=False), strict=True):
            replies[q.question_id].append(out.outputs[0].text.strip())
    return {qid: tuple(r) for qid, r in replies.items()}


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def save(path: Path, answers: Answers, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"question_id": qid, "turns": list(turns), **meta}) for qid, turns in sorted(answers.items())]
    path.write_text("\n".join(rows) + "\n")


def load_saved(path: Path, meta: dict) -> Answers:
    """Saved answers made with the same settings (`meta`), else an empty dict."""
    if not path.is_file():
        return {}
    answers: Answers = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if all(row.get(k) == v for k, v in meta.items()):
            answers[int(row["question_id"])] = tuple(row["turns"])
    return answers
