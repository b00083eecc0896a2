"""The writer's number formatting: every f32 value round-trips exactly."""
from __future__ import annotations

import struct

import torch

from bntop_torch import jsonl


def as_f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def test_f32_fixed_round_trips_every_magnitude() -> None:
    g = torch.Generator().manual_seed(0)
    random = torch.randn(20000, generator=g) * torch.pow(10.0, torch.randint(-40, 39, (20000,), generator=g).float())
    powers = torch.tensor([10.0**k for k in range(-37, 38)], dtype=torch.float32)
    edges = torch.tensor(
        [0.0, -0.0, 1.0, -1.0, 9.99999999e8, 1e9, 3.4028235e38, -3.4028235e38, 1.17549435e-38, 1e-45, 1.4e-44],
        dtype=torch.float32,
    )
    # Values next to powers of ten, where log10 can land one off.
    near = torch.cat([torch.nextafter(powers, torch.zeros_like(powers)), torch.nextafter(powers, powers * 2)])
    values = torch.cat([random.float(), powers, -powers, edges, near])
    values = values[values.isfinite()]
    text = jsonl.f32_fixed(values)
    assert len(text) == 16 * values.numel()
    parsed = [float(text[16 * i : 16 * i + 15]) for i in range(values.numel())]
    for v, p in zip(values.tolist(), parsed):
        assert as_f32(p) == v, (v, p)
