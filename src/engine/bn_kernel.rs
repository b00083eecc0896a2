//! BatchNorm (+ ReLU) during training as one custom dfdx op with its own backward, in train
//! mode (batch statistics) and eval mode (running statistics, gradients still flowing). dfdx's
//! `BatchNorm2D::forward_mut` builds the same thing from about a dozen generic broadcast and
//! elementwise kernels, each a full pass over the activations with its own buffer; here the
//! forward is three passes (mean, variance, output) and the backward two, per channel over the
//! contiguous channel-major data. The batch moments it computes are handed back, so the metrics
//! need not measure them again.
use dfdx::prelude::*;

use super::batchnorm::BnInput;
use super::host::{from_host, to_host};
use super::model::BatchNorm;
use crate::metrics::moments::{channel_moments, Moments};

/// What the fused forward saw, for the metrics.
pub struct TrainForward<T> {
    /// ReLU(y) with `relu`, else y = γ·x̂ + β.
    pub out: BnInput<T>,
    /// Per channel: mean and BIASED variance of the input (what it normalised with).
    pub batch: Vec<Moments>,
    /// y before the ReLU, channel-major, when asked for (the metrics' BN output).
    pub pre_relu: Option<Vec<f32>>,
}

/// Train-mode BatchNorm on (C, N, H, W): normalises with the batch mean and BIASED variance,
/// applies γ, β and (with `relu`) max(0, ·), and updates the running statistics exactly like
/// dfdx's `forward_mut` (running = (1-m)·running + m·batch, variance unbiased by n/(n-1)).
/// Gradients flow to the input (through the batch statistics), γ and β.
pub fn batch_norm_train<T: Tape<f32, Cpu>>(
    x: BnInput<T>,
    bn: &mut BatchNorm,
    relu: bool,
    keep_pre_relu: bool,
) -> TrainForward<T> {
    let (channels, batch_size, height, width) = *x.shape();
    assert_eq!(channels, bn.channels());
    let n = batch_size * height * width;
    let (x, tape) = x.split_tape();
    let xs = to_host(&x);
    let batch = channel_moments(&xs, channels);
    update_running_stats(bn, &batch, n);
    let constants = Constants {
        centre: batch.iter().map(|m| m.mean as f32).collect(),
        inv_std: batch
            .iter()
            .map(|m| (1.0 / (m.var + bn.epsilon).sqrt()) as f32)
            .collect(),
        through_batch_stats: true,
    };
    let (out, pre_relu) = normalize(x, tape, xs, constants, bn, relu, keep_pre_relu);
    TrainForward {
        out,
        batch,
        pre_relu,
    }
}

/// Eval-mode BatchNorm (+ ReLU) while training: normalises with the running statistics, which
/// stay untouched; gradients flow to the input, γ and β. Same arithmetic as
/// [`normalize_with_running_stats`](super::batchnorm::normalize_with_running_stats).
/// Returns the output and, when asked for, y before the ReLU.
pub fn batch_norm_eval<T: Tape<f32, Cpu>>(
    x: BnInput<T>,
    bn: &BatchNorm,
    relu: bool,
    keep_pre_relu: bool,
) -> (BnInput<T>, Option<Vec<f32>>) {
    assert_eq!(x.shape().0, bn.channels());
    let (x, tape) = x.split_tape();
    let xs = to_host(&x);
    let eps = bn.epsilon as f32;
    let constants = Constants {
        centre: to_host(&bn.running_mean),
        inv_std: (to_host(&bn.running_var).iter())
            .map(|v| (v + eps).sqrt().recip())
            .collect(),
        through_batch_stats: false,
    };
    normalize(x, tape, xs, constants, bn, relu, keep_pre_relu)
}

/// Per channel c: y = (x - centre[c])·inv_std[c]·γ[c] + β[c].
struct Constants {
    centre: Vec<f32>,
    inv_std: Vec<f32>,
    /// Whether centre and inv_std are this batch's statistics, so the gradient flows through
    /// them too (train mode), or constants (eval mode).
    through_batch_stats: bool,
}

