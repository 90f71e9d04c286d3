"""A stand-in for the llama.cpp server executable: serves /v1 like llama_cpp.server, and can die mid-request.

    python tests/standin_llama_server.py --state DIR --crash first|always|never [llama_cpp.server args...]

It takes the real server's arguments (--model, --port, ... are accepted; --port is used) so
`LlamaCppServer(launcher=[python, this file, ...])` runs it in place of the real one. Every start
appends its pid to DIR/pids; every chat request appends to DIR/requests. --crash first: the first chat
request of all starts together SIGSEGVs the process after reading it; always: every one does.
A streamed request (`"stream": true`) is answered as server-sent events, one piece of the answer per event,
--token-delay seconds apart; --stall-after N stops sending (but keeps the connection) after N pieces.
POST /extras/tokenize/count counts whitespace-separated words, like the real endpoint counts tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

CODE = """import torch.nn.functional as F


def standin_margin(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                   beta):
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * margin) + 0.01 * margin ** 2
"""
ANSWER = json.dumps({"thought": "a margin loss with a square penalty", "name": "standin_margin", "code": CODE})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    parser.add_argument("--crash", choices=["first", "always", "never"], default="never")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="standin")
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--stall-after", type=int, default=-1)
    args, _rest = parser.parse_known_args()
    state = Path(args.state)
    with open(state / "pids", "a") as f:
        f.write(f"{os.getpid()}\n")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def _send(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send({"object": "list", "data": [{"id": args.model, "object": "model", "owned_by": "me"}]})

        def _stream(self, content: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [content[i:i + 16] for i in range(0, len(content), 16)]
            for i, piece in enumerate(pieces):
                if i == args.stall_after:
                    time.sleep(3600)
                time.sleep(args.token_delay)
                last = i == len(pieces) - 1
                chunk = {"id": "standin", "object": "chat.completion.chunk", "created": 0, "model": args.model,
                         "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": "stop" if last else None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path.endswith("/extras/tokenize/count"):
                self._send({"count": len(body["input"].split())})
                return
            with open(state / "requests", "a") as f:
                f.write(json.dumps(body) + "\n")
            seen = len((state / "requests").read_text().splitlines())
            if args.crash == "always" or (args.crash == "first" and seen == 1):
                print("ggml: about to fault in the stand-in", flush=True)
                os.kill(os.getpid(), signal.SIGSEGV)
            content = "OK" if body.get("max_tokens") == 1 else ANSWER
            if body.get("stream"):
                self._stream(content)
                return
            time.sleep(args.token_delay * -(-len(content) // 16))  # as long as the same answer streamed
            self._send({"id": "standin", "object": "chat.completion", "created": 0, "model": args.model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
