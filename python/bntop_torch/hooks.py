"""Finding the BatchNorm layers, what feeds them and what consumes them, through module hooks.

A conv or linear layer "feeds" a BN when its output tensor is the BN's input (tensor identity);
an nn.ReLU "consumes" a BN when its input is the BN's output. Only forwards with gradients
enabled (training forwards) are measured: evaluations under no_grad leave the step's numbers
alone.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import stats
from .budget import MeasureBudget
from .stopwatch import Stopwatch
from .threads import on_single_thread

# Modules whose output may feed a BN and whose weight rows are the BN's channels.
FEEDERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_KIND_BY_DIM = {2: "bn1d", 3: "bn1d", 4: "bn2d", 5: "bn3d"}


@dataclass
class Capture:
    """What one layer's last training forward measured (device tensors)."""

    mode_train: bool
    running_mean_pre: Optional[torch.Tensor]
    running_var_pre: Optional[torch.Tensor]
    batch_mean: Optional[torch.Tensor] = None
    batch_var: Optional[torch.Tensor] = None
    # BN's saved 1/sqrt(var + eps), until finish_captures turns it into batch_var.
    batch_invstd: Optional[torch.Tensor] = None
    eps: float = 0.0
    # stats.relu_sums of the consuming ReLU's output and its values per channel, until
    # finish_captures turns them into `relu` (mean, variance, active fraction).
    relu_sums: Optional[tuple[torch.Tensor, int]] = None
    relu: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None


