//! BatchNorm (+ ReLU) during training as one custom dfdx op with its own backward, in train
//! mode (batch statistics) and eval mode (running statistics, gradients still flowing). dfdx's
//! `BatchNorm2D::forward_mut` builds the same thing from about a dozen generic broadcast and
//! elementwise kernels, each a full pass over the activations with its own buffer; here the
//! forward is three passes (mean, variance, output) and the backward two, per channel over the
//! contiguous channel-major data.
//!
//! Asked to measure, the op also hands back everything the layer metrics read of the
//! activations, so no one reads them again: the input's batch moments (which train mode
//! computes anyway), the output's (y is affine in x, so they follow from the input's), and the
//! ReLU output's moments and active fraction, summed in the output pass. A step's metrics then
//! cost O(channels) beyond the op itself.
use dfdx::prelude::*;
use rayon::prelude::*;

use super::batchnorm::BnInput;
use super::host::{from_host, shared_pool, to_host, to_pooled, PooledBuffer};
use super::model::BatchNorm;
use super::parallel::chunks_per_task;
use crate::metrics::moments::{moments, Moments, ReluMoments};

/// What the fused op measured of one step's activations, per channel.
#[derive(Clone, Debug)]
pub struct BnMeasurement {
    /// Mean and BIASED variance of the input x over the batch.
    pub input: Vec<Moments>,
    /// Mean and biased variance of y = γ·x̂ + β (before the ReLU).
    pub output: Vec<Moments>,
    /// Moments of max(0, y) and the fraction of y > 0.
    pub relu: Vec<ReluMoments>,
}

/// What the fused forward returns.
pub struct Forward<T> {
    /// ReLU(y) with `relu`, else y = γ·x̂ + β.
    pub out: BnInput<T>,
    /// With `measure`.
    pub measured: Option<BnMeasurement>,
    /// y before the ReLU, channel-major, with `keep_pre_relu` (tests compare against it).
    pub pre_relu: Option<Vec<f32>>,
}

/// What to hand back besides the output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observe {
    /// The [`BnMeasurement`].
    pub measure: bool,
    /// A host copy of y before the ReLU.
    pub keep_pre_relu: bool,
}

/// Train-mode BatchNorm on (C, N, H, W): normalises with the batch mean and BIASED variance,
/// applies γ, β and (with `relu`) max(0, ·), and updates the running statistics exactly like
/// dfdx's `forward_mut` (running = (1-m)·running + m·batch, variance unbiased by n/(n-1)).
/// Gradients flow to the input (through the batch statistics), γ and β.
pub fn batch_norm_train<T: Tape<f32, Cpu>>(
    x: BnInput<T>,
    bn: &mut BatchNorm,
    relu: bool,
    observe: Observe,
) -> Forward<T> {
    let (x, tape) = x.split_tape();
    let xs = to_pooled(&x, &shared_pool());
    let host = train_host(xs, bn, relu, observe);
    into_op(x, tape, host, bn)
}

/// Eval-mode BatchNorm (+ ReLU) while training: normalises with the running statistics, which
/// stay untouched; gradients flow to the input, γ and β. Same arithmetic as
/// [`normalize_with_running_stats`](super::batchnorm::normalize_with_running_stats).
pub fn batch_norm_eval<T: Tape<f32, Cpu>>(
    x: BnInput<T>,
    bn: &BatchNorm,
    relu: bool,
    observe: Observe,
) -> Forward<T> {
    let (x, tape) = x.split_tape();
    let xs = to_pooled(&x, &shared_pool());
    let host = eval_host(xs, bn, relu, observe);
    into_op(x, tape, host, bn)
}

/// The train-mode forward on the host: `xs` is the input, channel-major with `bn`'s channels.
pub(super) fn train_host(
    xs: PooledBuffer,
    bn: &mut BatchNorm,
    relu: bool,
    observe: Observe,
) -> HostForward {
    let batch = batch_moments(&xs, bn.channels());
    update_running_stats(bn, &batch, xs.len() / bn.channels());
    let constants = Constants::of_batch(&batch, bn.epsilon);
    let wanted = Wanted {
        input: observe.measure.then_some(batch),
        keep_pre_relu: observe.keep_pre_relu,
    };
    normalize(xs, constants, bn, relu, wanted)
}

