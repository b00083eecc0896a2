"""Records of the stream: decimation by run time (as src/session/decimator.rs) and snapshots
built from one step's packed host copy."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from . import jsonl, stats

# As the Rust recorder (RecordingPolicy::default): snapshots at most every 0.04 s of run time,
# per-channel arrays at most every 2 s.
SNAPSHOT_INTERVAL_S = 0.04
ARRAYS_INTERVAL_S = 2.0
# What `bntop serve` sends its viewers: arrays every second (src/remote/hub.rs, VIEWER_POLICY).
SERVE_ARRAYS_INTERVAL_S = 1.0

ARRAY_FIELDS: tuple[str, ...] = (
    "batch_mean",
    "batch_var",
    "running_mean_pre",
    "running_var_pre",
    "running_mean_post",
    "running_var_post",
    "r",
    "d",
    "drift",
    "out_mean",
    "out_var",
    "relu_mean",
    "relu_var",
    "relu_active",
    "gamma",
    "beta",
    "grad_gamma",
    "grad_beta",
    "weight_norm",
    "angular_update",
    "weight_grad_cos",
    "weight_grad_norm",
)
SUMMARY_FIELDS: tuple[str, ...] = (
    "drift",
    "r_mean",
    "r_min",
    "r_max",
    "d_mean_abs",
    "d_max_abs",
    "weight_norm",
    "angular_update",
    "effective_lr",
    "max_abs_cos",
    "relu_active",
    "radial_fraction",
)


class Keep(enum.Enum):
    SKIP = 0
    SUMMARY = 1
    WHOLE = 2


class Decimator:
    """Which snapshots pass, and which of those keep their per-channel arrays: at most every
    `snapshot_interval_s` / `arrays_interval_s` of run time, and whole right after a control."""

    def __init__(
        self, snapshot_interval_s: float = SNAPSHOT_INTERVAL_S, arrays_interval_s: float = ARRAYS_INTERVAL_S
    ):
        self.snapshot_interval_s = snapshot_interval_s
        self.arrays_interval_s = arrays_interval_s
        self._last_snapshot: Optional[float] = None
        self._last_arrays: Optional[float] = None
        self._keep_next_whole = False

    def policy(self) -> dict[str, float]:
        return {
            "snapshot_interval_s": self.snapshot_interval_s,
            "channel_arrays_interval_s": self.arrays_interval_s,
        }

    def control_applied(self) -> None:
        self._keep_next_whole = True

    def arrays_due(self, time_s: float) -> bool:
        """Whether a step starting now keeps its per-channel arrays. Asked at the step's training
        forward, so that what only the arrays need is measured only then."""
        return self._keep_next_whole or self._last_arrays is None or time_s - self._last_arrays >= self.arrays_interval_s

    def decide(self, time_s: float, whole: Optional[bool] = None) -> Keep:
        """The step recorded at `time_s`: `whole` as arrays_due said at its forward (asked now
        when not given)."""
        if whole is None:
            whole = self.arrays_due(time_s)
        if not whole and self._last_snapshot is not None and time_s - self._last_snapshot < self.snapshot_interval_s:
            return Keep.SKIP
        self._last_snapshot = time_s
        if whole:
            self._keep_next_whole = False
            self._last_arrays = time_s
            return Keep.WHOLE
        return Keep.SUMMARY


@dataclass
class LayerMeta:
    """Per-layer facts the training thread knows without a device copy."""

    modes: list[str]
    momenta: list[float]
    cumulative: list[bool]
    normalised_by_batch: list[bool]
    affine: list[bool]
    sync: list[bool]
    lr: list[float]


@dataclass
class StepData:
    """One step as the writer thread needs it to build the snapshot."""

    step: int
    epoch: int
    time_s: float
    loss: float
    batch_accuracy: float
    lr: float
    whole: bool
    meta: LayerMeta
    packed: torch.Tensor  # host copy, see StepMeasure.pieces (+ gathered rank moments)
    world_size: int = 1
    # The optional passes (weights, ReLU) did not run this step: see budget.py.
    partial: bool = False


def build_snapshot(data: StepData, layout: stats.Layout) -> str:
    """The snapshot record of one step, as its JSON line."""
    total, n_layers, nq = layout.total, len(layout.channels), len(stats.QUANTITIES)
    packed = data.packed.double()
    block = packed[: nq * total].view(nq, total).clone()
    nbt = packed[nq * total : nq * total + n_layers]
    rank_drift: Optional[torch.Tensor] = None
    if data.world_size > 1:
        ranks = packed[nq * total + n_layers :].view(data.world_size, 2, total)
        means, vars_ = ranks[:, 0], ranks[:, 1]
        rank_drift = stats.rank_drift(means, vars_, layout)
        # With SyncBatchNorm the pooled global statistics are the ones that normalised.
        sync = layout.per_channel([1.0 if s else 0.0 for s in data.meta.sync]) > 0
        if bool(sync.any()):
            mg, vg = stats.pooled_moments(means, vars_)
            for name, glob in (("batch_mean", mg), ("batch_var", vg)):
                row = stats.Q[name]
                block[row] = torch.where(sync, glob, block[row])
    derived = stats.derive(block, layout, data.meta.normalised_by_batch, data.meta.affine, data.meta.lr)

    summaries = {f: derived["summary." + f].tolist() for f in SUMMARY_FIELDS}
    every = torch.empty(0)
    known: list[list[bool]] = []
    finite: list[list[bool]] = []
    text = ""
    if data.whole:
        seg = stats.Segments(layout)
        # Row k is field k of ARRAY_FIELDS; channel c of it is value k * total + c of `text`.
        every = torch.stack([derived[f] for f in ARRAY_FIELDS]).float()
        per_layer = torch.zeros(2, len(ARRAY_FIELDS), n_layers, dtype=torch.float64)
        per_layer[0].index_add_(1, seg.index, every.isnan().double())
        per_layer[1].index_add_(1, seg.index, (~every.isfinite()).double())
        # A layer's array is written when anything in it is known, NaN where not.
        known = (per_layer[0] < seg.count).tolist()
        finite = (per_layer[1] == 0).tolist()
        text = jsonl.f32_fixed(torch.nan_to_num(every.reshape(-1), nan=0.0, posinf=0.0, neginf=0.0))
    offsets = layout.offsets()
    rd = rank_drift.tolist() if rank_drift is not None else None
    nbt_list = nbt.tolist()

    layers = []
    for i in range(n_layers):
        momentum = data.meta.momenta[i]
        if data.meta.cumulative[i]:
            momentum = 1.0 / nbt_list[i] if nbt_list[i] > 0 else math.nan
        parts = [f'"mode":"{data.meta.modes[i]}"', f'"momentum":{jsonl.value(momentum)}']
        if data.meta.cumulative[i]:
            parts.append('"cumulative":true')
        lo, hi = offsets[i], offsets[i] + layout.channels[i]
        for k, f in enumerate(ARRAY_FIELDS if data.whole else ()):
            if not known[k][i]:
                continue
            if finite[k][i]:
                # f32_fixed: 16 characters per value, the last one's comma dropped.
                at = k * total
                parts.append(f'"{f}":[{text[16 * (at + lo) : 16 * (at + hi) - 1]}]')
            else:
                parts.append(f'"{f}":{jsonl.f32_array(every[k, lo:hi].tolist(), False)}')
        if rd is not None:
            parts.append(f'"rank_drift":{jsonl.f32_array(rd[i], False)}')
        parts.append('"summary":' + jsonl.value({f: summaries[f][i] for f in SUMMARY_FIELDS}))
        layers.append("{" + ",".join(parts) + "}")
    head = jsonl.value(
        {
            "kind": "snapshot",
            "step": data.step,
            "epoch": data.epoch,
            "time_s": data.time_s,
            "loss": data.loss,
            "batch_accuracy": data.batch_accuracy,
            "lr": data.lr,
        }
    )
    if data.partial:
        head = head[:-1] + ',"partial":true}'
    return head[:-1] + ',"layers":[' + ",".join(layers) + "]}\n"
