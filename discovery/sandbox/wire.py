"""Length-prefixed JSON messages over pipes (never pickle: children are untrusted)."""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

HEADER = struct.Struct("!Q")
MAX_MESSAGE = 64 * 1024 * 1024


def encode(message: Any) -> bytes:
    body = json.dumps(message, allow_nan=True).encode()
    return HEADER.pack(len(body)) + body


def send(stream, message: Any) -> None:
    write_all(stream, encode(message))


def write_all(stream, data: bytes) -> None:
    fd = stream if isinstance(stream, int) else stream.fileno()
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(stream, timeout: float | None = None) -> Any | None:
    """One message, or None on EOF, timeout or a malformed/oversized message."""
    fd = stream if isinstance(stream, int) else stream.fileno()
    deadline = None if timeout is None else time.monotonic() + timeout
    header = _read_exact(fd, HEADER.size, deadline)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_MESSAGE:
        return None
    body = _read_exact(fd, size, deadline)
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
