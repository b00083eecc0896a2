"""The numbers: one-pass reductions on the tensor's device, and the host-side formulas.

Device side, per step and layer, only reductions (moments of the BN input and the ReLU output,
row dot products of the feeding weight); their small per-channel finishing (variances from
BN's saved invstd, ReLU moments, the weight products in float64) runs once for all layers.
Everything derived from them (r, d, D, output moments, cosines, angles, the layer summaries) is
computed on the host in float64, vectorised over the channels of all layers at once, from the
one packed copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

# The per-channel quantities of one step, in packing order (quantity-major, layers within).
QUANTITIES: tuple[str, ...] = (
    "batch_mean",
    "batch_var",
    "running_mean_pre",
    "running_var_pre",
    "relu_mean",
    "relu_var",
    "relu_active",
    "running_mean_post",
    "running_var_post",
    "gamma",
    "beta",
    "grad_gamma",
    "grad_beta",
    "w_norm_sq_pre",
    "w_dot_g",
    "g_norm_sq",
    "w_norm_sq_post",
    "w_dot_dw",
    "dw_norm_sq",
)
Q = {name: i for i, name in enumerate(QUANTITIES)}


def reduce_dims(x: torch.Tensor) -> list[int]:
    """Every dimension of a BN input except the channel dimension 1: (N, C, ...) or (N, C)."""
    return [0] + list(range(2, x.dim()))


# torch's var_mean and count_nonzero over (N, H, W) are slow on CPU (not vectorised: 50 ms for
# a 64x64x32x32 activation, more than BN's own forward), while sums and norms over the
# contiguous inner dimensions take well under a millisecond. So moments are built from
# per-(sample, channel) sums, accumulated over the batch in float64.


def _inner(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


def _sum(x: torch.Tensor) -> torch.Tensor:
    """Per channel sum over every dimension but 1, in float64."""
    inner = _inner(x)
    per_sample = x.sum(dim=inner) if inner else x
    return per_sample.double().sum(0)


def _sum_sq(x: torch.Tensor) -> torch.Tensor:
    inner = _inner(x)
    if not inner:
        return x.double().square().sum(0)
    return torch.linalg.vector_norm(x, dim=inner).double().square().sum(0)


def channel_moments(
    x: torch.Tensor, shift: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance of (N, C, ...). `shift`, a per-channel value near the
    mean (the running mean), keeps E[(x-c)^2] - (mean-c)^2 from cancelling."""
    x = x.detach()
    n = x.numel() // x.shape[1]
    view = (1, -1) + (1,) * (x.dim() - 2)
    centred = x if shift is None else x - shift.detach().to(x.dtype).view(view)
    mean_c = _sum(centred) / n
    var = (_sum_sq(centred) / n - mean_c * mean_c).clamp(min=0)
    mean = mean_c if shift is None else mean_c + shift.detach().double()
    return mean.float(), var.float()


