"""The LLM judge: any OpenAI-compatible chat endpoint, temperature 0, cached, bounded concurrency, retries."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from discovery.config import JudgeConfig
from discovery.errors import DiscoveryError
from discovery.mtbench.cache import Judgment, JudgmentCache, judge_endpoint, judgment_key
from discovery.mtbench.protocol import JudgeRequest, parse_rating

JUDGE_MAX_TOKENS = 2048  # FastChat run_judge_single


class JudgeError(DiscoveryError):
    """The judge could not be reached or refused; the judgments already made stay in the cache."""


def _client(config: JudgeConfig):
    import openai

    key = os.environ.get(config.api_key_env)
    if not key:
        if not config.base_url:
            raise JudgeError(
                f"no API key for the judge: set {config.api_key_env} or eval.judge.base_url for a local server"
            )
        key = "not-needed"  # local OpenAI-compatible servers accept any key
    return openai.OpenAI(api_key=key, base_url=config.base_url, max_retries=config.max_retries,
                         timeout=config.timeout)


def _cost(config: JudgeConfig, prompt_tokens: int, completion_tokens: int) -> float:
    price = config.prices.get(config.model)
    if not price:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


class Judge:
    """Rates answers with FastChat's single-answer prompts; every paid judgment lands in the cache first."""

    def __init__(self, config: JudgeConfig, cache: JudgmentCache, client=None):
        self.config = config
        self.cache = cache
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = _client(self.config)
        return self._client

    def key(self, request: JudgeRequest, answers: tuple[str, ...]) -> str:
        return judgment_key(request.question_id, request.turn, answers, self.config.model,
                            request.prompt_name, request.system_prompt, request.user_prompt, self.config.base_url)

    def _ask(self, request: JudgeRequest, key: str) -> Judgment:
        start = time.perf_counter()
        response = self.client.chat.completions.create(
            model=self.config.model,
            messages=[{"role": "system", "content": request.system_prompt},
                      {"role": "user", "content": request.user_prompt}],
            temperature=0.0,
            max_tokens=self.config.max_tokens,
        )
        text = response.choices[0].message.content or ""
        usage = response.usage
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        return Judgment(
            key=key, question_id=request.question_id, category=request.category, turn=request.turn,
            judge_model=self.config.model, prompt_name=request.prompt_name, judgment=text,
            rating=parse_rating(text), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            cost_usd=_cost(self.config, prompt_tokens, completion_tokens),
            latency_s=time.perf_counter() - start, judge_base_url=judge_endpoint(self.config.base_url),
        )

    def judge_all(
        self,
        items: Sequence[tuple[JudgeRequest, tuple[str, ...]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[Judgment], set[int]]:
        """Judgments for all (request, answers) items in order, and the indices served from the cache.

        Raises JudgeError when the judge fails after its retries; finished judgments are already cached.
        """
        results: dict[int, Judgment] = {}
        todo: list[tuple[int, JudgeRequest, str]] = []
        for i, (request, answers) in enumerate(items):
            key = self.key(request, answers)
            cached = self.cache.get(key)
            if cached is not None:
                results[i] = cached
            else:
                todo.append((i, request, key))
        hits = set(results)
        done = len(hits)
        if progress:
            progress(done, len(items))
        if todo:
            self._run(todo, results, progress, done, len(items))
        return [results[i] for i in range(len(items))], hits

    def _run(self, todo, results, progress, done, total) -> None:
        import openai

        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            futures = {pool.submit(self._ask, request, key): i for i, request, key in todo}
            for future in as_completed(futures):
                try:
                    judgment = future.result()
                except openai.APIError as exc:
                    failure = failure or exc
                    for other in futures:
                        other.cancel()
                    continue
                self.cache.put(judgment)
                results[futures[future]] = judgment
                done += 1
                if progress:
                    progress(done, total)
        if failure is not None:
            raise JudgeError(
                f"judge {self.config.model} at {self.config.base_url or 'api.openai.com'} failed after "
                f"{self.config.max_retries} retries ({type(failure).__name__}: {_short(failure)}); "
                f"{done} of {total} judgments are kept in {self.cache.path}; re-run to resume"
            )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]
