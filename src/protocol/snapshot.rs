//! The per-step snapshot: a complete state at one step, so any point can be shown on its own.
use serde::{Deserialize, Serialize};

use super::controls::BnMode;
use super::float_encoding;
use super::limits;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Optimizer steps completed, counting this one (the first step is 1).
    pub step: u64,
    /// Passes over the training set started so far (the first epoch is 0).
    pub epoch: u64,
    /// Seconds since the run started.
    #[serde(with = "float_encoding::scalar")]
    pub time_s: f64,
    /// Mean cross-entropy of this batch.
    #[serde(with = "float_encoding::scalar")]
    pub loss: f32,
    #[serde(with = "float_encoding::scalar")]
    pub batch_accuracy: f32,
    #[serde(with = "float_encoding::scalar")]
    pub lr: f32,
    /// Format 1.5: the producer skipped its optional passes this step to stay within its
    /// measurement budget (bntop-torch's `measure_budget`): the summary fields they feed (see
    /// [`LayerSummary::keep_optional_from`]) are NaN, and readers keep the last measured values. The BN statistics are measured every step all the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// One per BN layer, in header order; empty when layer metrics are off.
    #[serde(deserialize_with = "limits::bounded_layers")]
    pub layers: Vec<LayerSnapshot>,
}

/// One BN layer (and the conv feeding it) at one step. Every vector has one entry per channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
/// Per-channel arrays may be empty: a recording keeps them only at a bounded rate (see
/// `RecordingPolicy`); mode, momentum and the summary are always there. Empty arrays are omitted
/// from the JSON.
pub struct LayerSnapshot {
    pub mode: BnMode,
    /// The momentum of this step's running-statistics update.
    #[serde(with = "float_encoding::scalar")]
    pub momentum: f32,
    /// Format 1.4: the layer's momentum is PyTorch's `None` (a cumulative average); `momentum` is
    /// then the weight this step's batch got, 1/num_batches_tracked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cumulative: bool,
    /// Batch mean and BIASED batch variance of the BN input.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub batch_mean: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub batch_var: Vec<f32>,
    /// Running statistics before and after this step's update (equal in eval mode).
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub running_mean_pre: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub running_var_pre: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub running_mean_post: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub running_var_post: Vec<f32>,
    /// Batch Renormalization's r and d and the drift D, against the pre-update running statistics.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub r: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub d: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub drift: Vec<f32>,
    /// BN output (after γ, β) mean and biased variance, in the mode the layer ran in.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub out_mean: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub out_var: Vec<f32>,
    /// After the ReLU: mean, biased variance and the fraction of values > 0.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub relu_mean: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub relu_var: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub relu_active: Vec<f32>,
    /// γ and β before this step's optimizer update, and their gradients.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gamma: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub beta: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub grad_gamma: Vec<f32>,
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub grad_beta: Vec<f32>,
    /// Conv filter norms ||w_c|| after this step's update.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub weight_norm: Vec<f32>,
    /// Angle in radians between w_c before and after this step's update.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub angular_update: Vec<f32>,
    /// cos(w_c, dL/dw_c) before the update. BN in train mode makes the filter scale-invariant up
    /// to ε, so this is the ε residual γ(∂L/∂γ)ε/(σ²_B+ε) / (‖w‖‖g‖): small (1e-5 to 1e-3), not 0.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub weight_grad_cos: Vec<f32>,
    /// Format 1.5 (optional): ‖dL/dw_c‖ before the update, the loss gradient without weight
    /// decay. With `weight_norm` it turns the ε residual into a predicted cos(w_c, g_c).
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub weight_grad_norm: Vec<f32>,
    /// dL/db of the conv bias before the BN (only with --conv-bias): about 0 in train mode.
    #[serde(default, with = "float_encoding::option_vec")]
    pub bias_grad: Option<Vec<f32>>,
    /// Format 1.4, distributed runs: per rank k, the drift D of rank k's batch statistics from the
    /// global ones pooled over every rank (FORMAT.md); empty otherwise.
    #[serde(
        default,
        with = "float_encoding::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rank_drift: Vec<f32>,
    pub summary: LayerSummary,
    /// Format 1.5: the running mean as an EMA (BN-METRICS §2), fitted by the producer over the
    /// successive steps it saw, which a thinned stream no longer has; absent when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<EmaFit>,
}

