//! Turns what one block saw during a step into its [`LayerSnapshot`], using the pure metrics.
//! Its inputs are per-channel moments (measured by the fused BN op) and per-row sums over the
//! conv weights (taken on the training thread, [`weight_step`](super::weight_step)), so this
//! costs O(channels): no activation or weight is read again.
use super::forward::BlockObservation;
use super::weight_step::RowStep;
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
    /// γ and β before the update, and the gradients of γ, β and the conv bias.
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub grad_gamma: Vec<f32>,
    pub grad_beta: Vec<f32>,
    pub grad_bias: Vec<f32>,
    /// Each conv filter's step.
    pub weight_rows: Vec<RowStep>,
}

fn to_f32(xs: impl IntoIterator<Item = f64>) -> Vec<f32> {
    xs.into_iter().map(|x| x as f32).collect()
}

impl BlockStep {
    pub fn into_snapshot(self) -> LayerSnapshot {
        let drifts = self.drifts();
        let angles: Vec<f64> = self.weight_rows.iter().map(RowStep::angle).collect();
        let summary = self.summary(&drifts, &angles);
        let rows = &self.weight_rows;
        let sums = || rows.iter().map(|r| &r.sums);
        let seen = self.seen;
        let (batch, out, relu) = (
            &seen.measured.input,
            &seen.measured.output,
            &seen.measured.relu,
        );
        LayerSnapshot {
            rank_drift: Vec::new(),
            mode: self.mode,
            momentum: self.momentum as f32,
            cumulative: false,
            batch_mean: to_f32(batch.iter().map(|m| m.mean)),
            batch_var: to_f32(batch.iter().map(|m| m.var)),
            running_mean_pre: seen.running_mean_pre,
            running_var_pre: seen.running_var_pre,
            running_mean_post: seen.running_mean_post,
            running_var_post: seen.running_var_post,
            r: to_f32(drifts.iter().map(|x| x.r)),
            d: to_f32(drifts.iter().map(|x| x.d)),
            drift: to_f32(drifts.iter().map(|x| x.big_d)),
            out_mean: to_f32(out.iter().map(|m| m.mean)),
            out_var: to_f32(out.iter().map(|m| m.var)),
            relu_mean: to_f32(relu.iter().map(|m| m.mean)),
            relu_var: to_f32(relu.iter().map(|m| m.var)),
            relu_active: to_f32(relu.iter().map(|m| m.active_fraction)),
            gamma: self.gamma,
            beta: self.beta,
            grad_gamma: self.grad_gamma,
            grad_beta: self.grad_beta,
            weight_norm: to_f32(sums().map(StepSums::after_norm)),
            angular_update: to_f32(angles),
            weight_grad_cos: to_f32(sums().map(StepSums::grad_cosine)),
            weight_grad_norm: to_f32(sums().map(StepSums::grad_norm)),
            bias_grad: self.conv_bias.then_some(self.grad_bias),
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

    /// The layer's one-number readings, from its per-channel ones.
    fn summary(&self, drifts: &[drift::Drift], angles: &[f64]) -> LayerSummary {
        let relu = &self.seen.measured.relu;
        let sums = || self.weight_rows.iter().map(|r| &r.sums);
        let r = || drifts.iter().map(|x| x.r);
        let abs_d = || drifts.iter().map(|x| x.d.abs());
        LayerSummary {
            drift: drift::rms(drifts.iter().map(|x| x.big_d)) as f32,
            r_mean: mean(r()) as f32,
            r_min: fold_nan_aware(r(), f64::min) as f32,
            r_max: fold_nan_aware(r(), f64::max) as f32,
            d_mean_abs: mean(abs_d()) as f32,
            d_max_abs: fold_nan_aware(abs_d(), f64::max) as f32,
            // ‖w‖² of the layer is the sum of its rows' (in another order than one pass).
            weight_norm: sums().map(|s| s.after_sq).sum::<f64>().sqrt() as f32,
            angular_update: drift::rms(angles.iter().copied()) as f32,
            effective_lr: mean(sums().map(|s| {
                let n = s.after_norm();
                weights::effective_lr(self.lr, n * n)
            })) as f32,
            max_abs_cos: fold_nan_aware(sums().map(|s| s.grad_cosine().abs()), f64::max) as f32,
            relu_active: mean(relu.iter().map(|m| m.active_fraction)) as f32,
            radial_fraction: mean(sums().map(StepSums::step_cosine)) as f32,
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