/// The shared forward and backward: `xs` is `x` on the host.
fn normalize<T: Tape<f32, Cpu>>(
    x: BnInput<NoneTape>,
    mut tape: T,
    xs: Vec<f32>,
    constants: Constants,
    bn: &BatchNorm,
    relu: bool,
    keep_pre_relu: bool,
) -> (BnInput<T>, Option<Vec<f32>>) {
    let shape = *x.shape();
    let channels = shape.0;
    let n = shape.1 * shape.2 * shape.3;
    let gamma = to_host(&bn.scale);
    let beta = to_host(&bn.bias);
    let Constants {
        centre,
        inv_std,
        through_batch_stats,
    } = constants;

    let mut ys = Vec::with_capacity(xs.len());
    for c in 0..channels {
        let (scale, centre, bias) = (gamma[c] * inv_std[c], centre[c], beta[c]);
        ys.extend(
            xs[c * n..(c + 1) * n]
                .iter()
                .map(|&x| (x - centre) * scale + bias),
        );
    }
    let pre_relu = keep_pre_relu.then(|| ys.clone());
    if relu {
        // f32::max turns NaN into 0, as dfdx's ReLU does; the backward's mask is `y > 0`, as its.
        for y in ys.iter_mut() {
            *y = y.max(0.0);
        }
    }
    let out: BnInput<NoneTape> = from_host(x.device(), &ys, shape);

    let (xg, og, gg, bg) = (x.ghost(), out.ghost(), bn.scale.ghost(), bn.bias.ghost());
    tape.add_backward_op(move |grads| {
        let mut dy: Vec<f32> = grads.get_or_alloc_mut(&og)?.to_vec();
        if relu {
            // ReLU's gradient first: dy is zero where the output was clamped.
            for (g, &y) in dy.iter_mut().zip(&ys) {
                *g = if y > 0.0 { *g } else { 0.0 };
            }
        }
        let mut d_gamma = vec![0.0f64; channels];
        let mut d_beta = vec![0.0f64; channels];
        let dx = grads.get_or_alloc_mut(&xg)?;
        for c in 0..channels {
            let range = c * n..(c + 1) * n;
            let (xc, dyc) = (&xs[range.clone()], &dy[range.clone()]);
            let (m, s) = (centre[c], inv_std[c]);
            let (sum_dy, sum_dy_centred) = block_sums(xc, dyc, m);
            // x̂ = (x - m)·s, so Σ dy·x̂ = s·Σ dy·(x - m).
            let sum_dy_xhat = sum_dy_centred * f64::from(s);
            d_gamma[c] = sum_dy_xhat;
            d_beta[c] = sum_dy;
            let k = gamma[c] * s;
            if through_batch_stats {
                let mean_dy = (sum_dy / n as f64) as f32;
                // k·x̂·mean(dy·x̂) = (x - m)·k·s·mean(dy·x̂)
                let slope = k * s * (sum_dy_xhat / n as f64) as f32;
                for ((d, &x), &g) in dx[range].iter_mut().zip(xc).zip(dyc) {
                    *d += k * (g - mean_dy) - (x - m) * slope;
                }
            } else {
                for (d, &g) in dx[range].iter_mut().zip(dyc) {
                    *d += k * g;
                }
            }
        }
        for (g, d) in grads.get_or_alloc_mut(&gg)?.iter_mut().zip(&d_gamma) {
            *g += *d as f32;
        }
        for (g, d) in grads.get_or_alloc_mut(&bg)?.iter_mut().zip(&d_beta) {
            *g += *d as f32;
        }
        Ok(())
    });
    (out.put_tape(tape), pre_relu)
}

/// running = (1-m)·running + m·batch, the variance unbiased (n/(n-1)): dfdx's `axpy` in f32.
fn update_running_stats(bn: &mut BatchNorm, batch: &[Moments], n: usize) {
    let m = bn.momentum;
    let keep = (1.0 - m) as f32;
    let mean_weight = m as f32;
    let var_weight = (m * n as f64 / (n as f64 - 1.0)) as f32;
    let mut running_mean = to_host(&bn.running_mean);
    let mut running_var = to_host(&bn.running_var);
    for (c, moments) in batch.iter().enumerate() {
        running_mean[c] = running_mean[c] * keep + moments.mean as f32 * mean_weight;
        running_var[c] = running_var[c] * keep + moments.var as f32 * var_weight;
    }
    bn.running_mean.copy_from(&running_mean);
    bn.running_var.copy_from(&running_var);
}

/// (Σ dy, Σ dy·(x - m)): f32 partial sums over blocks of 256 values, the blocks added in f64,
/// so the loop vectorises and the error does not grow with the batch.
fn block_sums(x: &[f32], dy: &[f32], m: f32) -> (f64, f64) {
    const LANES: usize = 8;
    const BLOCK: usize = 256;
    let (mut total_dy, mut total_dy_centred) = (0.0f64, 0.0f64);
    for (xb, gb) in x.chunks(BLOCK).zip(dy.chunks(BLOCK)) {
        let mut a = [0.0f32; LANES];
        let mut b = [0.0f32; LANES];
        let (xc, gc) = (xb.chunks_exact(LANES), gb.chunks_exact(LANES));
        for (&x, &g) in xc.remainder().iter().zip(gc.remainder()) {
            a[0] += g;
            b[0] += g * (x - m);
        }
        for (xl, gl) in xc.zip(gc) {
            for lane in 0..LANES {
                a[lane] += gl[lane];
                b[lane] += gl[lane] * (xl[lane] - m);
            }
        }
        total_dy += a.iter().map(|&v| f64::from(v)).sum::<f64>();
        total_dy_centred += b.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
    (total_dy, total_dy_centred)
}
#[cfg(test)]
mod tests;
