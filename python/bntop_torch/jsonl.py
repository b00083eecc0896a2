"""One record as one JSON line, in the bntop float encoding (sessions/FORMAT.md, "Numbers")."""
from __future__ import annotations

import ctypes
import json
import math
from typing import Any

import torch

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


_WIDTH = 16  # " d.dddddddde+XX," : sign or space, 9 digits, exponent, separator
# The ASCII digits of 0000..9999 (and of 00..99 in the last two columns): a 9-digit mantissa is
# written as one digit and two table rows, an exponent as one row's last two digits.
_DIGITS4 = torch.tensor(
    [[ord(c) for c in f"{i:04d}"] for i in range(10000)], dtype=torch.uint8
)
# 10^k for k = -60 .. 40 (exponents of f32 values, shifted by the 8 digits after the point).
_POW10_FROM = -60
_POW10 = torch.tensor([10.0**k for k in range(_POW10_FROM, 41)], dtype=torch.float64)


def _pow10(k: torch.Tensor) -> torch.Tensor:
    return _POW10[(k - _POW10_FROM).long()]


def _column(n: int, char: str) -> torch.Tensor:
    return torch.full((n, 1), ord(char), dtype=torch.uint8)


def f32_fixed(values: torch.Tensor) -> str:
    """Every value of a finite 1-D tensor as a fixed-width JSON number (" 1.23456789e-05"), 16
    characters each with its trailing comma: value i is [16 i, 16 i + 15). Formatted with tensor
    operations, many times faster than Python's float formatting, so the writer thread holds the
    GIL (and the CPU) only briefly. 9 significant digits: every f32 round-trips."""
    x = values.detach().double().cpu().reshape(-1)
    n = x.numel()
    a = x.abs()
    zero = a == 0
    a = torch.where(zero, torch.ones_like(a), a)
    e = torch.floor(torch.log10(a))
    m = torch.round(a / _pow10(e - 8))
    # log10 can land one off near powers of ten: bring the mantissa back to 9 digits.
    off = (m >= 1e9).double() - (m < 1e8).double()
    e = e + off
    m = torch.where(off != 0, torch.round(a / _pow10(e - 8)), m)
    mantissa = torch.where(zero, torch.zeros_like(m), m).to(torch.int64)
    exponent = torch.where(zero, torch.zeros_like(e), e).to(torch.int64)
    out = torch.cat(
        (
            torch.where(x < 0, ord("-"), ord(" ")).to(torch.uint8).unsqueeze(1),
            (mantissa // 100_000_000 + ord("0")).to(torch.uint8).unsqueeze(1),
            _column(n, "."),
            _DIGITS4[(mantissa // 10_000) % 10_000],
            _DIGITS4[mantissa % 10_000],
            _column(n, "e"),
            torch.where(exponent < 0, ord("-"), ord("+")).to(torch.uint8).unsqueeze(1),
            _DIGITS4[exponent.abs()][:, 2:],
            _column(n, ","),
        ),
        dim=1,
    )
    return ctypes.string_at(out.data_ptr(), out.numel()).decode("ascii")
