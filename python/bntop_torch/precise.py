"""PreciseBN (BN-METRICS §3): population statistics of every BN input over a loader's batches,
with batch statistics upstream, without disturbing the model (unless asked to apply them)."""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch
from torch import nn

from . import stats
from .hooks import BnLayer


class _Sums:
    def __init__(self) -> None:
        self.batches = 0
        self.elements = 0  # per channel, summed over batches
        self.mean: Optional[torch.Tensor] = None
        self.mean_sq: Optional[torch.Tensor] = None
        self.var: Optional[torch.Tensor] = None

    def add(self, x: torch.Tensor) -> None:
        mean, var = stats.channel_moments(x)
        mean, var = mean.double(), var.double()
        if self.mean is None:
            self.mean, self.mean_sq, self.var = mean, mean * mean, var
        else:
            assert self.mean_sq is not None and self.var is not None
            self.mean, self.mean_sq, self.var = self.mean + mean, self.mean_sq + mean * mean, self.var + var
        self.batches += 1
        self.elements += x.numel() // x.shape[1]


def _inputs(batch: Any) -> Any:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


@torch.no_grad()
def population(
    model: nn.Module,
    layers: list[BnLayer],
    loader: Iterable[Any],
    max_batches: int,
    device: torch.device,
    apply_to: Optional[list[int]] = None,
) -> tuple[dict[str, Any], int]:
    """The `population` record's fields (without step) and the samples seen. Every BN runs on its
    batch statistics; running statistics and modes are restored afterwards, except that the
    layers in `apply_to` get the population statistics (variance Bessel-corrected, as stored)."""
    sums = [_Sums() for _ in layers]
    saved_training = {m: m.training for m in model.modules()}
    saved_buffers = [
        tuple(t.clone() for t in layer.running()) if layer.tracks else None for layer in layers
    ]
    handles = [
        layer.module.register_forward_pre_hook(lambda m, args, s=s: s.add(args[0]))
        for layer, s in zip(layers, sums)
    ]
    pins = [layer.pinned for layer in layers]
    samples = 0
    try:
        for layer in layers:
            layer.pinned = None
        model.train()
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            x = _inputs(batch).to(device)
            samples += int(x.shape[0])
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in saved_training.items():
            m.training = training
        for layer, pin, saved in zip(layers, pins, saved_buffers):
            layer.pinned = pin
            if saved is not None:
                for buffer, value in zip(layer.running(), saved):
                    buffer.copy_(value)

    out_layers = []
    batches = 0
    for layer, s, saved in zip(layers, sums, saved_buffers):
        if s.mean is None or s.mean_sq is None or s.var is None:
            nan = [math.nan] * layer.channels
            out_layers.append(
                dict(mean=nan, var=nan, var_ratio=math.nan, n_eff=math.nan, predicted_ratio=math.nan, running_var_ratio=math.nan)
            )
            continue
        batches = max(batches, s.batches)
        mu = s.mean / s.batches
        mean_sq = s.mean_sq / s.batches
        var_b = s.var / s.batches
        var_pop = var_b + mean_sq - mu * mu
        var_of_means = (mean_sq - mu * mu).clamp(min=0)
        # Harmonic mean over channels of n_eff = σ²_pop / Var(μ_B).
        inv = (var_of_means / var_pop).mean().item()
        n_eff = 1.0 / inv if inv > 0 else math.inf
        running_ratio = (saved[1].double().cpu() / var_pop.cpu()).mean().item() if saved is not None else math.nan
        out_layers.append(
            dict(
                mean=mu.float().tolist(),
                var=var_pop.float().tolist(),
                var_ratio=(var_b / var_pop).mean().item(),
                n_eff=n_eff,
                predicted_ratio=1.0 - 1.0 / n_eff,
                running_var_ratio=running_ratio,
            )
        )
        if apply_to is not None and layer.index in apply_to and layer.tracks:
            n = s.elements / s.batches
            running_mean, running_var, _ = layer.running()
            running_mean.copy_(mu.to(running_mean))
            running_var.copy_((var_pop * n / max(n - 1, 1)).to(running_var))
    # The loader's own order is not known: "shuffled" assumes a shuffling training loader.
    record = {"samples": samples, "order": "shuffled", "order_batches": batches, "layers": out_layers}
    return record, samples
