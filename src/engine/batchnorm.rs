//! The two BatchNorm forwards dfdx 0.13 lacks. Training in train mode uses dfdx's own
//! `BatchNorm2D::forward_mut` (batch statistics, running-statistics update); these cover the rest.
use dfdx::nn::modules::BatchNorm2D;
use dfdx::prelude::*;

/// Channel-major BN input: (C, N, H, W).
pub type BnInput<const C: usize, T> = Tensor<(Const<C>, usize, usize, usize), f32, Cpu, T>;

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
    let shape = *x.shape();
    let inv_std = (bn.running_var.clone() + bn.epsilon as f32).sqrt().recip();
    let scale = bn.scale.retaped::<T>() * inv_std;
    let centered = x - bn.running_mean.clone().broadcast_like(&shape);
    centered * scale.broadcast_like(&shape) + bn.bias.retaped::<T>().broadcast_like(&shape)
}

/// Train-mode normalisation (biased batch variance) that leaves the running statistics alone:
/// the "batch statistics" held-out evaluation.
pub fn normalize_with_batch_stats<const C: usize>(
    x: BnInput<C, NoneTape>,
    bn: &BatchNorm2D<C, f32, Cpu>,
) -> BnInput<C, NoneTape> {
    let shape = *x.shape();
    let mean: Tensor<Rank1<C>, f32, Cpu> = x.clone().mean();
    let centered = x - mean.broadcast_like(&shape);
    let var: Tensor<Rank1<C>, f32, Cpu> = centered.clone().square().mean();
    let scale = bn.scale.clone() / (var + bn.epsilon as f32).sqrt();
    centered * scale.broadcast_like(&shape) + bn.bias.clone().broadcast_like(&shape)
}
