//! Turns what one block saw during a step into its [`LayerSnapshot`], using the pure metrics.
//! Its inputs are per-channel moments (measured by the fused BN op) and the block's weights, so
//! this costs O(channels + weights): no activation is read again.
use super::forward::BlockObservation;
use super::params::BlockGrads;
use crate::metrics::drift;
use crate::metrics::weights::{self, StepSums};
use crate::protocol::{BnMode, LayerSnapshot, LayerSummary};

/// The host-side record of one block for one step.
pub struct BlockStep {
    pub mode: BnMode,
    pub momentum: f64,
    pub epsilon: f64,
    pub lr: f64,
    pub conv_bias: bool,
    pub seen: BlockObservation,
    pub grads: BlockGrads,
    /// γ and β before the update.
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    /// Conv weights (channels, fan_in) before and after the optimizer step.
    pub weight_before: Vec<f32>,
    pub weight_after: Vec<f32>,
}

fn to_f32(xs: impl IntoIterator<Item = f64>) -> Vec<f32> {
    xs.into_iter().map(|x| x as f32).collect()
}

/// Per-channel readings of the conv weights (one per output channel).
struct WeightRows {
    /// Each row's sums over its weights before and after the step and its gradient.
    sums: Vec<StepSums>,
    /// The angle each row turned by in the step (read twice: per row and as the layer's RMS).
    angles: Vec<f64>,
}

impl BlockStep {
    pub fn snapshot(&self) -> LayerSnapshot {
        let seen = &self.seen;
        let (batch, out, relu) = (
            &seen.measured.input,
            &seen.measured.output,
            &seen.measured.relu,
        );
        let drifts = self.drifts();
        let rows = self.weight_rows();
        let summary = self.summary(&drifts, &rows);
        LayerSnapshot {
            rank_drift: Vec::new(),
            mode: self.mode,
            momentum: self.momentum as f32,
            cumulative: false,
            batch_mean: to_f32(batch.iter().map(|m| m.mean)),
            batch_var: to_f32(batch.iter().map(|m| m.var)),
            running_mean_pre: seen.running_mean_pre.clone(),
            running_var_pre: seen.running_var_pre.clone(),
            running_mean_post: seen.running_mean_post.clone(),
            running_var_post: seen.running_var_post.clone(),
            r: to_f32(drifts.iter().map(|x| x.r)),
            d: to_f32(drifts.iter().map(|x| x.d)),
            drift: to_f32(drifts.iter().map(|x| x.big_d)),
            out_mean: to_f32(out.iter().map(|m| m.mean)),
            out_var: to_f32(out.iter().map(|m| m.var)),
            relu_mean: to_f32(relu.iter().map(|m| m.mean)),
            relu_var: to_f32(relu.iter().map(|m| m.var)),
            relu_active: to_f32(relu.iter().map(|m| m.active_fraction)),
            gamma: self.gamma.clone(),
            beta: self.beta.clone(),
            grad_gamma: self.grads.gamma.clone(),
            grad_beta: self.grads.beta.clone(),
            weight_norm: to_f32(rows.sums.iter().map(StepSums::after_norm)),
            angular_update: to_f32(rows.angles),
            weight_grad_cos: to_f32(rows.sums.iter().map(StepSums::grad_cosine)),
            weight_grad_norm: to_f32(rows.sums.iter().map(StepSums::grad_norm)),
            bias_grad: self.conv_bias.then(|| self.grads.bias.clone()),
            // Filled in by the publisher, which sees every step (`layer_estimates`).
            ema: None,
            summary,
        }
    }

    /// Each channel's batch statistics against the running ones it was normalised with.
    fn drifts(&self) -> Vec<drift::Drift> {
        let seen = &self.seen;
        let batch = &seen.measured.input;
        (0..self.gamma.len())
            .map(|c| {
                drift::drift(
                    batch[c].mean,
                    batch[c].var,
                    seen.running_mean_pre[c] as f64,
                    seen.running_var_pre[c] as f64,
                    self.epsilon,
                )
            })
            .collect()
    }

    /// One pass over the block's weights and weight gradient.
    fn weight_rows(&self) -> WeightRows {
        let (sums, angles) = weights::row_step_sums(
            &self.weight_before,
            &self.weight_after,
            &self.grads.weight,
            self.gamma.len(),
        )
        .unzip();
        WeightRows { sums, angles }
    }

    /// The layer's one-number readings, from its per-channel ones.
    fn summary(&self, drifts: &[drift::Drift], rows: &WeightRows) -> LayerSummary {
        let relu = &self.seen.measured.relu;
        let big_d: Vec<f64> = drifts.iter().map(|x| x.big_d).collect();
        let r: Vec<f64> = drifts.iter().map(|x| x.r).collect();
        let abs_d: Vec<f64> = drifts.iter().map(|x| x.d.abs()).collect();
        LayerSummary {
            drift: drift::rms(&big_d) as f32,
            r_mean: mean(r.iter().copied()) as f32,
            r_min: fold_nan_aware(r.iter().copied(), f64::min) as f32,
            r_max: fold_nan_aware(r.iter().copied(), f64::max) as f32,
            d_mean_abs: mean(abs_d.iter().copied()) as f32,
            d_max_abs: fold_nan_aware(abs_d.iter().copied(), f64::max) as f32,
            // ‖w‖² of the layer is the sum of its rows' (in another order than one pass).
            weight_norm: rows.sums.iter().map(|s| s.after_sq).sum::<f64>().sqrt() as f32,
            angular_update: drift::rms(&rows.angles) as f32,
            effective_lr: mean(rows.sums.iter().map(|s| {
                let n = s.after_norm();
                weights::effective_lr(self.lr, n * n)
            })) as f32,
            max_abs_cos: fold_nan_aware(rows.sums.iter().map(|s| s.grad_cosine().abs()), f64::max)
                as f32,
            relu_active: mean(relu.iter().map(|m| m.active_fraction)) as f32,
            radial_fraction: mean(rows.sums.iter().map(StepSums::step_cosine)) as f32,
            noise_floor: f32::NAN,
        }
    }
}

fn mean(xs: impl ExactSizeIterator<Item = f64>) -> f64 {
    let len = xs.len();
    xs.sum::<f64>() / len.max(1) as f64
}

/// min/max that lets a NaN through (f64::min/max would silently skip it: a diverged channel must show).
fn fold_nan_aware(xs: impl Iterator<Item = f64>, pick: fn(f64, f64) -> f64) -> f64 {
    xs.reduce(|a, b| {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            pick(a, b)
        }
    })
    .unwrap_or(f64::NAN)
}
