"""The optimizer-step side of the measurement and the one packed tensor per step.

Before the update: the running statistics after the forward's update, γ, β, their gradients and
the feeding weight's row dot products (with a copy of the weight); after it: the weight's change.
All of it goes into one flat tensor on the device, copied to the host once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from . import stats
from .hooks import BnLayer


def _grad(p: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if p is None else p.grad


def _clone(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().float().clone()


@dataclass
class _WeightState:
    weight: torch.Tensor
    before: torch.Tensor
    norm_sq_pre: torch.Tensor
    dot_g: torch.Tensor
    grad_norm_sq: torch.Tensor
    norm_sq_post: Optional[torch.Tensor] = None
    dot_dw: Optional[torch.Tensor] = None
    dw_norm_sq: Optional[torch.Tensor] = None


@dataclass
class _LayerStep:
    running_mean_post: Optional[torch.Tensor]
    running_var_post: Optional[torch.Tensor]
    gamma: Optional[torch.Tensor]
    beta: Optional[torch.Tensor]
    grad_gamma: Optional[torch.Tensor]
    grad_beta: Optional[torch.Tensor]


@dataclass
class StepMeasure:
    layers: list[BnLayer]
    # The feeding layers' weight metrics: the costliest part (a copy of the weights and about
    # 16 passes over them per step); False leaves them out.
    weight_metrics: bool = True
    # Reused weight copies: no allocation per step once warm.
    _buffers: dict[int, torch.Tensor] = field(default_factory=dict)
    _weights: dict[int, _WeightState] = field(default_factory=dict)
    _steps: dict[int, _LayerStep] = field(default_factory=dict)
    _nan: dict[tuple[int, torch.device], torch.Tensor] = field(default_factory=dict)
    _scratch: stats.Scratch = field(default_factory=stats.Scratch)

    def before_update(self, full: bool = True) -> None:
        """Called in the optimizer's step pre-hook (gradients are there, weights not updated)."""
        self._weights.clear()
        self._steps.clear()
        if not full:
            return
        for layer in self.layers:
            if layer.capture is None:
                continue
            m = layer.module
            self._steps[layer.index] = _LayerStep(
                running_mean_post=_clone(m.running_mean) if layer.tracks else None,
                running_var_post=_clone(m.running_var) if layer.tracks else None,
                gamma=_clone(m.weight),
                beta=_clone(m.bias),
                grad_gamma=_clone(_grad(m.weight)),
                grad_beta=_clone(_grad(m.bias)),
            )
            feeder = layer.feeder
            if feeder is None or not self.weight_metrics or id(feeder) in self._weights:
                continue
            weight = feeder.weight
            if not isinstance(weight, torch.Tensor) or weight.grad is None:
                continue
            w, g = weight.detach(), weight.grad
            buf = self._buffers.get(id(feeder))
            if buf is None or buf.shape != w.shape or buf.dtype != w.dtype:
                buf = self._buffers[id(feeder)] = torch.empty_like(w)
            buf.copy_(w)
            self._weights[id(feeder)] = _WeightState(
                weight=weight,
                before=buf,
                norm_sq_pre=stats.row_norm_sq(w),
                dot_g=stats.row_dot(w, g, self._scratch),
                grad_norm_sq=stats.row_norm_sq(g),
            )

    def after_update(self) -> None:
        """Called in the optimizer's step post-hook: the weights have moved."""
        for state in self._weights.values():
            w = state.weight.detach()
            # The step dw replaces the copy in place; then before . dw = w . dw - dw . dw, and
            # |w|^2 = |before|^2 + 2 before . dw + |dw|^2 (float64: no pass over w for its norm).
            dw = torch.sub(w, state.before, out=state.before)
            state.dw_norm_sq = stats.row_norm_sq(dw)
            state.dot_dw = stats.row_dot(w, dw, self._scratch) - state.dw_norm_sq
            state.norm_sq_post = state.norm_sq_pre + 2 * state.dot_dw + state.dw_norm_sq

    def _nans(self, n: int, device: torch.device) -> torch.Tensor:
        key = (n, device)
        if key not in self._nan:
            self._nan[key] = torch.full((n,), math.nan, device=device)
        return self._nan[key]

    def pieces(self, device: torch.device) -> list[torch.Tensor]:
        """Every quantity of every layer, quantity-major (stats.QUANTITIES), NaN where unknown,
        followed by each layer's num_batches_tracked (NaN when not tracked)."""
        per_layer: list[dict[str, Optional[torch.Tensor]]] = []
        for layer in self.layers:
            values: dict[str, Optional[torch.Tensor]] = {}
            cap = layer.capture
            if cap is not None:
                values.update(
                    batch_mean=cap.batch_mean,
                    batch_var=cap.batch_var,
                    running_mean_pre=cap.running_mean_pre,
                    running_var_pre=cap.running_var_pre,
                )
                if cap.relu is not None:
                    values.update(zip(("relu_mean", "relu_var", "relu_active"), cap.relu))
            step = self._steps.get(layer.index)
            if step is not None:
                values.update(vars(step))
            ws = self._weights.get(id(layer.feeder)) if layer.feeder is not None else None
            if ws is not None and ws.norm_sq_post is not None:
                values.update(
                    w_norm_sq_pre=ws.norm_sq_pre,
                    w_dot_g=ws.dot_g,
                    g_norm_sq=ws.grad_norm_sq,
                    w_norm_sq_post=ws.norm_sq_post,
                    w_dot_dw=ws.dot_dw,
                    dw_norm_sq=ws.dw_norm_sq,
                )
            per_layer.append(values)
        out: list[torch.Tensor] = []
        for name in stats.QUANTITIES:
            for layer, values in zip(self.layers, per_layer):
                t = values.get(name)
                out.append(
                    self._nans(layer.channels, device) if t is None else t.to(device, torch.float32)
                )
        for layer in self.layers:
            nbt = layer.module.num_batches_tracked
            out.append(
                nbt.detach().to(device, torch.float32).reshape(1)
                if layer.tracks and nbt is not None
                else self._nans(1, device)
            )
        return out
