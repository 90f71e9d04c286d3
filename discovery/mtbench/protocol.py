"""FastChat's single-answer grading protocol: which prompt judges which turn, and how to read the rating."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from discovery.mtbench.data import MTBenchData, Question

# FastChat common.py: one_score_pattern and its fallback
SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


@dataclass(frozen=True)
class JudgeRequest:
    """One judgment to ask for: the rendered prompts and what they rate."""

    question_id: int
    category: str
    turn: int  # 1 or 2
    prompt_name: str
    system_prompt: str
    user_prompt: str


def prompt_name(question: Question, turn: int) -> str:
    """single-v1 / single-math-v1, with the -multi-turn variant for turn 2 (FastChat make_judge_single)."""
    base = "single-math-v1" if question.needs_reference else "single-v1"
    return base + ("-multi-turn" if turn == 2 else "")


def build_request(data: MTBenchData, question: Question, answers: tuple[str, ...], turn: int) -> JudgeRequest:
    """Render the judge prompt for `turn` of `question` answered by `answers` (FastChat run_judge_single)."""
    name = prompt_name(question, turn)
    template = data.judge_prompts[name]
    kwargs: dict[str, str] = {}
    if question.needs_reference:
        reference = data.references.get(question.question_id)
        if reference is None:
            raise KeyError(f"no reference answer for MT-Bench question {question.question_id}")
        kwargs["ref_answer_1"] = reference[0]
        if turn == 2:
            kwargs["ref_answer_2"] = reference[1]
    if turn == 2:
        user = template.prompt_template.format(
            question_1=question.turns[0], question_2=question.turns[1],
            answer_1=answers[0], answer_2=answers[1], **kwargs,
        )
    else:
        user = template.prompt_template.format(question=question.turns[0], answer=answers[0], **kwargs)
    return JudgeRequest(question.question_id, question.category, turn, name, template.system_prompt, user)


def parse_rating(judgment: str) -> float | None:
    """The rating in `[[x]]`, else FastChat's `[x]` fallback; None when there is none (a missing rating)."""
    match = SCORE_PATTERN.search(judgment) or SCORE_PATTERN_BACKUP.search(judgment)
    if not match:
        return None
    try:
        return float(ast.literal_eval(match.group(1)))
    except (ValueError, SyntaxError):
        return None
