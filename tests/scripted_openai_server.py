"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests (proposer, judge, ...).

Real HTTP, real JSON: the code under test runs its real `openai` client up to the network edge.

    with ScriptedOpenAIServer([Reply(status=429), json_reply("t", "dpo", code)]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        ...
        assert len(server.requests) == 2

Each chat-completion request takes the next scripted reply; when the script runs out, `default`
answers (a `Reply`, a string, or a callable `request_body -> Reply | str`). `server.requests` holds
every request body received (path in `body["_path"]`). A one-token request (`max_tokens=1`, the
proposer's fail-fast probe before a run) is answered "OK" and kept in `server.probes` instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer. `status` != 200 sends an error body; `delay` makes the server hang first."""

    content: str | None = ""
    status: int = 200
    delay: float = 0.0
    finish_reason: str = "stop"
    prompt_tokens: int = 100
    completion_tokens: int | None = None  # None: len(content) // 4
    raw: str | None = None  # send this body verbatim instead of a chat completion
    headers: dict[str, str] | None = None


ReplySource = Reply | str | Callable[[dict], "Reply | str"]


def json_reply(thought: str, name: str, code: str, **kw: Any) -> Reply:
    """A reply in the paper's {"thought", "name", "code"} format."""
    return Reply(json.dumps({"thought": thought, "name": name, "code": code}), **kw)


class ScriptedOpenAIServer:
    def __init__(self, replies: Iterable[ReplySource] = (), default: ReplySource | None = None,
                 model: str = "scripted-model", api_key: str | None = None):
        self.script: deque[ReplySource] = deque(replies)
        self.api_key = api_key  # when set, requests without `Authorization: Bearer <api_key>` get a 401
        self.rejected: list[str] = []  # paths of requests refused for a missing or wrong key
        self.probes: list[dict] = []  # one-token start-up checks (max_tokens=1): answered "OK", script untouched
        self.default = default
        self.model = model
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def push(self, *replies: ReplySource) -> None:
        with self._lock:
            self.script.extend(replies)

    @property
    def chat_requests(self) -> list[dict]:
        return [r for r in self.requests if r.get("_path", "").endswith("/chat/completions")]

    # ------------------------------------------------------------------ answering

    def _next(self, body: dict) -> Reply:
        with self._lock:
            self.requests.append(body)
            source = self.script.popleft() if self.script else self.default
        if source is None:
            return Reply(status=500, raw=json.dumps({"error": {"message": "script exhausted"}}))
        if callable(source) and not isinstance(source, Reply):
            source = source(body)
        return Reply(source) if isinstance(source, str) else source

    def _completion(self, reply: Reply) -> dict:
        content = reply.content
        completion = reply.completion_tokens if reply.completion_tokens is not None else len(content or "") // 4
        return {
            "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()), "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion,
                      "total_tokens": reply.prompt_tokens + completion},
        }

    def _hang(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model, "object": "model"}]}))
                else:
                    self._send(404, json.dumps({"error": {"message": "not found"}}))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self.rfile.read(length)
                    with server._lock:
                        server.rejected.append(self.path)
                    error = {"error": {"message": "invalid api key", "type": "invalid_request_error",
                                       "code": "invalid_api_key"}}
                    self._send(401, json.dumps(error))
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    body = {}
                body["_path"] = self.path
                if body.get("max_tokens") == 1 and self.path.endswith("/chat/completions"):
                    with server._lock:  # the proposer's fail-fast probe, as a real endpoint would answer it
                        server.probes.append(body)
                    self._send(200, json.dumps(server._completion(Reply("OK", completion_tokens=1))))
                    return
                reply = server._next(body)
                if reply.delay:
                    server._hang(reply.delay)
                if reply.raw is not None:
                    self._send(reply.status, reply.raw, reply.headers)
                elif reply.status != 200:
                    error = {"error": {"message": f"scripted {reply.status}", "type": "scripted", "code": None}}
                    self._send(reply.status, json.dumps(error), reply.headers)
                else:
                    self._send(200, json.dumps(server._completion(reply)), reply.headers)

        return Handler