/// Format 1.5: lag and noise of a layer's running mean, measured over its last `steps`
/// successive steps at one momentum in train mode (at most 400, at least 50) and averaged over
/// up to 64 evenly spaced channels: what `metrics::ema_window::EmaWindow::read` returns.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct EmaFit {
    /// Successive steps fitted; the last of them is this snapshot's step or at most
    /// `EMA_FIT_EVERY - 1` (7) steps before it.
    pub steps: u32,
    /// Measured lag of the running mean behind the batch means' trend, in steps (median over
    /// the channels with a trend; compare (1-m)/m); NaN when the batch means show no trend.
    #[serde(with = "float_encoding::scalar")]
    pub lag: f32,
    /// Channel mean of the running mean's noise around the trend, and its prediction
    /// √(m/(2-m)·v·(1+(1-m)φ)/(1-(1-m)φ)) from the batch means' noise v and lag-1 correlation φ.
    #[serde(with = "float_encoding::scalar")]
    pub noise: f32,
    #[serde(with = "float_encoding::scalar")]
    pub noise_predicted: f32,
    /// Channel mean of φ.
    #[serde(with = "float_encoding::scalar")]
    pub batch_correlation: f32,
    /// The momentum m* that would balance lag and noise for this trend; NaN without a trend.
    #[serde(with = "float_encoding::scalar")]
    pub best_momentum: f32,
}

impl LayerSnapshot {
    /// The length of the longest per-channel array (0 for a summary-only layer).
    pub fn widest(&self) -> usize {
        [
            &self.batch_mean,
            &self.batch_var,
            &self.running_mean_pre,
            &self.running_var_pre,
            &self.running_mean_post,
            &self.running_var_post,
            &self.r,
            &self.d,
            &self.drift,
            &self.out_mean,
            &self.out_var,
            &self.relu_mean,
            &self.relu_var,
            &self.relu_active,
            &self.gamma,
            &self.beta,
            &self.grad_gamma,
            &self.grad_beta,
            &self.weight_norm,
            &self.angular_update,
            &self.weight_grad_cos,
            &self.weight_grad_norm,
        ]
        .into_iter()
        .chain(&self.bias_grad)
        .map(Vec::len)
        .max()
        .unwrap_or(0)
    }
}

/// Layer aggregates of the per-channel vectors (conventions in the run header).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LayerSummary {
    /// sqrt(mean_c D²).
    #[serde(with = "float_encoding::scalar")]
    pub drift: f32,
    #[serde(with = "float_encoding::scalar")]
    pub r_mean: f32,
    #[serde(with = "float_encoding::scalar")]
    pub r_min: f32,
    #[serde(with = "float_encoding::scalar")]
    pub r_max: f32,
    #[serde(with = "float_encoding::scalar")]
    pub d_mean_abs: f32,
    #[serde(with = "float_encoding::scalar")]
    pub d_max_abs: f32,
    /// Norm of the whole conv weight.
    #[serde(with = "float_encoding::scalar")]
    pub weight_norm: f32,
    /// RMS over channels of the angular update.
    #[serde(with = "float_encoding::scalar")]
    pub angular_update: f32,
    /// Mean over channels of lr/||w_c||².
    #[serde(with = "float_encoding::scalar")]
    pub effective_lr: f32,
    /// max_c |cos(w_c, g_c)|.
    #[serde(with = "float_encoding::scalar")]
    pub max_abs_cos: f32,
    /// Mean over channels of the ReLU active fraction.
    #[serde(with = "float_encoding::scalar")]
    pub relu_active: f32,
    /// Format 1.3: mean over channels of the radial fraction of the step, cos(w_c, Δw_c): 0 for
    /// a purely tangential (direction-only) step, -sin(θ/2) when the norm holds steady, negative
    /// when it shrinks. NaN in older recordings.
    #[serde(default = "float_encoding::nan", with = "float_encoding::scalar")]
    pub radial_fraction: f32,
    /// Format 1.5: the drift's empirical noise floor D0 (BN-METRICS §1), estimated by the
    /// producer from successive steps, which a thinned stream no longer has. NaN (and left out
    /// of the JSON) when not known: too few steps yet, or an older recording or producer.
    #[serde(
        default = "float_encoding::nan",
        with = "float_encoding::scalar",
        skip_serializing_if = "float_encoding::is_nan"
    )]
    pub noise_floor: f32,
}

impl LayerSummary {
    /// Takes from `earlier` what a producer's optional passes measure (the weight geometry and
    /// the ReLU): a `partial` snapshot has NaN there.
    pub fn keep_optional_from(&mut self, earlier: &LayerSummary) {
        self.weight_norm = earlier.weight_norm;
        self.angular_update = earlier.angular_update;
        self.effective_lr = earlier.effective_lr;
        self.max_abs_cos = earlier.max_abs_cos;
        self.relu_active = earlier.relu_active;
        self.radial_fraction = earlier.radial_fraction;
    }
}
