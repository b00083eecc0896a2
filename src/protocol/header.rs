//! The run header: the first record of every stream; everything a reader needs to interpret the rest.
use serde::{Deserialize, Serialize};

use super::float_encoding;

pub const FORMAT_NAME: &str = "bntop";
/// A reader refuses a newer major version and ignores record kinds it does not know.
pub const FORMAT_VERSION_MAJOR: u32 = 1;
pub const FORMAT_VERSION_MINOR: u32 = 3;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunHeader {
    pub format: String,
    pub version_major: u32,
    pub version_minor: u32,
    /// Wall-clock start of the run, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    pub config: RunConfig,
    pub data: DataInfo,
    /// The BN layers, in network order; snapshot `layers[i]` belongs to `layers[i]` here.
    #[serde(deserialize_with = "super::limits::bounded_layers")]
    pub layers: Vec<LayerInfo>,
    pub conventions: Conventions,
    /// How a recording decimated the stream (absent in a live stream, which has every step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingPolicy>,
}

/// What a session file keeps of the live stream (format 1.1). Every control, evaluation, marker
/// and the end are kept. Snapshots are kept at most every `snapshot_interval_s` seconds of run
/// time; of those, the ones at most every `channel_arrays_interval_s` seconds keep their
/// per-channel arrays, the others keep each layer's mode, momentum and summary with empty arrays.
/// The step after each control, and the last step, are kept whole.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RecordingPolicy {
    #[serde(with = "float_encoding::scalar")]
    pub snapshot_interval_s: f64,
    #[serde(with = "float_encoding::scalar")]
    pub channel_arrays_interval_s: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecayMode {
    /// L2: λw added to the gradient before momentum (SGD) or before the moment estimates (Adam).
    Coupled,
    /// w <- w - η·λ·w, outside the gradient (SGDW / AdamW).
    Decoupled,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    #[serde(with = "float_encoding::scalar")]
    pub lr: f32,
    /// SGD momentum (0 = none); unused by Adam.
    #[serde(with = "float_encoding::scalar")]
    pub momentum: f32,
    #[serde(with = "float_encoding::scalar")]
    pub weight_decay: f32,
    pub weight_decay_mode: WeightDecayMode,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunConfig {
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    pub seed: u64,
    /// Initial BN momentum of every layer.
    #[serde(with = "float_encoding::scalar")]
    pub bn_momentum: f32,
    /// Held-out evaluation every this many steps.
    pub eval_every: u64,
    /// Held-out images used by each evaluation.
    pub eval_samples: usize,
    pub max_steps: Option<u64>,
    /// A learnable bias before each BN (redundant in train mode: BN's mean subtraction cancels it).
    pub conv_bias: bool,
    /// How training batches are drawn, e.g. "shuffled".
    pub data_order: String,
    /// Per-layer statistics in every snapshot (false: loss and accuracy only, as in the benchmark).
    pub layer_metrics: bool,
    /// Format 1.3: PreciseBN, a three-way evaluation and the probe every this many steps (0: on
    /// demand only), over `precise_samples` shuffled training images. 0 in older files.
    #[serde(default)]
    pub lab_every: u64,
    #[serde(default)]
    pub precise_samples: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DataInfo {
    /// "digits", "mnist-10k" (embedded), "mnist-idx", "cifar10" or "random" (`bench --shape`).
    pub name: String,
    /// "embedded" or the path it was read from.
    pub source: String,
    pub train_images: usize,
    pub heldout_images: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// Per-channel standardisation applied to every image (train-split mean and std).
    #[serde(with = "float_encoding::vec")]
    pub channel_mean: Vec<f32>,
    #[serde(with = "float_encoding::vec")]
    pub channel_std: Vec<f32>,
}

/// One conv -> BN -> ReLU block.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LayerInfo {
    pub name: String,
    pub in_channels: usize,
    /// Channels of the conv output = BN channels.
    pub channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub conv_bias: bool,
    pub in_height: usize,
    pub in_width: usize,
    pub out_height: usize,
    pub out_width: usize,
}

/// The conventions behind every number in the stream (BN-METRICS.md, "Conventions to state").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Conventions {
    pub momentum: String,
    pub batch_variance: String,
    pub running_variance: String,
    #[serde(with = "float_encoding::scalar")]
    pub epsilon: f64,
    pub drift: String,
    pub weight_metrics: String,
    pub weight_decay_scope: String,
}

impl Conventions {
    /// The conventions of bntop's engine (dfdx's BatchNorm2D, which follows PyTorch).
    pub fn bntop(epsilon: f64) -> Conventions {
        Conventions {
            momentum: "PyTorch: running <- (1 - m) * running + m * batch".into(),
            batch_variance: "biased (divide by n = N*H*W); BN normalises with it".into(),
            running_variance: "unbiased: tracks batch variance * n/(n-1)".into(),
            epsilon,
            drift: "r = sqrt(batch_var + eps)/sqrt(running_var + eps), d = (batch_mean - running_mean)/sqrt(running_var + eps), D = sqrt(d^2 + (r-1)^2), using the running statistics from BEFORE this step's update; layer D = sqrt(mean_c D^2)".into(),
            weight_metrics: "per output channel c of the conv feeding the BN: ||w_c||; angular update = angle(w_c before, w_c after the optimizer step), layer value = RMS over channels; effective lr = lr/||w_c||^2 (SGD), layer value = mean over channels; cos = cos(w_c, dL/dw_c), layer value = max |cos|".into(),
            weight_decay_scope: "all trainable parameters, gamma and beta included".into(),
        }
    }
}
