"""How the step dw = w' - w of a feeding weight is measured (its angular update and radial part).

Any optimizer: a copy of w before the step and dw = w' - w after it, a copy and two extra passes
over the weight. torch.optim.SGD without Nesterov moves w by -lr times one vector: its momentum
buffer, or without momentum g + wd·w (g negated when maximizing). There the step is read from
that vector: no copy, and without momentum no pass at all, from the rows read before the step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class SgdStep:
    lr: float
    momentum: bool
    weight_decay: float
    maximize: bool

    def without_momentum(
        self, norm_pre: torch.Tensor, dot_g: torch.Tensor, grad_norm: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """|dw|² and w.dw per row (float64) for dw = -lr (±g + wd·w), from |w|, w.g and |g|."""
        n2, wg, g2 = norm_pre.double().square(), dot_g.double(), grad_norm.double().square()
        s, wd = (-1.0 if self.maximize else 1.0), self.weight_decay
        dd = self.lr**2 * (g2 + 2 * s * wd * wg + wd * wd * n2)
        return dd, -self.lr * (s * wg + wd * n2)


def sgd_step(optimizer: torch.optim.Optimizer, weight: torch.Tensor) -> Optional[SgdStep]:
    """The rule by which `optimizer` moves `weight`, when it is plain SGD; None otherwise."""
    # A subclass may override step(): only SGD itself is known to move w by -lr·buffer.
    if type(optimizer) is not torch.optim.SGD:
        return None
    for group in optimizer.param_groups:
        if any(p is weight for p in group["params"]):
            if group.get("nesterov", False):
                return None
            return SgdStep(
                lr=float(group["lr"]),
                momentum=float(group.get("momentum", 0.0)) != 0.0,
                weight_decay=float(group.get("weight_decay", 0.0)),
                maximize=bool(group.get("maximize", False)),
            )
    return None


def momentum_buffer(optimizer: torch.optim.Optimizer, weight: torch.Tensor) -> Optional[torch.Tensor]:
    buf = optimizer.state.get(weight, {}).get("momentum_buffer")
    return buf if isinstance(buf, torch.Tensor) and buf.shape == weight.shape else None
