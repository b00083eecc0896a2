"""One record as one JSON line, in the bntop float encoding (sessions/FORMAT.md, "Numbers")."""
from __future__ import annotations

import json
import math
from typing import Any

# bntop writes non-finite floats as strings so that a diverged run round-trips exactly.
_NON_FINITE = {"nan": "NaN", "inf": "inf", "-inf": "-inf"}


def _encode_float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return _NON_FINITE[repr(x)]


def _sanitize(value: Any) -> Any:
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    return value


def dumps(record: dict[str, Any]) -> str:
    """The record as one line (with its newline); NaN and infinities as bntop's strings."""
    try:
        # Fast path: most records are all finite.
        text = json.dumps(record, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_sanitize(record), allow_nan=False, separators=(",", ":"))
    return text + "\n"


def decode_float(value: Any) -> float:
    """A float field as bntop writes it (a number or "NaN", "inf", "-inf")."""
    if isinstance(value, str):
        return float({"NaN": "nan"}.get(value, value))
    return float(value)


def _number(x: float) -> str:
    # 9 significant digits: every f32 value round-trips (bntop reads these as f32).
    return "%.9g" % x if math.isfinite(x) else '"%s"' % _NON_FINITE[repr(x)]


def f32_array(values: list[float], finite: bool) -> str:
    """A JSON array of f32 values, about twice as fast and 40% shorter than json's float repr.
    `finite`: the caller knows every value is finite (the fast path)."""
    if finite:
        return "[" + ",".join(map("%.9g".__mod__, values)) + "]"
    return "[" + ",".join(map(_number, values)) + "]"


def value(v: Any) -> str:
    """One small JSON value (a scalar or a small dict/list) in bntop's encoding."""
    return json.dumps(_sanitize(v), allow_nan=False, separators=(",", ":"))
