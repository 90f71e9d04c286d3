"""The one chat-completion code path, through the official `openai` client (any compatible endpoint)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import openai

from discovery.proposer.base import ProposerError

RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {
        "thought": {"type": "string"},
        "name": {"type": "string"},
        "code": {"type": "string"},
    },
    "required": ["thought", "name", "code"],
    "additionalProperties": False,
}
RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "text")


@dataclass
class ChatReply:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    model: str


def estimate_tokens(text: str) -> int:
    """A conservative token estimate (code and JSON run ~3-4 characters per token)."""
    return len(text) // 3 + 1


class ChatClient:
    """Chat completions with the client's own retries/timeouts and structured output where supported.

    response_format: "json_schema" (OpenAI structured outputs, vLLM, llama.cpp's C++ server),
    "json_object" (JSON mode with a schema, as llama-cpp-python's server takes it), "text", or
    "auto" (json_schema, falling back to text once if the endpoint rejects it).
    """

    timeout_means = "timed out"  # what `timeout` bounds: the whole answer (a stalled stream, when streamed)

    def __init__(self, base_url: str | None, api_key: str, model: str, *, timeout: float, max_retries: int,
                 temperature: float, max_tokens: int, response_format: str = "auto", seed: int | None = None):
        if response_format not in RESPONSE_FORMATS:
            raise ProposerError(f"proposer.response_format must be one of {', '.join(RESPONSE_FORMATS)}, "
                                f"got '{response_format}'")
        self.base_url = base_url
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.response_format = response_format
        self.seed = seed
        self._requests = 0  # request i samples with seed + i: reproducible, yet not the same answer each time
        self._lock = threading.Lock()
        self.tries = max_retries + 1
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout,
                                     max_retries=max_retries)

    def complete(self, messages: list[dict[str, str]], temperature: float | None = None) -> ChatReply:
        """One answer; `temperature` overrides the client's for this request (per operator, cooler fix-ups)."""
        mode = self._mode()
        create = {} if temperature is None else {"temperature": temperature}
        try:
            return self._call(messages, mode, **create)
        except openai.BadRequestError as exc:
            if self.response_format != "auto" or mode == "text":
                raise ProposerError(f"the endpoint rejected the request: {_one_line(exc)}") from None
            with self._lock:
                self.response_format = "text"  # the endpoint has no structured output; extract from text
            return self.complete(messages, temperature)

    def probe(self, timeout: float = 30.0) -> ChatReply:
        """One token of a trivial chat, in seconds: a wrong URL, key or model fails here, before any slow work.

        A remote endpoint gets one retry and at most `timeout` seconds per try (not the proposals' own
        patience); the embedded server's client keeps its crash handling, so a CPU that cannot run the
        model fails here too.
        """
        quick = self._client.with_options(timeout=min(timeout, float(self._client.timeout)),
                                          max_retries=min(1, self._client.max_retries))
        try:
            return self._call([{"role": "user", "content": "Say OK."}], "text", max_tokens=1, client=quick)
        except openai.BadRequestError as exc:
            raise ProposerError(f"the endpoint rejected the request: {_one_line(exc)}") from None

    def _call(self, messages, mode: str, **create) -> ChatReply:
        start = time.monotonic()
        client = create.get("client") or self._client
        try:
            response = self._create(messages, mode, **create)
        except openai.APITimeoutError:
            tries = self.tries if client is self._client else client.max_retries + 1
            raise ProposerError(f"the LLM endpoint {self._where()} {self.timeout_means} after "
                                f"{tries} tries of {client.timeout}s "
                                "(raise proposer.timeout or proposer.max_retries)") from None
        except openai.APIConnectionError as exc:
            raise ProposerError(f"cannot reach the LLM endpoint {self._where()}: {_one_line(exc)}") from None
        except openai.BadRequestError:
            raise
        except openai.APIStatusError as exc:
            raise ProposerError(f"the LLM endpoint {self._where()} answered HTTP {exc.status_code} after "
                                f"{self.tries} tries: {_one_line(exc)}") from None
        latency = time.monotonic() - start
        return _reply(response, messages, latency, self.model)

    def _mode(self) -> str:
        with self._lock:
            return "json_schema" if self.response_format == "auto" else self.response_format

    def _create(self, messages, mode: str, max_tokens: int | None = None, client: openai.OpenAI | None = None,
                temperature: float | None = None, stream: bool = False):
        extra = {"stream": True} if stream else {}
        if mode == "json_schema":
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "loss_proposal", "schema": RESPONSE_SCHEMA, "strict": True}}
        elif mode == "json_object":
            extra["response_format"] = {"type": "json_object", "schema": RESPONSE_SCHEMA}
        if self.seed is not None:
            with self._lock:
                extra["seed"] = self.seed + self._requests
                self._requests += 1
        return (client or self._client).chat.completions.create(
            model=self.model, messages=messages, temperature=self.temperature if temperature is None else temperature,
            max_tokens=max_tokens or self.max_tokens, **extra)

    def _where(self) -> str:
        return self.base_url or "api.openai.com"

    def close(self) -> None:
        self._client.close()


def _reply(response, messages, latency: float, model: str) -> ChatReply:
    choice = response.choices[0] if response.choices else None
    text = (choice.message.content or "") if choice and choice.message else ""
    usage = response.usage
    prompt_tokens = usage.prompt_tokens if usage else estimate_tokens("".join(m["content"] for m in messages))
    completion_tokens = usage.completion_tokens if usage else estimate_tokens(text)
    return ChatReply(text=text, finish_reason=(choice.finish_reason if choice else "") or "",
                     prompt_tokens=prompt_tokens or 0, completion_tokens=completion_tokens or 0,
                     latency_s=latency, model=model)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
