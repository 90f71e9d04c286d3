"""MT-Bench scores: answer, judge, aggregate turn 1, turn 2 and overall (missing ratings left out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from discovery.config import RunConfig
from discovery.mtbench import answers as answers_mod
from discovery.mtbench import data as data_mod
from discovery.mtbench.cache import Judgment, JudgmentCache
from discovery.mtbench.judge import Judge
from discovery.mtbench.protocol import build_request

COST_CLASS = "expensive"  # generation of 160 answers plus 160 paid judge calls


@dataclass
class MTBenchScore:
    turn1: float | None
    turn2: float | None
    overall: float | None
    rated: int  # judgments with a parseable rating
    missing: int  # judgments without one (not counted as zero)
    questions: int
    per_category: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # of the judgments paid for in this call (cache hits cost nothing)
    cache_hits: int = 0
    judge_model: str = ""
    errors: int = 0  # turns whose generation failed, answered "ERROR" (FastChat) and judged as such

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(judgments: list[Judgment], cached: set[int], questions: int, judge_model: str) -> MTBenchScore:
    """Means of the parseable ratings per turn and overall; cost of the judgments not served from cache."""
    rated = [j for j in judgments if j.rating is not None]
    by_category: dict[str, list[float]] = {}
    for j in rated:
        by_category.setdefault(j.category, []).append(j.rating)
    return MTBenchScore(
        turn1=_mean([j.rating for j in rated if j.turn == 1]),
        turn2=_mean([j.rating for j in rated if j.turn == 2]),
        overall=_mean([j.rating for j in rated]),
        rated=len(rated), missing=len(judgments) - len(rated), questions=questions,
        per_category={c: sum(v) / len(v) for c, v in sorted(by_category.items())},
        prompt_tokens=sum(j.prompt_tokens for j in judgments),
        completion_tokens=sum(j.completion_tokens for j in judgments),
        cost_usd=sum(j.cost_usd for i, j in enumerate(judgments) if i not in cached),
        cache_hits=len(cached), judge_model=judge_model,
    )


def judge_answers(data: data_mod.MTBenchData, answers: answers_mod.Answers, judge: Judge,
                  progress: Callable[[int, int], None] | None = None) -> tuple[MTBenchScore, list[Judgment]]:
    """Judge both turns of every answered question with FastChat's single-answer prompts."""
    items = []
    for q in data.questions:
        if q.question_id not in answers:
            continue
        replies = answers[q.question_id]
        for turn in range(1, min(len(q.turns), len(replies)) + 1):
            items.append((build_request(data, q, replies, turn), replies[:turn]))
    judgments, cached = judge.judge_all(items, progress)
    return aggregate(judgments, cached, len(answers), judge.config.model), judgments


def judgment_cache(config: RunConfig) -> JudgmentCache:
    root = Path(config.eval.judge.cache_dir) if config.eval.judge.cache_dir else data_mod.default_cache_dir()
    return JudgmentCache(root / "judgments.jsonl")


def load_data(config: RunConfig) -> data_mod.MTBenchData:
    return data_mod.load(config.eval.mtbench_source).subset(config.eval.mtbench_questions)


def answer(config: RunConfig, model, tokenizer, model_path: str | None, out_dir: Path,
           data: data_mod.MTBenchData, seed: int = 0,
           progress: Callable[[int, int], None] | None = None, model_key: str = "") -> answers_mod.Answers:
    """Saved answers when they match these settings and `model_key` (what identifies the trained weights, e.g.
    their hash), else fresh ones (HF generate or vLLM)."""
    use_vllm = answers_mod.backend(config.eval.mtbench_backend, model_path) == "vllm"
    meta = {"model": str(model_path or ""), "model_key": model_key, "seed": seed, "max_new_tokens": config.eval.mtbench_max_new_tokens,
            "backend": "vllm" if use_vllm else "hf"}
    path = out_dir / "answers.jsonl"
    saved = answers_mod.load_saved(path, meta)
    todo = [q for q in data.questions if q.question_id not in saved]
    if todo:
        if use_vllm:
            fresh = answers_mod.generate_vllm(str(model_path), todo, config.eval.mtbench_max_new_tokens, seed,
                                              config.eval.vllm_gpu_memory_utilization, config.task.revision)
        else:
            fresh = answers_mod.generate_hf(model, tokenizer, todo, config.eval.mtbench_max_new_tokens, seed,
                                            progress)
        saved.update(fresh)
        answers_mod.save(path, saved, meta)
    return {q.question_id: saved[q.question_id] for q in data.questions}


def score(config: RunConfig, model, tokenizer, out_dir: Path, model_path: str | None = None, seed: int = 0,
          progress: Callable[[str, int, int], None] | None = None, judge: Judge | None = None,
          model_key: str = "") -> MTBenchScore:
    """Answer the configured questions with `model`, judge them, write answers/judgments/score to out_dir."""
    import json

    data = load_data(config)
    answers = answer(config, model, tokenizer, model_path, out_dir, data, seed,
                     (lambda d, t: progress("answering", d, t)) if progress else None, model_key)
    judge = judge or Judge(config.eval.judge, judgment_cache(config))
    result, judgments = judge_answers(data, answers, judge,
                                      (lambda d, t: progress("judging", d, t)) if progress else None)
    result.errors = answers_mod.errors(answers)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "judgments.jsonl").write_text("".join(json.dumps(asdict(j)) + "\n" for j in judgments))
    (out_dir / "score.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result
