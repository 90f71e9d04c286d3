"""Jobs for the full-scale tests, run in IsolatedRunner children (ranks of one job where asked)."""

from __future__ import annotations

import os


def all_reduce(payload):
    """Rank and world size as seen by torch.distributed after a gloo all-reduce of the ranks over loopback."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        total = torch.tensor([float(dist.get_rank() + 1)])
        dist.all_reduce(total)
        return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": total.item(),
                "master": os.environ.get("MASTER_ADDR")}
    finally:
        dist.destroy_process_group()


def fail_on_rank(payload):
    if os.environ.get("RANK") == str(payload["rank"]):
        raise ValueError(f"rank {payload['rank']} fails on purpose")
    import time

    time.sleep(payload.get("sleep", 30))
    return "slept"


def probe_secrets(payload):
    """Where this training rank could find `payload["secret"]`: environments it can read, files under its own
    folders (HOME, cwd, TMPDIR, the output dir), and whether the judge's port answers."""
    import socket

    secret = payload["secret"].encode()
    found = []
    pids = {"self", str(os.getppid())} | {p for p in os.listdir("/proc") if p.isdigit()}
    readable = 0
    for pid in sorted(pids):
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            readable += 1
            if secret in data:
                found.append(f"/proc/{pid}/{name}")
    for root in {os.environ.get("HOME", ""), os.getcwd(), os.environ.get("TMPDIR", ""), payload["out_dir"]} - {""}:
        for folder, _, files in os.walk(root):
            for file in files:
                try:
                    with open(os.path.join(folder, file), "rb") as fh:
                        if secret in fh.read():
                            found.append(os.path.join(folder, file))
                except OSError:
                    pass
    try:
        socket.create_connection(("127.0.0.1", payload["port"]), timeout=2).close()
        reached = True
    except OSError as exc:
        reached = False
        error = f"{type(exc).__name__}: {exc}"
    return {"found": found, "readable": readable, "reached": reached, "error": None if reached else error,
            "rank": os.environ.get("RANK"), "env_keys": sorted(os.environ)}


def environment(payload):
    return {k: v for k, v in os.environ.items() if k.startswith(("ACCELERATE_", "FSDP_", "RANK", "WORLD_SIZE"))}
