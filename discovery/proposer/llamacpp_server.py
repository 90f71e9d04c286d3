"""The embedded default: llama-cpp-python's OpenAI-compatible server as a child process on 127.0.0.1.

The child dies with its parent on every exit path: `close()` on normal end and exceptions, an atexit
hook for Ctrl-C and interpreter exit, and PR_SET_PDEATHSIG (Linux) for a crash or SIGKILL of the parent.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import openai

from discovery.proposer.base import ProposerError
from discovery.proposer.client import ChatClient

_HINT = ("set proposer.model=/path/to/model.gguf (a local GGUF file), or use an OpenAI-compatible endpoint: "
         "proposer.backend=openai proposer.base_url=http://HOST:PORT/v1 proposer.model=NAME")
_PR_SET_PDEATHSIG = 1


def resolve_model(model: str) -> str:
    """A local .gguf path as is, or a hub 'repo:file' pair downloaded once into the huggingface_hub cache."""
    path = Path(model).expanduser()
    if path.is_file():
        return str(path)
    if model.endswith(".gguf") and ":" not in model:
        raise ProposerError(f"no local model: the GGUF file '{model}' does not exist; {_HINT}")
    if model.count(":") != 1:
        raise ProposerError(f"no local model: '{model}' is neither a .gguf file nor a hub 'repo:file' pair; {_HINT}")
    repo, filename = model.split(":")
    from huggingface_hub import hf_hub_download  # (configures its logger on import)

    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry warnings would bury the one line that says what to do
    try:
        return hf_hub_download(repo_id=repo, filename=filename)
    except Exception as exc:  # offline, unknown repo, no such file: all mean "no model reachable"
        reason = " ".join(str(exc).split())[:160]
        raise ProposerError(f"no local model: cannot get '{filename}' from the hub repo '{repo}' ({reason}); "
                            f"{_HINT}") from None
    finally:
        hub_log.setLevel(level)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGKILL when the parent dies (SIGTERM would wait for an in-flight generation)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class LlamaCppServer:
    """Start, health-check and stop one llama.cpp server; `base_url` is its OpenAI API root."""

    def __init__(self, model_path: str, *, n_ctx: int, n_threads: int | None = None, seed: int = 0,
                 start_timeout: float = 300.0):
        self.model_path = model_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.start_timeout = start_timeout
        self.restarts = 0
        self._command = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1",
                         "--port", str(self.port), "--n_ctx", str(n_ctx), "--seed", str(seed), "--verbose", "False"]
        if n_threads:
            self._command += ["--n_threads", str(n_threads)]
        self._log = tempfile.NamedTemporaryFile(prefix="llamacpp-", suffix=".log", delete=False)
        atexit.register(self.close)
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True, env=_child_env(),
                                        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            self._wait_ready(self.start_timeout)
        except BaseException:
            self.close()
            raise

    def restart(self) -> None:
        """Stop whatever the server is generating and start it again on the same port."""
        self._stop()
        self.restarts += 1
        self._start()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProposerError(f"the llama.cpp server exited with code {self.process.returncode} while "
                                    f"loading {self.model_path}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise ProposerError(f"the llama.cpp server did not answer within {timeout:.0f}s; log: {self.log_tail()}")

    def log_tail(self, chars: int = 300) -> str:
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text[-chars:].split())

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self._stop()
        self._log.close()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass
        atexit.unregister(self.close)


class EmbeddedChatClient(ChatClient):
    """The chat client of the embedded server: one request at a time, and a timed-out request is really stopped.

    The server runs one generation at a time anyway, so serializing here keeps a queued request's timeout from
    counting another request's generation. llama-cpp-python finishes a non-streamed generation even after the
    client has gone, so a plain retry would queue behind the abandoned one (and time out in turn); a restart
    stops it instead, at the cost of reloading the model (seconds).
    """

    def __init__(self, server: LlamaCppServer, *args, max_retries: int, **kwargs):
        super().__init__(server.base_url, "", *args, max_retries=0, **kwargs)
        self.server = server
        self.tries = max_retries + 1
        self._one_at_a_time = threading.Lock()

    def _create(self, messages, mode: str):
        with self._one_at_a_time:
            for attempt in range(self.tries):
                try:
                    return super()._create(messages, mode)
                except openai.APIConnectionError:  # (APITimeoutError is one)
                    self.server.restart()  # also after the last try: the next request finds the server free
                    if attempt + 1 == self.tries:
                        raise
        raise AssertionError("unreachable")


def _child_env() -> dict[str, str]:
    """The server needs no secrets: drop API keys and tokens from its environment."""
    secret = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    return {k: v for k, v in os.environ.items() if not any(s in k.upper() for s in secret)}


def ensure_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ProposerError("the llamacpp backend needs llama-cpp-python: pip install 'objective-discovery[local]'; "
                            f"or {_HINT.split('or ', 1)[1]}")