/// The eval-mode forward on the host (see [`train_host`]).
pub(super) fn eval_host(
    xs: PooledBuffer,
    bn: &BatchNorm,
    relu: bool,
    observe: Observe,
) -> HostForward {
    let constants = Constants::of_running(bn);
    // Eval mode does not need the batch moments itself; the drift metrics do.
    let wanted = Wanted {
        input: observe.measure.then(|| batch_moments(&xs, bn.channels())),
        keep_pre_relu: observe.keep_pre_relu,
    };
    normalize(xs, constants, bn, relu, wanted)
}

/// The host forward as a dfdx op: the output tensor, and the backward on the tape.
fn into_op<T: Tape<f32, Cpu>>(
    x: BnInput<NoneTape>,
    mut tape: T,
    host: HostForward,
    bn: &BatchNorm,
) -> Forward<T> {
    let HostForward {
        measured,
        pre_relu,
        backward,
    } = host;
    let out: BnInput<NoneTape> = from_host(x.device(), backward.output(), *x.shape());
    let (xg, og, gg, bg) = (x.ghost(), out.ghost(), bn.scale.ghost(), bn.bias.ghost());
    tape.add_backward_op(move |grads| {
        // The output's gradient is moved out for the pass (dx is borrowed from `grads` at the
        // same time) and put back unchanged, rather than copied.
        let dy = std::mem::take(&mut **grads.get_or_alloc_mut(&og)?);
        let (d_gamma, d_beta) = backward.input_grads(&dy, grads.get_or_alloc_mut(&xg)?, true);
        **grads.get_or_alloc_mut(&og)? = dy;
        add_f64(grads.get_or_alloc_mut(&gg)?, &d_gamma);
        add_f64(grads.get_or_alloc_mut(&bg)?, &d_beta);
        Ok(())
    });
    Forward {
        out: out.put_tape(tape),
        measured,
        pre_relu,
    }
}

/// grad += d, each d rounded to f32 first.
pub(super) fn add_f64(grad: &mut [f32], d: &[f64]) {
    for (g, d) in grad.iter_mut().zip(d) {
        *g += *d as f32;
    }
}

/// What the host forward gives: what was asked for besides the output, and the backward, which
/// holds the output (ReLU(y) with `relu`, else y; [`Backward::output`]) for ReLU's mask.
pub(super) struct HostForward {
    pub measured: Option<BnMeasurement>,
    pub pre_relu: Option<Vec<f32>>,
    pub backward: Backward,
}

/// Per channel c: y = (x - centre[c])·inv_std[c]·γ[c] + β[c]. Also what inference
/// ([`bn_infer`](super::bn_infer)) normalises with, so both compute the same bits.
pub(super) struct Constants {
    centre: Vec<f32>,
    inv_std: Vec<f32>,
    /// Whether centre and inv_std are this batch's statistics, so the gradient flows through
    /// them too (train mode), or constants (eval mode).
    through_batch_stats: bool,
}

impl Constants {
    /// The batch's mean and BIASED variance (`batch`, per channel).
    pub(super) fn of_batch(batch: &[Moments], epsilon: f64) -> Constants {
        Constants {
            centre: batch.iter().map(|m| m.mean as f32).collect(),
            inv_std: (batch.iter())
                .map(|m| (1.0 / (m.var + epsilon).sqrt()) as f32)
                .collect(),
            through_batch_stats: true,
        }
    }

    /// The running statistics, which stay untouched.
    pub(super) fn of_running(bn: &BatchNorm) -> Constants {
        let eps = bn.epsilon as f32;
        Constants {
            centre: to_host(&bn.running_mean),
            inv_std: (to_host(&bn.running_var).iter())
                .map(|v| (v + eps).sqrt().recip())
                .collect(),
            through_batch_stats: false,
        }
    }

    /// Each channel's affine map, with γ and β from `gamma` and `beta`.
    pub(super) fn affine(&self, gamma: &[f32], beta: &[f32]) -> Vec<Affine> {
        (0..self.centre.len())
            .map(|c| Affine {
                centre: self.centre[c],
                scale: gamma[c] * self.inv_std[c],
                bias: beta[c],
            })
            .collect()
    }
}

/// What the caller wants back besides the output: `input` (x's batch moments) is given when
/// measuring.
struct Wanted {
    input: Option<Vec<Moments>>,
    keep_pre_relu: bool,
}