@dataclass
class BnLayer:
    index: int
    name: str
    module: _BatchNorm
    sync: bool
    # Set by set_mode: "train" or "eval" survives the user's model.train()/eval() calls.
    pinned: Optional[str] = None
    feeder_name: Optional[str] = None
    feeder: Optional[nn.Module] = None
    kind: Optional[str] = None
    input_shape: Optional[tuple[int, ...]] = None
    feeder_input_shape: Optional[tuple[int, ...]] = None
    capture: Optional[Capture] = None

    @property
    def channels(self) -> int:
        return int(self.module.num_features)

    @property
    def tracks(self) -> bool:
        return self.module.track_running_stats and self.module.running_mean is not None

    def running(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Running mean, running variance and num_batches_tracked (a layer that tracks them)."""
        m = self.module
        rm, rv, nbt = m.running_mean, m.running_var, m.num_batches_tracked
        assert rm is not None and rv is not None and nbt is not None, f"{self.name} tracks no running statistics"
        return rm, rv, nbt

    @property
    def affine(self) -> bool:
        return self.module.weight is not None


def find_bn_layers(model: nn.Module) -> list[BnLayer]:
    return [
        BnLayer(i, name, m, isinstance(m, nn.SyncBatchNorm))
        for i, (name, m) in enumerate(
            (n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm)
        )
    ]


@dataclass
class Taps:
    """The hooks on one model. `active()` says whether a forward should be measured."""

    model: nn.Module
    layers: list[BnLayer]
    active: Callable[[], bool]
    on_training_forward: Callable[[], None]
    stopwatch: Stopwatch = field(default_factory=Stopwatch)
    # Called when a training forward returns: what waits for the writer thread is handed over
    # then, so it encodes during the backward (no Python there to contend with for the GIL).
    on_training_forward_end: Callable[[], None] = lambda: None
    scratch: stats.Scratch = field(default_factory=stats.Scratch)
    learn_topology: bool = True
    # Whether this step's ReLU means and variances are wanted (its snapshot keeps per-channel
    # arrays); without them a ReLU costs one pass (its active fraction) instead of three.
    relu_moments: bool = True
    # Whether this step's ReLU passes run at all (the measurement budget, budget.py).
    relu_active: bool = True
    budget: Optional[MeasureBudget] = None
    # Ranks other than 0 only need the batch moments (for the per-rank drift).
    batch_only: bool = False
    _bn_outputs: dict[int, tuple[torch.Tensor, BnLayer]] = field(default_factory=dict)
    _feeder_outputs: dict[int, tuple[torch.Tensor, str, nn.Module, tuple[int, ...]]] = field(
        default_factory=dict
    )
    # Every tracking layer's running mean and variance as the forward starts (views into one
    # copy), taken by the layer's first call in that forward.
    _running_at_start: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _handles: list[Any] = field(default_factory=list)
    _feeder_handles: list[Any] = field(default_factory=list)

    def install(self) -> None:
        def timed(fn: Callable[..., None]) -> Callable[..., None]:
            return self.stopwatch.wrap(on_single_thread(fn))

        self._handles.append(self.model.register_forward_pre_hook(timed(self._model_pre)))
        self._handles.append(self.model.register_forward_hook(timed(self._model_post)))
        for layer in self.layers:
            bn = layer.module
            self._handles.append(bn.register_forward_pre_hook(timed(self._bn_pre_hook(layer))))
            self._handles.append(bn.register_forward_hook(timed(self._bn_post_hook(layer))))
        for m in self.model.modules():
            if isinstance(m, nn.ReLU):
                self._handles.append(m.register_forward_hook(timed(self._relu_hook)))
        names = {id(m): n for n, m in self.model.named_modules()}
        for m in self.model.modules():
            if isinstance(m, FEEDERS):
                self._feeder_handles.append(
                    m.register_forward_hook(timed(self._feeder_hook(names[id(m)])))
                )

    def stop_learning_topology(self) -> None:
        """The header is out: which module feeds which BN is fixed now; drop those hooks."""
        self.learn_topology = False
        for h in self._feeder_handles:
            h.remove()
        self._feeder_handles.clear()
        self._feeder_outputs.clear()

    def remove(self) -> None:
        for h in self._handles + self._feeder_handles:
            h.remove()
        self._handles.clear()
        self._feeder_handles.clear()
        self.forget_outputs()

    def forget_outputs(self) -> None:
        """Drop the references to activations kept for identity matching."""
        self._bn_outputs.clear()
        self._feeder_outputs.clear()

    def _measuring(self) -> bool:
        return torch.is_grad_enabled() and self.active()

    def _model_pre(self, module: nn.Module, args: Any) -> None:
        self.forget_outputs()
        self._running_at_start.clear()
        if self._measuring():
            self._running_at_start = _copy_running(self.layers)
            self.on_training_forward()

    def _model_post(self, module: nn.Module, args: Any, output: Any) -> None:
        # The outputs are matched within the forward only; kept longer, they would outlive the
        # backward that frees them (a BN output that only feeds an addition is not saved).
        self.forget_outputs()
        if self._measuring():
            self.on_training_forward_end()

    def _feeder_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.learn_topology and self._measuring() and isinstance(output, torch.Tensor):
                shape = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else ()
                self._feeder_outputs[id(output)] = (output, name, module, shape)

        return hook

    def _bn_pre_hook(self, layer: BnLayer) -> Callable[..., None]:
        def hook(module: _BatchNorm, args: Any) -> None:
            # A pinned mode wins over the user's model.train() (called every epoch); when the
            # whole model is in eval mode every layer is evaluated as such.
            if layer.pinned is not None and self.model.training:
                module.training = layer.pinned == "train"
            if not self._measuring() or not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0]
            if self.learn_topology:
                layer.kind = _KIND_BY_DIM.get(x.dim(), "bn2d")
                layer.input_shape = tuple(x.shape)
                found = self._feeder_outputs.get(id(x))
                if found is not None and found[0] is x and _rows_match(found[2], layer):
                    _, layer.feeder_name, layer.feeder, layer.feeder_input_shape = found
            # Copied when the forward started, unless this layer already ran in this forward (or
            # is called outside the model's forward): then copied now.
            pre = self._running_at_start.pop(layer.index, None)
            if pre is None and layer.tracks:
                rm, rv, _ = layer.running()
                pre = rm.detach().clone(), rv.detach().clone()
            layer.capture = Capture(
                mode_train=module.training or not layer.tracks,
                running_mean_pre=pre[0] if pre is not None else None,
                running_var_pre=pre[1] if pre is not None and not self.batch_only else None,
            )

        return hook

    def _bn_post_hook(self, layer: BnLayer) -> Callable[..., None]:
        def hook(module: _BatchNorm, args: Any, output: Any) -> None:
            cap = layer.capture
            if not isinstance(output, torch.Tensor) or not self._measuring() or cap is None:
                return
            self._bn_outputs[id(output)] = (output, layer)
            saved = stats.saved_bn_moments(output) if cap.mode_train else None
            if saved is not None:
                cap.batch_mean, cap.batch_invstd = saved
                cap.eps = float(module.eps)
            else:
                # Eval mode (or another BN kernel): one more pass, centred on the running mean.
                cap.batch_mean, cap.batch_var = stats.channel_moments(args[0], cap.running_mean_pre)
            if self.batch_only:
                cap.running_mean_pre = None

        return hook

    def _relu_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.batch_only or not self.relu_active or not args or not self._bn_outputs:
            return
        found = self._bn_outputs.get(id(args[0]))
        if found is None or found[0] is not args[0]:
            return
        layer = found[1]
        if layer.capture is not None and isinstance(output, torch.Tensor):
            with self.budget.spending() if self.budget is not None else contextlib.nullcontext():
                sums = stats.relu_sums(output, self.scratch, self.relu_moments)
            layer.capture.relu_sums = (sums, output.numel() // output.shape[1])


def _copy_running(layers: list[BnLayer]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer index, (running mean, running variance) of every tracking layer, copied with one
    torch.cat per device (a small copy costs tens of microseconds between training's big ops)."""
    by_device: dict[tuple[torch.device, torch.dtype], list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
    for layer in layers:
        if layer.tracks:
            rm, rv, _ = layer.running()
            by_device.setdefault((rm.device, rm.dtype), []).append((layer.index, rm, rv))
    out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for group in by_device.values():
        parts = [t.detach().reshape(-1) for _, rm, rv in group for t in (rm, rv)]
        copied = torch.cat(parts).split([p.numel() for p in parts])
        for k, (index, _, _) in enumerate(group):
            out[index] = (copied[2 * k], copied[2 * k + 1])
    return out


def _rows_match(feeder: nn.Module, layer: BnLayer) -> bool:
    weight = getattr(feeder, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.dim() >= 2 and weight.shape[0] == layer.channels


def finish_captures(layers: list[BnLayer]) -> None:
    """The captures' deferred small computations (batch variances, ReLU moments), every layer at
    once: per layer in the hooks they cost more than the passes they finish."""
    caps = [layer.capture for layer in layers if layer.capture is not None]
    pending = [c for c in caps if c.batch_invstd is not None]
    if pending:
        for c, var in zip(pending, stats.vars_from_invstd([c.batch_invstd for c in pending], [c.eps for c in pending])):
            c.batch_var, c.batch_invstd = var, None
    relu = [c for c in caps if c.relu_sums is not None]
    if relu:
        moments = stats.relu_moments([c.relu_sums[0] for c in relu], [c.relu_sums[1] for c in relu])
        for c, m in zip(relu, moments):
            c.relu, c.relu_sums = (m[0], m[1], m[2]), None
