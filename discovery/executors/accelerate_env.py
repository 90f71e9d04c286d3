"""The user's own accelerate config file (FSDP, DeepSpeed ZeRO-3, mixed precision) as the ranks' environment.

`accelerate launch --config_file F` turns F into ACCELERATE_* / FSDP_* variables that `Accelerator` (and so
TRL's trainer) reads in every rank. The training ranks here are started by the sandbox, not by
`accelerate launch`, so the same translation (accelerate's own code) runs in the trusted parent and the
variables travel to the ranks with their environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from discovery.errors import ConfigError

PREFIXES = ("ACCELERATE_", "FSDP_", "DEEPSPEED_")


def accelerate_env(config_file: str | None, processes: int) -> dict[str, str]:
    if not config_file:
        return {}
    path = Path(config_file).expanduser()
    if not path.is_file():
        raise ConfigError(f"executor.accelerate_config: no such file {path}")
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(path), "--num_processes", str(processes), "train.py"])
    try:
        args, _, _ = _validate_launch_command(args)
        env = prepare_deepspeed_cmd_env(args)[1] if args.use_deepspeed else prepare_multi_gpu_env(args)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"executor.accelerate_config {path}: {exc}") from None
    return {k: str(v) for k, v in env.items() if k.startswith(PREFIXES) and os.environ.get(k) != v}