def saved_bn_moments(output: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The batch mean and 1/sqrt(var + eps) BN itself computed in a training forward, from what
    its autograd node saved for the backward: no extra pass (see vars_from_invstd). None when
    the node is not torch's native batch norm or saved no statistics (eval mode)."""
    fn = output.grad_fn
    if fn is None or not fn.name().startswith("NativeBatchNormBackward"):
        return None
    try:
        mean, invstd = getattr(fn, "_saved_result1"), getattr(fn, "_saved_result2")
    except (AttributeError, RuntimeError):
        return None
    if not isinstance(mean, torch.Tensor) or mean.numel() == 0 or invstd.numel() != mean.numel():
        return None
    return mean.detach(), invstd.detach()


def repeated(values: list[float], tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """A per-layer value repeated over that layer's channels (dimension `dim` of its tensor)."""
    device = tensors[0].device
    counts = torch.tensor([t.shape[dim] for t in tensors], device=device)
    return torch.repeat_interleave(torch.tensor(values, dtype=torch.float64, device=device), counts)


def vars_from_invstd(invstd: list[torch.Tensor], eps: list[float]) -> list[torch.Tensor]:
    """Biased batch variances (float32) from BN's saved 1/sqrt(var + eps), every layer in one go
    (each small op costs tens of microseconds in a training step, not the few it takes alone)."""
    inv = torch.cat(invstd).double()
    var = (inv.pow(-2) - repeated(eps, invstd)).clamp_(min=0).float()
    return list(var.split([t.numel() for t in invstd]))


# An elementwise intermediate is made and reduced in slices of about this many bytes: a slice
# stays in the core's cache between the two passes (measured: the sign pass of a 16 MB ReLU
# output 30% faster, a weight's row dot products 20%, than over one whole-size buffer).
SLICE_BYTES = 1 << 20


class Scratch:
    """One reused buffer for elementwise intermediates: a fresh buffer each step costs page
    faults (the allocator hands big blocks back to the system) on top of the pass itself."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def like(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.dtype, x.device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < x.numel():
            buf = self._buffers[key] = torch.empty(x.numel(), dtype=x.dtype, device=x.device)
        return buf[: x.numel()].view(x.shape)


def _slices(x: torch.Tensor) -> list[slice]:
    """Slices of dimension 0 of about SLICE_BYTES each (the whole tensor off the CPU, where
    caches are not the point and every launch costs)."""
    rows = x.shape[0]
    if x.device.type != "cpu" or rows == 0:
        return [slice(0, rows)]
    per_row = max(1, x[0].numel() * x.element_size())
    step = max(1, SLICE_BYTES // per_row)
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def _sign_sums(y: torch.Tensor, inner: tuple[int, ...], scratch: Scratch) -> torch.Tensor:
    """Per (sample, channel), the sum of sign(y) over the inner dimensions, slice by slice."""
    return torch.cat([torch.sign(y[s], out=scratch.like(y[s])).sum(dim=inner) for s in _slices(y)])


def relu_sums(y: torch.Tensor, scratch: Scratch, moments: bool = True) -> torch.Tensor:
    """(3, N, C) per-sample sums of a ReLU output over its inner dimensions: of y, of y^2 (as
    the norm; squared in relu_moments) and of sign(y) (y >= 0: the indicator of y > 0). Three
    vectorised passes; relu_moments finishes every layer at once. Without `moments` only the
    sign pass runs (the active fraction), and the first two rows are NaN."""
    y = y.detach()
    inner = _inner(y)
    signs = _sign_sums(y, inner, scratch) if inner else torch.sign(y)
    if not moments:
        unknown = torch.full_like(signs, math.nan)
        return torch.stack((unknown, unknown, signs))
    if inner:
        sums, norms = y.sum(dim=inner), torch.linalg.vector_norm(y, dim=inner)
    else:
        sums, norms = y, y.abs()
    return torch.stack((sums, norms, signs))


def relu_moments(sums: list[torch.Tensor], counts: list[int]) -> list[torch.Tensor]:
    """Per layer, (3, C) float32: mean, biased variance and fraction > 0 of its ReLU output, from
    relu_sums (`counts`: the values per channel, N*H*W). Reduced over the batch in float64,
    every layer with the same batch size and device in one go."""
    out: list[Optional[torch.Tensor]] = [None] * len(sums)
    groups: dict[tuple[int, torch.device], list[int]] = {}
    for i, t in enumerate(sums):
        groups.setdefault((t.shape[1], t.device), []).append(i)
    for idx in groups.values():
        parts = [sums[i] for i in idx]
        total = torch.cat(parts, dim=2).double()
        total[1].square_()
        mom = total.sum(1).div_(repeated([float(counts[i]) for i in idx], parts, dim=2))
        mom[1].sub_(mom[0] * mom[0]).clamp_(min=0)
        for i, block in zip(idx, mom.float().split([p.shape[2] for p in parts], dim=1)):
            out[i] = block
    return [t for t in out if t is not None]


def row_dot(a: torch.Tensor, b: torch.Tensor, scratch: Scratch) -> torch.Tensor:
    """Per output channel (row) dot products of two weights shaped (out, ...), in their dtype."""
    a, b = a.flatten(1), b.flatten(1)
    return torch.cat([torch.mul(a[s], b[s], out=scratch.like(a[s])).sum(1) for s in _slices(a)])


def row_norm(a: torch.Tensor) -> torch.Tensor:
    """Per row norms, in the weight's dtype (squared later, in float64, for all layers at once)."""
    return torch.linalg.vector_norm(a.flatten(1), dim=1)


def weight_products(
    norm_pre: torch.Tensor,
    dot_g: torch.Tensor,
    grad_norm: torch.Tensor,
    dw_norm_sq: torch.Tensor,
    w_dot_dw: torch.Tensor,
) -> torch.Tensor:
    """(6, rows) in float64, rows in QUANTITIES order w_norm_sq_pre .. dw_norm_sq, from the per-row
    values (rows of every feeding layer concatenated): |w|, w.g, |g| before the update and
    |dw|², w.dw (float64) of the step. |w'|² = |w|² + 2 w.dw + |dw|² (no pass over w' for its
    norm)."""
    n2_pre = norm_pre.double().square()
    dd, wd = dw_norm_sq.double(), w_dot_dw.double()
    return torch.stack((n2_pre, dot_g.double(), grad_norm.double().square(), n2_pre + 2 * wd + dd, wd, dd))


@dataclass(frozen=True)
class Layout:
    """Where each layer's channels sit in the packed vectors."""

    channels: tuple[int, ...]
    eps: tuple[float, ...]

    @property
    def total(self) -> int:
        return sum(self.channels)

    def offsets(self) -> list[int]:
        out, at = [], 0
        for c in self.channels:
            out.append(at)
            at += c
        return out

    def segment_index(self) -> torch.Tensor:
        return torch.repeat_interleave(
            torch.arange(len(self.channels)), torch.tensor(self.channels, dtype=torch.long)
        )

    def per_channel(self, values: list[float]) -> torch.Tensor:
        """A per-layer value repeated over the layer's channels."""
        return torch.repeat_interleave(
            torch.tensor(values, dtype=torch.float64), torch.tensor(self.channels, dtype=torch.long)
        )


def pooled_moments(means: torch.Tensor, vars_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Global moments of equal-sized per-rank batches: rows are ranks (format 1.4, rank_drift)."""
    mg = means.mean(0)
    vg = (vars_ + (means - mg) ** 2).mean(0)
    return mg, vg


class Segments:
    """Per-layer reductions over each layer's channels (NaN propagates: unknown stays unknown)."""

    def __init__(self, layout: Layout):
        self.index = layout.segment_index()
        self.count = torch.tensor(layout.channels, dtype=torch.float64)
        self.layers = len(layout.channels)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.layers, dtype=x.dtype).index_add(0, self.index, x)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.sum(x) / self.count

    def rms(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean(x * x).sqrt()

    def _reduce(self, x: torch.Tensor, how: str) -> torch.Tensor:
        out = torch.full((self.layers,), math.nan, dtype=x.dtype)
        return out.scatter_reduce(0, self.index, x, how, include_self=False)

    def max(self, x: torch.Tensor) -> torch.Tensor:
        return self._reduce(x, "amax")

    def min(self, x: torch.Tensor) -> torch.Tensor:
        return self._reduce(x, "amin")


def _safe_div(num: torch.Tensor, den: torch.Tensor, if_zero: float) -> torch.Tensor:
    return torch.where(den == 0, torch.full_like(num, if_zero), num / den)


def derive(
    x: torch.Tensor,
    layout: Layout,
    normalised_by_batch: list[bool],
    affine: list[bool],
    lr: list[float],
) -> dict[str, torch.Tensor]:
    """Per-channel arrays (float64, length layout.total) and per-layer summaries (`summary.*`).

    `x` is the (len(QUANTITIES), total) block of one step. Formulas as in the run header's
    conventions: r, d, D against the running statistics from before this step's update.
    """
    x = x.double()
    q = {name: x[i] for name, i in Q.items()}
    eps = layout.per_channel(list(layout.eps))
    seg = Segments(layout)

    sigma_r = (q["running_var_pre"] + eps).sqrt()
    r = (q["batch_var"] + eps).sqrt() / sigma_r
    d = (q["batch_mean"] - q["running_mean_pre"]) / sigma_r
    big_d = (d * d + (r - 1) ** 2).sqrt()

    # BN is affine per channel, so its output moments follow exactly from the input's moments
    # and the statistics it normalised with (no second pass over the output).
    by_batch = layout.per_channel([1.0 if b else 0.0 for b in normalised_by_batch]) > 0
    has_affine = layout.per_channel([1.0 if a else 0.0 for a in affine]) > 0
    gamma = torch.where(has_affine, q["gamma"], torch.ones_like(eps))
    beta = torch.where(has_affine, q["beta"], torch.zeros_like(eps))
    norm_mean = torch.where(by_batch, q["batch_mean"], q["running_mean_pre"])
    norm_var = torch.where(by_batch, q["batch_var"], q["running_var_pre"])
    out_mean = gamma * (q["batch_mean"] - norm_mean) / (norm_var + eps).sqrt() + beta
    out_var = gamma * gamma * q["batch_var"] / (norm_var + eps)

    n2_pre, n2_post = q["w_norm_sq_pre"], q["w_norm_sq_post"]
    wd, dd = q["w_dot_dw"], q["dw_norm_sq"]
    weight_norm = n2_post.sqrt()
    cos = _safe_div(q["w_dot_g"], (n2_pre * q["g_norm_sq"]).sqrt(), 0.0).clamp(-1, 1)
    # The angle from the step's parts along and across w: accurate for tiny angles, where
    # acos(cos) loses half the digits.
    along = _safe_div(n2_pre + wd, n2_pre.sqrt(), 0.0)
    across = (dd - _safe_div(wd * wd, n2_pre, 0.0)).clamp(min=0).sqrt()
    angle = torch.atan2(across, along)
    angle = torch.where((n2_pre == 0) | (n2_post == 0), torch.full_like(angle, math.pi / 2), angle)
    radial = _safe_div(wd, (n2_pre * dd).sqrt(), 0.0).clamp(-1, 1)
    effective_lr = layout.per_channel(lr) / n2_post

    out = {
        "batch_mean": q["batch_mean"],
        "batch_var": q["batch_var"],
        "running_mean_pre": q["running_mean_pre"],
        "running_var_pre": q["running_var_pre"],
        "running_mean_post": q["running_mean_post"],
        "running_var_post": q["running_var_post"],
        "r": r,
        "d": d,
        "drift": big_d,
        "out_mean": out_mean,
        "out_var": out_var,
        "relu_mean": q["relu_mean"],
        "relu_var": q["relu_var"],
        "relu_active": q["relu_active"],
        "gamma": q["gamma"],
        "beta": q["beta"],
        "grad_gamma": q["grad_gamma"],
        "grad_beta": q["grad_beta"],
        "weight_norm": weight_norm,
        "angular_update": angle,
        "weight_grad_cos": cos,
        # ‖g_c‖ (format 1.5): with γ, ∂L/∂γ and σ²_B it predicts BN's ε residual in cos(w, g).
        "weight_grad_norm": q["g_norm_sq"].sqrt(),
    }
    out.update(
        {
            "summary.drift": seg.rms(big_d),
            "summary.r_mean": seg.mean(r),
            "summary.r_min": seg.min(r),
            "summary.r_max": seg.max(r),
            "summary.d_mean_abs": seg.mean(d.abs()),
            "summary.d_max_abs": seg.max(d.abs()),
            "summary.weight_norm": seg.sum(n2_post).sqrt(),
            "summary.angular_update": seg.rms(angle),
            "summary.effective_lr": seg.mean(effective_lr),
            "summary.max_abs_cos": seg.max(cos.abs()),
            "summary.relu_active": seg.mean(q["relu_active"]),
            "summary.radial_fraction": seg.mean(radial),
        }
    )
    return out


def rank_drift(
    means: torch.Tensor, vars_: torch.Tensor, layout: Layout
) -> torch.Tensor:
    """(layers, ranks): D_k = sqrt(mean_c d_kc² + (r_kc - 1)²) of each rank's batch moments
    against the pooled global ones (format 1.4). `means`, `vars_` are (ranks, total)."""
    means, vars_ = means.double(), vars_.double()
    eps = layout.per_channel(list(layout.eps))
    mg, vg = pooled_moments(means, vars_)
    sigma_g = (vg + eps).sqrt()
    r = (vars_ + eps).sqrt() / sigma_g
    d = (means - mg) / sigma_g
    sq = d * d + (r - 1) ** 2
    seg = Segments(layout)
    return torch.stack([seg.mean(row).sqrt() for row in sq], dim=1)
