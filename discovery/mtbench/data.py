"""The MT-Bench files (questions, judge prompts, GPT-4 reference answers): fetched once, cached, parsed.

The source is FastChat's published files by default, or any URL prefix or local directory with the same
files, either flat (`question.jsonl`, `judge_prompts.jsonl`, `reference_answer_gpt-4.jsonl`) or in
FastChat's layout (`mt_bench/question.jsonl`, ...). Nothing is shipped in the package.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from discovery.errors import DiscoveryError
from discovery.paths import cache_root

FASTCHAT_URL = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"

# cached name -> path below a FastChat-layout source
FILES: dict[str, str] = {
    "question.jsonl": "mt_bench/question.jsonl",
    "judge_prompts.jsonl": "judge_prompts.jsonl",
    "reference_answer_gpt-4.jsonl": "mt_bench/reference_answer/gpt-4.jsonl",
}

CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
# FastChat gen_model_answer.py temperature_config
TEMPERATURES: dict[str, float] = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
    "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1,
}
# FastChat common.py NEED_REF_CATS: judged against the reference answer
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")


@dataclass(frozen=True)
class Question:
    question_id: int
    category: str
    turns: tuple[str, ...]

    @property
    def temperature(self) -> float:
        return TEMPERATURES.get(self.category, 0.7)

    @property
    def needs_reference(self) -> bool:
        return self.category in REFERENCE_CATEGORIES


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    system_prompt: str
    prompt_template: str
    output_format: str


@dataclass(frozen=True)
class MTBenchData:
    questions: tuple[Question, ...]
    judge_prompts: dict[str, JudgePrompt]
    references: dict[int, tuple[str, ...]]  # question_id -> reference answer per turn

    def subset(self, n: int | None) -> MTBenchData:
        """The first `n` questions in file order (all when n is None)."""
        if n is None:
            return self
        return MTBenchData(self.questions[:n], self.judge_prompts, self.references)


def default_cache_dir() -> Path:
    return cache_root() / "mtbench"


def _read_local(source: Path, name: str) -> bytes:
    for rel in (name, FILES[name]):
        if (source / rel).is_file():
            return (source / rel).read_bytes()
    raise DiscoveryError(f"MT-Bench file {name} not found in {source} (nor {FILES[name]})")


def _download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DiscoveryError(
            f"could not download MT-Bench file {url}: {exc}; set eval.mtbench_source to a local directory"
        ) from None


def fetch(source: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Make sure the three files are in the cache folder for `source`; returns that folder."""
    source = source or FASTCHAT_URL
    local = not source.startswith(("http://", "https://"))
    if local and not Path(source).is_dir():
        raise DiscoveryError(f"MT-Bench source directory not found: {source}")
    if local:
        return Path(source)
    import hashlib

    folder = Path(cache_dir or default_cache_dir()) / hashlib.sha256(source.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    for name, rel in FILES.items():
        target = folder / name
        if not target.is_file():
            data = _download(f"{source.rstrip('/')}/{rel}")
            tmp = target.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(target)
    return folder


def _jsonl(data: bytes, name: str) -> list[dict]:
    rows = []
    for i, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DiscoveryError(f"MT-Bench file {name} line {i} is not JSON: {exc.msg}") from None
    return rows


def parse(folder: Path) -> MTBenchData:
    questions = tuple(
        Question(int(r["question_id"]), r["category"], tuple(r["turns"]))
        for r in _jsonl(_read_local(folder, "question.jsonl"), "question.jsonl")
    )
    prompts = {
        r["name"]: JudgePrompt(r["name"], r["system_prompt"], r["prompt_template"], r["output_format"])
        for r in _jsonl(_read_local(folder, "judge_prompts.jsonl"), "judge_prompts.jsonl")
    }
    references = {
        int(r["question_id"]): tuple(r["choices"][0]["turns"])
        for r in _jsonl(_read_local(folder, "reference_answer_gpt-4.jsonl"), "reference_answer_gpt-4.jsonl")
    }
    return MTBenchData(questions, prompts, references)


def load(source: str | None = None, cache_dir: str | Path | None = None) -> MTBenchData:
    """Questions, judge prompts and references from `source` (default: FastChat's files), cached."""
    return parse(fetch(source, cache_dir))
