"""Judgments on disk, keyed by (question, turn, answer hash, judge identity: model, endpoint and prompt): re-scoring
never pays twice, and a different judge behind the same model name never answers from another's cache."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock


@dataclass
class Judgment:
    key: str
    question_id: int
    category: str
    turn: int
    judge_model: str
    prompt_name: str
    judgment: str
    rating: float | None  # None: the judge gave no parseable rating (missing, not zero)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    judge_base_url: str = ""


def answer_hash(answers: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps(list(answers)).encode()).hexdigest()[:16]


def judge_endpoint(base_url: str | None) -> str:
    """The judge's endpoint as it enters the cache key (None: the OpenAI API the client defaults to)."""
    return (base_url or "https://api.openai.com/v1").rstrip("/")


def judgment_key(question_id: int, turn: int, answers: tuple[str, ...], judge_model: str,
                 prompt_name: str, system_prompt: str, user_prompt: str, base_url: str | None = None) -> str:
    prompt = hashlib.sha256((system_prompt + "\x00" + user_prompt).encode()).hexdigest()[:16]
    parts = [question_id, turn, answer_hash(answers), judge_model, prompt_name, prompt, judge_endpoint(base_url)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


class JudgmentCache:
    """An append-only JSONL file; safe for threads here and for other processes through a file lock."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file_lock = FileLock(str(self.path) + ".lock")
        self._entries: dict[str, Judgment] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
                self._entries[row["key"]] = Judgment(**row)
            except (json.JSONDecodeError, TypeError, KeyError):
                continue  # a torn last line from a killed run: skip it

    def get(self, key: str) -> Judgment | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, judgment: Judgment) -> None:
        line = json.dumps(asdict(judgment)) + "\n"
        with self._lock, self._file_lock:
            with self.path.open("a") as f:
                f.write(line)
            self._entries[judgment.key] = judgment

    def __len__(self) -> int:
        return len(self._entries)
