//! The BatchNorm forwards dfdx 0.13 lacks, built from dfdx ops: held-out inference, PreciseBN
//! and the probe use them, and none of them touches the running statistics. The training step
//! runs the fused ops in [`bn_kernel`](super::bn_kernel) instead (train mode there matches dfdx's
//! own `BatchNorm2D::forward_mut`, running-statistics update included).
use dfdx::prelude::*;

use super::model::{BatchNorm, PerChannel};

/// Channel-major BN input: (C, N, H, W).
pub type BnInput<T> = Tensor<(usize, usize, usize, usize), f32, Cpu, T>;
/// Per channel, spread over (C, N, H, W).
type Spread = Axes3<1, 2, 3>;

/// (x - mean)·γ/sqrt(var + ε) + β with `mean` and `var` held constant: gradients flow to the
/// input, γ and β only.
fn normalize_with_constants<T>(
    x: BnInput<T>,
    mean: PerChannel,
    var: PerChannel,
    bn: &BatchNorm,
) -> BnInput<T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    let shape = *x.shape();
    let inv_std = (var + bn.epsilon as f32).sqrt().recip();
    let scale = bn.scale.retaped::<T>() * inv_std;
    let centered = x - mean.broadcast_like::<_, Spread>(&shape);
    centered * scale.broadcast_like::<_, Spread>(&shape)
        + bn.bias.retaped::<T>().broadcast_like::<_, Spread>(&shape)
}

/// Eval mode: normalise with the running statistics, which stay untouched, while gradients still
/// flow to the input, γ and β (PyTorch's `.eval()` during training; the phantom-gradient case).
/// With `NoneTape` this is plain inference and equals dfdx's `Module::forward`.
pub fn normalize_with_running_stats<T>(x: BnInput<T>, bn: &BatchNorm) -> BnInput<T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    normalize_with_constants(x, bn.running_mean.clone(), bn.running_var.clone(), bn)
}

/// Train-mode normalisation (biased batch variance, gradients through the batch statistics) that
/// leaves the running statistics alone: the "batch statistics" held-out evaluation, PreciseBN's
/// passes and the probe's train-mode bar. Same graph as dfdx's `forward_mut`.
pub fn normalize_with_batch_stats<T>(x: BnInput<T>, bn: &BatchNorm) -> BnInput<T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    let shape = *x.shape();
    let mean: Tensor<(usize,), f32, Cpu, T> = x.retaped::<T>().mean::<_, Spread>();
    let centered = x - mean.broadcast_like::<_, Spread>(&shape);
    let var: Tensor<(usize,), f32, Cpu, T> = centered.retaped::<T>().square().mean::<_, Spread>();
    let scale = bn.scale.retaped::<T>() / (var + bn.epsilon as f32).sqrt();
    centered * scale.broadcast_like::<_, Spread>(&shape)
        + bn.bias.retaped::<T>().broadcast_like::<_, Spread>(&shape)
}

/// Batch statistics treated as constants in the backward pass (BN-METRICS §7, Ioffe & Szegedy
/// 2015 §2): the forward equals train mode, but the gradient misses the terms that make the
/// layer cancel a bias, so a pre-BN bias gets (γ/σ̃_B)∇β.
pub fn normalize_with_detached_batch_stats<T>(x: BnInput<T>, bn: &BatchNorm) -> BnInput<T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    let shape = *x.shape();
    let detached = x.retaped::<NoneTape>();
    let mean: PerChannel = detached.clone().mean::<_, Spread>();
    let var: PerChannel = (detached - mean.clone().broadcast_like::<_, Spread>(&shape))
        .square()
        .mean::<_, Spread>();
    normalize_with_constants(x, mean, var, bn)
}
