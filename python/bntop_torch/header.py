"""The run header (format 1.4): what bntop needs to interpret the stream, as far as known."""
from __future__ import annotations

import math
import time
from typing import Any, Optional

import torch
from torch import nn

from .hooks import BnLayer

FORMAT_MAJOR, FORMAT_MINOR = 1, 5
PRODUCER_NAME = "bntop-torch"

CONVENTIONS_TEXT = {
    "momentum": "PyTorch: running <- (1 - m) * running + m * batch; momentum None: cumulative average, m = 1/num_batches_tracked",
    "batch_variance": "biased (divide by n = N*H*W); BN normalises with it",
    "running_variance": "unbiased: tracks batch variance * n/(n-1)",
    "drift": "r = sqrt(batch_var + eps)/sqrt(running_var + eps), d = (batch_mean - running_mean)/sqrt(running_var + eps), D = sqrt(d^2 + (r-1)^2), using the running statistics from BEFORE this step's update; layer D = sqrt(mean_c D^2)",
    "weight_metrics": "per output channel c of the conv or linear layer whose output is the BN input (feeds_from): ||w_c|| after the step; angular update = angle(w_c before, w_c after the optimizer step), layer value = RMS over channels; effective lr = lr/||w_c||^2, layer value = mean over channels; cos = cos(w_c, dL/dw_c), layer value = max |cos|",
    "weight_decay_scope": "as configured in the optimizer's parameter groups",
}


def optimizer_config(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    group = optimizer.param_groups[0]
    name = type(optimizer).__name__
    kind = {"SGD": "sgd", "Adam": "adam", "AdamW": "adam"}.get(name, "other")
    decoupled = name == "AdamW" or bool(group.get("decoupled_weight_decay", False))
    return {
        "kind": kind,
        "name": name,
        "lr": float(group.get("lr", math.nan)),
        "momentum": float(group.get("momentum", 0.0) or 0.0) if kind == "sgd" else 0.0,
        "weight_decay": float(group.get("weight_decay", 0.0) or 0.0),
        "weight_decay_mode": "decoupled" if decoupled else "coupled",
    }


def _square(value: Any) -> int:
    """A kernel/stride/padding that is one number per dimension, all equal; else 0 (unknown)."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and value and all(v == value[0] for v in value) and isinstance(value[0], int):
        return value[0]
    return 0


def layer_info(layer: BnLayer) -> dict[str, Any]:
    info: dict[str, Any] = {"name": layer.name, "channels": layer.channels}
    info["kind"] = layer.kind or "bn2d"
    if layer.sync:
        info["sync"] = True
    feeder = layer.feeder
    if feeder is not None and layer.feeder_name is not None:
        info["feeds_from"] = layer.feeder_name
        if isinstance(feeder, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            info.update(
                in_channels=feeder.in_channels,
                kernel=_square(feeder.kernel_size),
                stride=_square(feeder.stride),
                padding=_square(feeder.padding),
                conv_bias=feeder.bias is not None,
            )
        elif isinstance(feeder, nn.Linear):
            info.update(in_channels=feeder.in_features, conv_bias=feeder.bias is not None)
    if layer.kind == "bn2d":
        if layer.input_shape is not None and len(layer.input_shape) == 4:
            info.update(out_height=layer.input_shape[2], out_width=layer.input_shape[3])
        if layer.feeder_input_shape is not None and len(layer.feeder_input_shape) == 4:
            info.update(in_height=layer.feeder_input_shape[2], in_width=layer.feeder_input_shape[3])
    return info


def _bn_momentum(layers: list[BnLayer]) -> float:
    momenta = {layer.module.momentum for layer in layers}
    if len(momenta) == 1:
        (m,) = momenta
        if m is not None:
            return float(m)
    return math.nan


def build_header(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    layers: list[BnLayer],
    *,
    started_unix_ms: int,
    batch_size: int,
    world_size: int,
    controls: list[str],
    recording: Optional[dict[str, float]],
    device: str,
    precise_samples: int = 0,
) -> dict[str, Any]:
    eps = layers[0].module.eps if layers else 1e-5
    header: dict[str, Any] = {
        "kind": "header",
        "format": "bntop",
        "version_major": FORMAT_MAJOR,
        "version_minor": FORMAT_MINOR,
        "started_unix_ms": started_unix_ms,
        "producer": {
            "name": PRODUCER_NAME,
            "version": _version(),
            "framework": f"torch {torch.__version__}",
            "model": type(model).__name__,
            "device": device,
            "world_size": world_size,
            "controls": controls,
        },
        "config": {
            "optimizer": optimizer_config(optimizer),
            "batch_size": batch_size,
            "bn_momentum": _bn_momentum(layers),
            "eval_every": 0,
            "eval_samples": 0,
            "lab_every": 0,
            "precise_samples": precise_samples,
            "max_steps": None,
            "conv_bias": False,
            "data_order": "",
            "layer_metrics": True,
        },
        "layers": [layer_info(layer) for layer in layers],
        "conventions": dict(CONVENTIONS_TEXT, epsilon=float(eps)),
    }
    if recording is not None:
        header["recording"] = recording
    return header


def _version() -> str:
    from . import __version__

    return __version__


def now_unix_ms() -> int:
    return int(time.time() * 1000)
