"""The embedded default: llama-cpp-python's OpenAI-compatible server as a child process on 127.0.0.1.

The child dies with its parent on every exit path: `close()` on normal end and exceptions, an atexit
hook for Ctrl-C and interpreter exit, and PR_SET_PDEATHSIG (Linux) for a crash or SIGKILL of the parent.
A child that dies by itself (a signal, an exit code) is named as such, restarted once, and the second
death stops the proposer (`ServerCrashed`); "cannot reach the endpoint" is for endpoints we did not start.
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
from dataclasses import dataclass
from pathlib import Path

import openai

from discovery.proposer import streamed
from discovery.proposer.base import ProposerError
from discovery.proposer.client import ChatClient

_HINT = ("set proposer.model=/path/to/model.gguf (a local GGUF file), or use an OpenAI-compatible endpoint: "
         "proposer.backend=openai proposer.base_url=http://HOST:PORT/v1 proposer.model=NAME")
_PR_SET_PDEATHSIG = 1
# llama_cpp.server with --use_extra_bufts, run as a file: the child imports llama_cpp and nothing of ours
_ENTRY = str(Path(__file__).with_name("llamacpp_main.py"))
_HINT_ANY = "; see docs/proposers.md (Embedded llama.cpp server)"
_HINTS = {"crashed (SIGILL)": "; llama-cpp-python was built for another CPU: CMAKE_ARGS='-DGGML_NATIVE=OFF' "
                              "pip install --force-reinstall --no-cache-dir llama-cpp-python" + _HINT_ANY}


class ServerCrashed(ProposerError):
    """The embedded server died by itself (signal or exit code) twice: the proposer cannot go on."""


@dataclass(frozen=True)
class ServerOptions:
    """How the embedded llama.cpp server loads the model and generates (see docs/proposers.md).

    None means llama-cpp-python's own default (what the code did before these options existed).
    """

    n_ctx: int = 8192
    n_threads: int | None = None  # generation threads; None: llama-cpp-python's default (half the cores)
    n_threads_batch: int | None = None  # prompt-processing threads; None: llama-cpp-python's (all cores)
    seed: int = 0
    extra_bufts: bool = False  # llama.cpp weight repacking (AMX/AVX-512 buffer types): crashes some VMs
    logits_all: bool | None = False  # the server's default True computes the vocabulary logits of every prompt token
    draft_tokens: int = 0  # prompt-lookup decoding: tokens guessed from the prompt per step (0: off)
    cache: bool = False  # llama-cpp-python's RAM cache of prompt states (beyond the automatic prefix reuse)
    verbose: bool = False  # the server logs prefix-cache hits and timings (bench/proposer_speed.py reads them)
    passive_wait: bool = True  # OpenMP threads sleep at barriers instead of spinning (busy CPUs: see docs)

    def environment(self) -> dict[str, str]:
        """Variables the server needs beyond the (secret-free) parent environment; the user's own win."""
        if self.passive_wait and "OMP_WAIT_POLICY" not in os.environ:
            return {"OMP_WAIT_POLICY": "PASSIVE"}
        return {}

    def arguments(self) -> list[str]:
        args = ["--n_ctx", str(self.n_ctx), "--seed", str(self.seed), "--use_extra_bufts", str(self.extra_bufts)]
        # llama-cpp-python sizes its logits buffer by the logits_all it is given, yet a draft model turns
        # logits_all on internally: without it here, every prompt-lookup request fails with HTTP 500.
        logits_all = True if self.draft_tokens > 0 else self.logits_all
        for flag, value in (("--n_threads", self.n_threads), ("--n_threads_batch", self.n_threads_batch),
                            ("--logits_all", logits_all)):
            if value is not None:
                args += [flag, str(value)]
        if self.draft_tokens > 0:
            args += ["--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens",
                     str(self.draft_tokens)]
        if self.cache:
            args += ["--cache", "True"]
        return args + ["--verbose", str(self.verbose)]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
    """Start, health-check and stop one llama.cpp server; `base_url` is its OpenAI API root.

    `launcher` is the command before the server's arguments (default: this Python running
    llamacpp_main.py); tests inject a stand-in executable there.
    """

    def __init__(self, model_path: str, *, n_ctx: int = 8192, n_threads: int | None = None, seed: int = 0,
                 start_timeout: float = 300.0, options: ServerOptions | None = None,
                 launcher: list[str] | None = None, max_crash_restarts: int = 1):
        self.model_path = model_path
        self.options = options or ServerOptions(n_ctx=n_ctx, n_threads=n_threads, seed=seed)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.start_timeout = start_timeout
        self.restarts = 0
        self.crashes: list[str] = []  # how each death was described, in order
        self.max_crash_restarts = max_crash_restarts
        self.closed = False  # close() was called: a request cut off now is no crash
        self._command = [*(launcher or [sys.executable, _ENTRY]), "--model", model_path,
                         "--host", "127.0.0.1", "--port", str(self.port), *self.options.arguments()]
        self._log = tempfile.NamedTemporaryFile(prefix="llamacpp-", suffix=".log", delete=False)
        atexit.register(self.close)
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**_child_env(), **self.options.environment()},
                                        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            self._wait_ready(self.start_timeout)
        except BaseException:
            self.close()
            raise

    def restart(self) -> None:
        """Stop whatever the server is generating and start it again on the same port."""
        if self.closed:
            raise ProposerError("the llama.cpp server was stopped (the run is ending)")
        self._stop()
        self.restarts += 1
        self._start()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ProposerError(f"the llama.cpp server {self.death()} while loading {self.model_path}; "
                                    f"log: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise ProposerError(f"the llama.cpp server did not answer within {timeout:.0f}s; log: {self.log_tail()}")

    @property
    def log_path(self) -> str:
        return self._log.name

    def log_tail(self, chars: int = 300) -> str:
        """The end of the server's output, without uvicorn's per-request lines (they say nothing of a crash)."""
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if not (line.startswith("INFO:") and '" ' in line)]
        return " ".join(" ".join(lines)[-chars:].split()) or "(empty)"

    def death(self, grace: float = 0.0) -> str | None:
        """None while the process runs; else 'crashed (SIGSEGV)' or 'exited with code N'.

        `grace`: wait this long for a process that is closing its sockets to be reaped, so a request cut
        off by the crash is not taken for a live server.
        """
        try:
            code = self.process.wait(timeout=grace) if grace else self.process.poll()
        except subprocess.TimeoutExpired:
            return None
        if code is None:
            return None
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"crashed ({name})"
        return f"exited with code {code}"

    def crashed_while(self, doing: str) -> None:
        """The process died by itself while `doing`: restart it (once per server), else raise ServerCrashed."""
        death = self.death() or "stopped"
        message = f"the llama.cpp server {death} while {doing}; log: {self.log_tail()}"
        self.crashes.append(death)
        if len(self.crashes) > self.max_crash_restarts:
            again = f" (it was restarted {self.max_crash_restarts} time(s) and died again)" \
                if self.max_crash_restarts else ""
            raise ServerCrashed(message + again + _HINTS.get(death, _HINT_ANY))
        logging.getLogger("discovery.proposer").warning("%s; restarting it", message)
        self.restart()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def _stop(self) -> None:
        if getattr(self, "process", None) is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.closed = True
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
    stops it instead, at the cost of reloading the model (seconds). Answers are streamed, so the timeout
    bounds a stall between tokens, not a long answer on a busy CPU (`streamed.py`).
    """

    timeout_means = "produced no token"

    def __init__(self, server: LlamaCppServer, *args, max_retries: int, **kwargs):
        super().__init__(server.base_url, "", *args, max_retries=0, **kwargs)
        self.server = server
        self.tries = max_retries + 1
        self._one_at_a_time = threading.Lock()

    def _create(self, messages, mode: str, **create):
        with self._one_at_a_time:
            attempt = 0
            while True:
                try:
                    stream = super()._create(messages, mode, stream=True, **create)
                    return streamed.collect(stream, messages, self.server.base_url.removesuffix("/v1"))
                except openai.APIConnectionError as exc:  # (APITimeoutError is one)
                    if self.server.closed:
                        raise ProposerError("the llama.cpp server was stopped (the run is ending)") from None
                    grace = 0.0 if isinstance(exc, openai.APITimeoutError) else 1.0
                    if self.server.death(grace) is not None:
                        self.server.crashed_while("generating")  # restarts once, then raises ServerCrashed
                        continue  # the request the crash cut off is asked again; a timeout try is not used up
                    self.server.restart()  # also after the last try: the next request finds the server free
                    attempt += 1
                    if attempt == self.tries:
                        raise


def _child_env() -> dict[str, str]:
    """The server needs no secrets: drop API keys and tokens from its environment."""
    secret = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    return {k: v for k, v in os.environ.items() if not any(s in k.upper() for s in secret)}


def ensure_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ProposerError("the llamacpp backend needs llama-cpp-python: pip install 'objective-discovery[local]'; "
                            f"or {_HINT.split('or ', 1)[1]}")