/// The shared host forward: `xs` is the input, channel-major.
fn normalize(
    xs: PooledBuffer,
    constants: Constants,
    bn: &BatchNorm,
    relu: bool,
    wanted: Wanted,
) -> HostForward {
    let channels = bn.channels();
    assert_eq!(xs.len() % channels, 0, "the input must be whole channels");
    let n = xs.len() / channels;
    let gamma = to_host(&bn.scale);
    let beta = to_host(&bn.bias);
    let affine = constants.affine(&gamma, &beta);
    let Constants {
        centre,
        inv_std,
        through_batch_stats,
    } = constants;

    let output = (wanted.input.as_deref()).map(|input| output_moments(input, &affine));
    let pre_relu = wanted.keep_pre_relu.then(|| {
        let mut ys = Vec::with_capacity(xs.len());
        for (a, xc) in affine.iter().zip(xs.chunks_exact(n)) {
            ys.extend(xc.iter().map(|&x| a.apply(x)));
        }
        ys
    });
    let (ys, relu_moments) = forward_channels(&xs, n, &affine, output.as_deref(), relu);
    let measured = wanted
        .input
        .zip(output)
        .map(|(input, output)| BnMeasurement {
            input,
            output,
            relu: relu_moments,
        });
    let backward = Backward {
        xs,
        ys,
        centre,
        inv_std,
        gamma,
        through_batch_stats,
        relu,
        channels,
        n,
    };
    HostForward {
        measured,
        pre_relu,
        backward,
    }
}

/// The measured output pass's time over the plain one's, on the same values (about 3 on this
/// machine's AVX-512 path: 13.7 against 4.6 us over the digits' three layers).
const MEASURED_PASS_COST: usize = 3;

/// The forward over every channel: y (ReLU(y) with `relu`), channel-major, and, given the
/// output moments (when measuring), each channel's ReLU moments.
fn forward_channels(
    xs: &[f32],
    n: usize,
    affine: &[Affine],
    output: Option<&[Moments]>,
    relu: bool,
) -> (PooledBuffer, Vec<ReluMoments>) {
    // The host copies of x and of the output that the backward keeps come from the shared pool:
    // a fresh allocation of that size would cost its page faults every step.
    let mut ys = shared_pool().take(xs.len());
    // The measured pass does about three times the plain one's work a value (the ReLU output's
    // sums besides the output), so its tasks take a third as many values: otherwise the
    // digits' later layers, a task each, ran it on one core.
    let per_task = match output {
        Some(_) => chunks_per_task(n).div_ceil(MEASURED_PASS_COST),
        None => chunks_per_task(n),
    };
    let per_channel = (ys.par_chunks_exact_mut(n).zip(xs.par_chunks_exact(n)))
        .zip(affine.par_iter())
        .enumerate()
        .with_min_len(per_task)
        .map(|(c, ((yc, xc), a))| match output {
            Some(output) => {
                let shift = relu_shift(output[c]);
                Some(if relu {
                    output_pass::apply_measuring::<true>(xc, a, shift, yc)
                } else {
                    output_pass::apply_measuring::<false>(xc, a, shift, yc)
                })
            }
            None if relu => {
                output_pass::apply::<true>(xc, a, yc);
                None
            }
            None => {
                output_pass::apply::<false>(xc, a, yc);
                None
            }
        });
    let relu_moments = per_channel.collect::<Vec<_>>().into_iter().flatten();
    (ys, relu_moments.collect())
}

/// What the backward keeps of the forward: x and the output on the host (channel-major, `n`
/// values a channel), the constants it normalised with, and γ.
pub(super) struct Backward {
    xs: PooledBuffer,
    ys: PooledBuffer,
    centre: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    through_batch_stats: bool,
    relu: bool,
    channels: usize,
    n: usize,
}

impl Backward {
    /// The forward's output, channel-major.
    pub(super) fn output(&self) -> &[f32] {
        &self.ys
    }

    /// ∂L/∂x from the output's gradient `dy`, added to `dx` with `add`, else written over it;
    /// returns ∂L/∂γ and ∂L/∂β per channel.
    pub(super) fn input_grads(
        &self,
        dy: &[f32],
        dx: &mut [f32],
        add: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let n = self.n;
        assert_eq!((dy.len(), dx.len()), (self.channels * n, self.channels * n));
        // One channel's dy through the ReLU, reused per thread: it stays in cache, unlike a
        // masked copy of all.
        let sums: Vec<(f64, f64)> = (dx.par_chunks_exact_mut(n).zip(dy.par_chunks_exact(n)))
            .enumerate()
            .with_min_len(chunks_per_task(n))
            .map_init(Vec::new, |masked, (c, (dxc, dyc))| {
                self.channel_grads(c, dyc, dxc, add, masked)
            })
            .collect();
        sums.into_iter().unzip()
    }

