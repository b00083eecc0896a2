"""Controls from bntop (format 1.4): validated and applied between optimizer steps.

Each control is echoed as a `control` record with the number of steps completed when it took
effect, or with `rejected` and the reason, as bntop's own engine does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from . import jsonl
from .hooks import BnLayer

ALWAYS = [
    "set_mode",
    "set_momentum",
    "set_momentum_cumulative",
    "set_lr",
    "pause",
    "resume",
    "step",
    "reset_running_stats",
    "quit",
]
PRECISE = ["precise_bn", "apply_precise_bn"]
NOT_HERE = {
    "set_data_order": "bntop-torch cannot reorder your data loader",
    "fold_check": "bntop-torch does not fold conv + BN",
    "phantom_probe": "bntop-torch has no phantom-gradient probe",
    # Format 1.5: checkpoints belong to the training script (torch.save of model and optimizer).
    "save_checkpoint": "checkpoints are not supported by bntop-torch",
    "restore_checkpoint": "checkpoints are not supported by bntop-torch",
    "restart": "restart is not supported by bntop-torch",
}


class StopTraining(Exception):
    """Raised from `optimizer.step()` after a `quit` control: the run was asked to stop."""


class Rejected(Exception):
    pass


@dataclass
class ControlState:
    paused: bool = False
    steps_granted: int = 0
    quit: bool = False
    applied: int = 0


@dataclass
class Controller:
    layers: list[BnLayer]
    optimizer: torch.optim.Optimizer
    # Population statistics for PreciseBN: (apply_to_layers or None) -> population record;
    # None when watch() got no precise_loader.
    precise: Optional[Callable[[Optional[list[int]]], dict[str, Any]]] = None
    state: ControlState = field(default_factory=ControlState)

    def supported(self) -> list[str]:
        return ALWAYS + (PRECISE if self.precise is not None else [])

    def handle(self, control: dict[str, Any], step: int) -> list[dict[str, Any]]:
        """Apply one control; the echo and any answer (a population record), in order."""
        answer: Optional[dict[str, Any]] = None
        try:
            answer = self._apply(control)
            rejected = None
        except Rejected as why:
            rejected = str(why)
        echo: dict[str, Any] = {"kind": "control", "step": step, "control": control}
        if rejected is not None:
            echo["rejected"] = rejected
        else:
            self.state.applied += 1
        return [echo] + ([answer] if answer is not None else [])

    def _layers(self, control: dict[str, Any]) -> list[BnLayer]:
        layer = control.get("layer")
        if layer is None:
            return self.layers
        if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < len(self.layers):
            return [self.layers[layer]]
        raise Rejected(f"no BN layer {layer} (layers are 0..{len(self.layers) - 1})")

    def _apply(self, control: dict[str, Any]) -> Optional[dict[str, Any]]:
        name = control.get("control")
        if name in NOT_HERE:
            raise Rejected(NOT_HERE[name])
        if name == "set_mode":
            mode = control.get("mode")
            if mode not in ("train", "eval"):
                raise Rejected(f"mode must be train or eval, got {mode!r}")
            for layer in self._layers(control):
                layer.pinned = mode
                layer.module.training = mode == "train"
        elif name == "set_momentum":
            momentum = _number(control.get("momentum"))
            if not 0.0 <= momentum <= 1.0:
                raise Rejected(f"momentum must be in [0, 1], got {momentum}")
            for layer in self._layers(control):
                layer.module.momentum = momentum
        elif name == "set_momentum_cumulative":
            for layer in self._layers(control):
                layer.module.momentum = None
        elif name == "set_lr":
            lr = _number(control.get("lr"))
            if not (math.isfinite(lr) and lr > 0):
                raise Rejected(f"learning rate must be a positive number, got {lr}")
            # Every parameter group; a scheduler the script steps will set its own again.
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        elif name == "pause":
            self.state.paused = True
        elif name == "resume":
            self.state.paused = False
        elif name == "step":
            if not self.state.paused:
                raise Rejected("single step works while paused")
            self.state.steps_granted += 1
        elif name == "reset_running_stats":
            layers = self._layers(control)
            if not all(layer.tracks for layer in layers):
                raise Rejected("a layer without running statistics (track_running_stats=False)")
            for layer in layers:
                layer.module.reset_running_stats()
        elif name in PRECISE:
            if self.precise is None:
                raise Rejected("PreciseBN needs watch(..., precise_loader=...)")
            targets = None
            if name == "apply_precise_bn":
                layers = self._layers(control)
                if not all(layer.tracks for layer in layers):
                    raise Rejected("a layer without running statistics (track_running_stats=False)")
                targets = [layer.index for layer in layers]
            return self.precise(targets)
        elif name == "quit":
            self.state.quit = True
        else:
            raise Rejected(f"unknown control {name!r}")
        return None


def _number(value: Any) -> float:
    try:
        return jsonl.decode_float(value)
    except (TypeError, ValueError):
        raise Rejected(f"not a number: {value!r}") from None
