"""The embedded server's entry point: llama-cpp-python's OpenAI server, plus `--use_extra_bufts true|false`.

llama.cpp's CPU backend may repack the weights into "extra buffer types" (AMX tiles, AVX-512/AVX2
interleaved blocks) at load time. On a VM that advertises AMX/AVX-512 flags it does not really provide,
the first generation then dies with a general protection fault in libggml-cpu. llama-cpp-python 0.3.36
has the switch in `llama_model_params.use_extra_bufts` but exposes it neither in `Llama(...)` nor in its
server's settings, so this wrapper sets it on the default model parameters every `Llama` starts from.

    python discovery/proposer/llamacpp_main.py --use_extra_bufts false --model M.gguf --port 8000 ...
"""

from __future__ import annotations

import os
import sys

_FLAG = "--use_extra_bufts"


def pop_flag(argv: list[str]) -> tuple[bool, list[str]]:
    """(use_extra_bufts, the remaining arguments); the default is False: no repacking."""
    if _FLAG not in argv:
        return False, argv
    i = argv.index(_FLAG)
    if i + 1 >= len(argv) or argv[i + 1].lower() not in ("true", "false", "1", "0"):
        raise SystemExit(f"{_FLAG} takes true or false")
    return argv[i + 1].lower() in ("true", "1"), argv[:i] + argv[i + 2:]


def set_extra_bufts(enabled: bool) -> None:
    import llama_cpp.llama_cpp as bindings

    default = bindings.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = enabled
        return p

    bindings.llama_model_default_params = params  # `Llama.__init__` looks it up here at load time


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]  # run as a file: our client.py, base.py, ... must not shadow the server's imports
    enabled, sys.argv[1:] = pop_flag(sys.argv[1:])
    set_extra_bufts(enabled)
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
