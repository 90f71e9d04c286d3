"""Strict JSON for every `--json` output: NaN and +-Infinity become null, so jq, JavaScript and pandas read it.

Python's `json` writes `NaN`/`Infinity`/`-Infinity` by default, which is not JSON (RFC 8259). `strict(value)`
maps every non-finite float (also numpy/torch scalars and arrays) to None, recursively; `dumps` then refuses
anything non-finite that is left (allow_nan=False), so a new code path cannot quietly print invalid JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from typing import Any, TextIO


def strict(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, in dicts, lists, tuples, sets and dataclasses."""
    if isinstance(value, dict):
        return {_key(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [strict(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return strict(dataclasses.asdict(value))
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist") and not isinstance(value, bytes | bytearray):  # numpy / torch scalars and arrays
        return strict(value.tolist())
    return value  # anything else is written by `default=str`


def _key(key: Any) -> Any:
    if isinstance(key, float) and not math.isfinite(key):
        return str(key)  # a dict key must stay unique; json writes float keys as strings anyway
    return key


def dumps(value: Any, indent: int | None = 2) -> str:
    return json.dumps(strict(value), indent=indent, default=str, allow_nan=False)


def print_json(value: Any, file: TextIO | None = None) -> None:
    out = file or sys.stdout
    out.write(dumps(value))
    out.write("\n")


def loads_strict(text: str) -> Any:
    """Parse like a strict JSON parser (jq, JavaScript): NaN, Infinity and -Infinity are errors."""
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")