    /// One channel c of [`Self::input_grads`]: ∂L/∂x into `dx` (added with `add`); returns
    /// (∂L/∂γ, ∂L/∂β).
    fn channel_grads<'a>(
        &self,
        c: usize,
        mut dy: &'a [f32],
        dx: &mut [f32],
        add: bool,
        masked: &'a mut Vec<f32>,
    ) -> (f64, f64) {
        let n = self.n;
        let range = c * n..(c + 1) * n;
        let xc = &self.xs[range.clone()];
        if self.relu {
            // ReLU's gradient first: dy is zero where the output was clamped.
            masked.clear();
            let clamped = dy.iter().zip(&self.ys[range]);
            masked.extend(clamped.map(|(&g, &y)| if y > 0.0 { g } else { 0.0 }));
            dy = masked;
        }
        let (m, s) = (self.centre[c], self.inv_std[c]);
        let (sum_dy, sum_dy_centred) = block_sums(xc, dy, m);
        // x̂ = (x - m)·s, so Σ dy·x̂ = s·Σ dy·(x - m).
        let sum_dy_xhat = sum_dy_centred * f64::from(s);
        let k = self.gamma[c] * s;
        if self.through_batch_stats {
            let mean_dy = (sum_dy / n as f64) as f32;
            // k·x̂·mean(dy·x̂) = (x - m)·k·s·mean(dy·x̂)
            let slope = k * s * (sum_dy_xhat / n as f64) as f32;
            let grads = xc.iter().zip(dy);
            let grads = grads.map(|(&x, &g)| k * (g - mean_dy) - (x - m) * slope);
            store(dx, grads, add);
        } else {
            store(dx, dy.iter().map(|&g| k * g), add);
        }
        (sum_dy_xhat, sum_dy)
    }
}

/// dst += values with `add`, else dst = values.
#[inline(always)]
fn store(dst: &mut [f32], values: impl Iterator<Item = f32>, add: bool) {
    if add {
        dst.iter_mut().zip(values).for_each(|(d, v)| *d += v);
    } else {
        dst.iter_mut().zip(values).for_each(|(d, v)| *d = v);
    }
}

/// [`channel_moments`](crate::metrics::moments::channel_moments) with the channels spread over
/// the pool's threads: the same sums per channel, so the same bits.
pub(super) fn batch_moments(xs: &[f32], channels: usize) -> Vec<Moments> {
    let n = xs.len() / channels.max(1);
    assert_eq!(n * channels, xs.len(), "channels must divide the values");
    (xs.par_chunks_exact(n.max(1)))
        .with_min_len(chunks_per_task(n))
        .map(moments)
        .collect()
}

/// One channel's y = (x - centre)·scale + β, with scale = γ·inv_std, in the f32 operations
/// the op has always used (a seed's run stays the same bit for bit).
pub(super) struct Affine {
    centre: f32,
    scale: f32,
    bias: f32,
}

impl Affine {
    pub(super) fn apply(&self, x: f32) -> f32 {
        (x - self.centre) * self.scale + self.bias
    }
}

/// y is affine in x, so its mean and variance follow from x's: (μ - centre)·scale + β and
/// scale²·σ², exact up to the f32 rounding of the y values themselves.
fn output_moments(input: &[Moments], affine: &[Affine]) -> Vec<Moments> {
    (input.iter().zip(affine))
        .map(|(m, a)| {
            let scale = f64::from(a.scale);
            Moments {
                mean: (m.mean - f64::from(a.centre)) * scale + f64::from(a.bias),
                var: scale * scale * m.var,
            }
        })
        .collect()
}

/// Near what max(0, y) averages to: y's mean, or 0 for a channel mostly below zero. The ReLU
/// sums are taken around it, so a channel far above zero (mean² ≫ variance) does not get its
/// variance from a difference of two large numbers, and a dead one sums exact zeros.
fn relu_shift(y: Moments) -> f64 {
    if y.mean > 0.0 && y.mean.is_finite() {
        y.mean
    } else {
        0.0
    }
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
mod output_pass;
#[cfg(test)]
mod tests;
