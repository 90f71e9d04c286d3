"""A streamed chat completion collected into one answer, so that a timeout means "no progress", not "slow".

The embedded server runs on the user's own CPU, shared with training: on a busy 2-core machine a long answer
can take longer than `proposer.timeout` while tokens keep coming. Streamed, the client's read timeout applies
between tokens, so only a server that stops producing times out. The answer and its usage are assembled here
into the shape of a non-streamed `ChatCompletion` (what `client._reply` reads).

llama-cpp-python's stream carries no usage: completion tokens are counted as streamed content pieces (one per
generated token), and prompt tokens by the server's own tokenizer (`/extras/tokenize/count`) over the messages
plus the chat template's per-message framing; a server without that endpoint falls back to the estimate.
"""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace

from discovery.proposer.client import estimate_tokens

# ChatML (Qwen, the default models): "<|im_start|>role\n" ... "<|im_end|>\n" per message, and the open
# assistant turn at the end
FRAMING_TOKENS_PER_MESSAGE = 5
FRAMING_TOKENS_REPLY = 3


def collect(stream, messages: list[dict[str, str]], server_root: str) -> SimpleNamespace:
    """Read `stream` to its end. A stall or a server that dies mid-answer raises openai's APITimeoutError or
    APIConnectionError from the iteration itself (openai's `Stream` converts its transport's errors)."""
    pieces: list[str] = []
    finish_reason, usage = "", None
    try:
        for chunk in stream:
            usage = getattr(chunk, "usage", None) or usage
            for choice in chunk.choices or ():
                content = choice.delta.content if choice.delta else None
                if content:
                    pieces.append(content)
                finish_reason = choice.finish_reason or finish_reason
    finally:
        stream.close()
    text = "".join(pieces)
    if usage is None:
        usage = SimpleNamespace(prompt_tokens=prompt_tokens(messages, server_root), completion_tokens=len(pieces))
    message = SimpleNamespace(content=text)
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish_reason)], usage=usage)


def prompt_tokens(messages: list[dict[str, str]], server_root: str) -> int:
    """The prompt's tokens by the server's tokenizer, or the conservative estimate without that endpoint."""
    counted = 0
    for message in messages:
        n = _count(server_root, message["content"])
        if n is None:
            return estimate_tokens("".join(m["content"] for m in messages))
        counted += n + FRAMING_TOKENS_PER_MESSAGE
    return counted + FRAMING_TOKENS_REPLY


def _count(server_root: str, text: str) -> int | None:
    request = urllib.request.Request(f"{server_root}/extras/tokenize/count", method="POST",
                                     data=json.dumps({"input": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(json.load(response)["count"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
