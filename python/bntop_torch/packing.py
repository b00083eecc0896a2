"""The optimizer-step side of the measurement and the one packed tensor per step.

Before the update: the running statistics after the forward's update, γ, β, their gradients and
the feeding weight's row dot products (with a copy of the weight); after it: the weight's change.
All of it goes into one flat tensor on the device, copied to the host once.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from . import stats
from .budget import MeasureBudget
from .hooks import BnLayer, finish_captures
from .weight_step import SgdStep, momentum_buffer, sgd_step


def _grad(p: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if p is None else p.grad


@dataclass
class _WeightState:
    weight: torch.Tensor
    # Per row, in the weight's dtype: |w|, w.g and |g| before the update.
    norm_pre: torch.Tensor
    dot_g: torch.Tensor
    grad_norm: torch.Tensor
    # How the step is measured (weight_step): plain SGD's rule, or else a copy of w.
    sgd: Optional[SgdStep] = None
    before: Optional[torch.Tensor] = None
    # Per row, once the step is known: |v| and w'.v of a vector v with dw = scale·v.
    step_norm: Optional[torch.Tensor] = None
    post_dot: Optional[torch.Tensor] = None
    scale: float = 1.0


# What the optimizer step may change, read before it: (quantity, its tensor for a layer).
_PRE_STEP: tuple[tuple[str, Callable[[BnLayer], Optional[torch.Tensor]]], ...] = (
    ("running_mean_post", lambda layer: layer.module.running_mean if layer.tracks else None),
    ("running_var_post", lambda layer: layer.module.running_var if layer.tracks else None),
    ("gamma", lambda layer: layer.module.weight),
    ("beta", lambda layer: layer.module.bias),
    ("grad_gamma", lambda layer: _grad(layer.module.weight)),
    ("grad_beta", lambda layer: _grad(layer.module.bias)),
)
# The per-row weight products, in stats.weight_products' order.
_WEIGHT_QUANTITIES = ("w_norm_sq_pre", "w_dot_g", "g_norm_sq", "w_norm_sq_post", "w_dot_dw", "dw_norm_sq")


@dataclass
class StepMeasure:
    layers: list[BnLayer]
    # Whose step moves the feeding weights (weight_step reads plain SGD's rule from it).
    optimizer: Optional[torch.optim.Optimizer] = None
    # The feeding layers' weight metrics: the costliest part (five passes over the weights per
    # step, and a copy of them unless the optimizer is plain SGD); False leaves them out.
    weight_metrics: bool = True
    # Whether this step's weight passes run (the measurement budget, budget.py), and the budget
    # they are charged to.
    weights_due: bool = True
    budget: Optional[MeasureBudget] = None
    # Reused weight copies: no allocation per step once warm.
    _buffers: dict[int, torch.Tensor] = field(default_factory=dict)
    _weights: dict[int, _WeightState] = field(default_factory=dict)
    # Per layer index, its _PRE_STEP values (views into one tensor copied before the update).
    _steps: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    _nan: dict[tuple[int, torch.device], torch.Tensor] = field(default_factory=dict)
    # Shared with the taps (watch passes it on): one buffer for every elementwise intermediate.
    scratch: stats.Scratch = field(default_factory=stats.Scratch)

    def before_update(self, full: bool = True) -> None:
        """Called in the optimizer's step pre-hook (gradients are there, weights not updated).
        Small per-layer values are copied with one torch.cat (not one copy each: on CPU every
        small op costs tens of microseconds between training's big ones)."""
        self._weights.clear()
        self._steps.clear()
        if not full:
            return
        measured = [layer for layer in self.layers if layer.capture is not None]
        device = next((t.device for layer in measured for _, get in _PRE_STEP if (t := get(layer)) is not None), None)
        if device is not None:
            parts = []
            for _, get in _PRE_STEP:
                for layer in measured:
                    t = get(layer)
                    parts.append(self._nans(layer.channels, device) if t is None else t.detach().reshape(-1))
            copied = torch.cat(parts).split([layer.channels for _ in _PRE_STEP for layer in measured])
            for q, (name, _) in enumerate(_PRE_STEP):
                for k, layer in enumerate(measured):
                    self._steps.setdefault(layer.index, {})[name] = copied[q * len(measured) + k]
        if self.weight_metrics and self.weights_due:
            with self._spending():
                self._weights_before_update(measured)

    def _spending(self) -> contextlib.AbstractContextManager[None]:
        return self.budget.spending() if self.budget is not None else contextlib.nullcontext()

    def _weights_before_update(self, measured: list[BnLayer]) -> None:
        for layer in measured:
            feeder = layer.feeder
            if feeder is None or id(feeder) in self._weights:
                continue
            weight = feeder.weight
            if not isinstance(weight, torch.Tensor) or weight.grad is None:
                continue
            w, g = weight.detach(), weight.grad
            state = _WeightState(
                weight=weight,
                norm_pre=stats.row_norm(w),
                dot_g=stats.row_dot(w, g, self.scratch),
                grad_norm=stats.row_norm(g),
                sgd=sgd_step(self.optimizer, weight) if self.optimizer is not None else None,
            )
            if state.sgd is None:
                buf = self._buffers.get(id(feeder))
                if buf is None or buf.shape != w.shape or buf.dtype != w.dtype:
                    buf = self._buffers[id(feeder)] = torch.empty_like(w)
                state.before = buf.copy_(w)
            elif not state.sgd.momentum:
                dd, wd = state.sgd.without_momentum(state.norm_pre, state.dot_g, state.grad_norm)
                state.step_norm, state.post_dot = dd.sqrt(), wd + dd
            self._weights[id(feeder)] = state

    def after_update(self) -> None:
        """Called in the optimizer's step post-hook: the weights have moved."""
        if self._weights:
            with self._spending():
                self._weights_after_update()

    def _weights_after_update(self) -> None:
        for state in self._weights.values():
            w = state.weight.detach()
            if state.before is not None:
                # The step dw replaces the copy in place.
                dw = torch.sub(w, state.before, out=state.before)
                state.step_norm, state.post_dot = stats.row_norm(dw), stats.row_dot(w, dw, self.scratch)
            elif state.sgd is not None and state.sgd.momentum and self.optimizer is not None:
                # dw = -lr·b, b the momentum buffer after the step.
                buf = momentum_buffer(self.optimizer, state.weight)
                if buf is not None:
                    state.step_norm, state.post_dot = stats.row_norm(buf), stats.row_dot(w, buf, self.scratch)
                    state.scale = -state.sgd.lr

    def _weight_products(self) -> dict[int, torch.Tensor]:
        """Per feeder id, its (6, rows) block of stats.weight_products, all feeders at once (in
        float64: w.dw = w'.dw - |dw|², where w'.dw and |dw|² are near each other)."""
        done = [(key, s) for key, s in self._weights.items() if s.step_norm is not None and s.post_dot is not None]
        if not done:
            return {}
        cat = lambda name: torch.cat([getattr(s, name).reshape(-1).double() for _, s in done])  # noqa: E731
        rows = [s.norm_pre.numel() for _, s in done]
        scale = stats.repeated([s.scale for _, s in done], [s.norm_pre for _, s in done])
        dd = (scale * cat("step_norm")).square()
        wd = scale * cat("post_dot") - dd
        blocks = stats.weight_products(cat("norm_pre"), cat("dot_g"), cat("grad_norm"), dd, wd).split(rows, dim=1)
        return {key: block for (key, _), block in zip(done, blocks)}

    def _nans(self, n: int, device: torch.device) -> torch.Tensor:
        key = (n, device)
        if key not in self._nan:
            self._nan[key] = torch.full((n,), math.nan, device=device)
        return self._nan[key]

    def pieces(self, device: torch.device) -> list[torch.Tensor]:
        """Every quantity of every layer, quantity-major (stats.QUANTITIES), NaN where unknown,
        followed by each layer's num_batches_tracked (NaN when not tracked)."""
        finish_captures(self.layers)
        per_layer: list[dict[str, Optional[torch.Tensor]]] = []
        products = self._weight_products()
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
            values.update(self._steps.get(layer.index, {}))
            block = products.get(id(layer.feeder)) if layer.feeder is not None else None
            if block is not None:
                values.update(zip(_WEIGHT_QUANTITIES, block))
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
