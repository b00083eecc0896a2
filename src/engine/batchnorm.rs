//! The BatchNorm forwards dfdx 0.13 lacks, built from dfdx ops: held-out inference, PreciseBN
//! and the probe use them, and none of them touches the running statistics. The training step
//! runs the fused ops in [`bn_kernel`](super::bn_kernel) instead (train mode there matches dfdx's
//! own `BatchNorm2D::forward_mut`, running-statistics update included).
use dfdx::nn::modules::BatchNorm2D;
use dfdx::prelude::*;

/// Channel-major BN input: (C, N, H, W).
pub type BnInput<const C: usize, T> = Tensor<(Const<C>, usize, usize, usize), f32, Cpu, T>;

/// (x - mean)·γ/sqrt(var + ε) + β with `mean` and `var` held constant: gradients flow to the
/// input, γ and β only.
fn normalize_with_constants<const C: usize, T>(
    x: BnInput<C, T>,
    mean: Tensor<Rank1<C>, f32, Cpu>,
    var: Tensor<Rank1<C>, f32, Cpu>,
    bn: &BatchNorm2D<C, f32, Cpu>,
) -> BnInput<C, T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    let shape = *x.shape();
    let inv_std = (var + bn.epsilon as f32).sqrt().recip();
    let scale = bn.scale.retaped::<T>() * inv_std;
    let centered = x - mean.broadcast_like(&shape);
    centered * scale.broadcast_like(&shape) + bn.bias.retaped::<T>().broadcast_like(&shape)
}

/// Eval mode: normalise with the running statistics, which stay untouched, while gradients still
/// flow to the input, γ and β (PyTorch's `.eval()` during training; the phantom-gradient case).
/// With `NoneTape` this is plain inference and equals dfdx's `Module::forward`.
pub fn normalize_with_running_stats<const C: usize, T>(
    x: BnInput<C, T>,
    bn: &BatchNorm2D<C, f32, Cpu>,
) -> BnInput<C, T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    normalize_with_constants(x, bn.running_mean.clone(), bn.running_var.clone(), bn)
}

/// Train-mode normalisation (biased batch variance, gradients through the batch statistics) that
/// leaves the running statistics alone: the "batch statistics" held-out evaluation, PreciseBN's
/// passes and the probe's train-mode bar. Same graph as dfdx's `forward_mut`.
pub fn normalize_with_batch_stats<const C: usize, T>(
    x: BnInput<C, T>,
    bn: &BatchNorm2D<C, f32, Cpu>,
) -> BnInput<C, T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    let shape = *x.shape();
    let mean: Tensor<Rank1<C>, f32, Cpu, T> = x.retaped::<T>().mean();
    let centered = x - mean.broadcast_like(&shape);
    let var: Tensor<Rank1<C>, f32, Cpu, T> = centered.retaped::<T>().square().mean();
    let scale = bn.scale.retaped::<T>() / (var + bn.epsilon as f32).sqrt();
    centered * scale.broadcast_like(&shape) + bn.bias.retaped::<T>().broadcast_like(&shape)
}

/// Batch statistics treated as constants in the backward pass (BN-METRICS §7, Ioffe & Szegedy
/// 2015 §2): the forward equals train mode, but the gradient misses the terms that make the
/// layer cancel a bias, so a pre-BN bias gets (γ/σ̃_B)∇β.
pub fn normalize_with_detached_batch_stats<const C: usize, T>(
    x: BnInput<C, T>,
    bn: &BatchNorm2D<C, f32, Cpu>,
) -> BnInput<C, T>
where
    T: Tape<f32, Cpu> + Merge<T> + Merge<NoneTape>,
{
    let shape = *x.shape();
    let detached = x.retaped::<NoneTape>();
    let mean: Tensor<Rank1<C>, f32, Cpu> = detached.clone().mean();
    let var: Tensor<Rank1<C>, f32, Cpu> = (detached - mean.clone().broadcast_like(&shape))
        .square()
        .mean();
    normalize_with_constants(x, mean, var, bn)
}
