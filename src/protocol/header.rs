//! The run header: the first record of every stream; everything a reader needs to interpret the rest.
use serde::{Deserialize, Serialize};

use super::float_encoding;

pub const FORMAT_NAME: &str = "bntop";
/// A reader refuses a newer major version and ignores record kinds it does not know.
pub const FORMAT_VERSION_MAJOR: u32 = 1;
pub const FORMAT_VERSION_MINOR: u32 = 5;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunHeader {
    pub format: String,
    pub version_major: u32,
    pub version_minor: u32,
    /// Wall-clock start of the run, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Format 1.4: who produces the stream; absent for bntop's built-in engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<Producer>,
    pub config: RunConfig,
    /// The data set; format 1.4 lets an external producer, which does not know its data, leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataInfo>,
    /// The BN layers, in network order; snapshot `layers[i]` belongs to `layers[i]` here.
    #[serde(deserialize_with = "super::limits::bounded_layers")]
    pub layers: Vec<LayerInfo>,
    pub conventions: Conventions,
    /// How a recording decimated the stream (absent in a live stream, which has every step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingPolicy>,
}

/// Format 1.4: a producer other than the built-in engine (`bntop serve --source -`), e.g. the
/// PyTorch package bntop-torch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Producer {
    /// "bntop-torch", ...
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// The framework and its version, e.g. "torch 2.5.1".
    #[serde(default)]
    pub framework: String,
    /// The model's class name.
    #[serde(default)]
    pub model: String,
    /// Where the model runs, e.g. "cpu" or "cuda:0".
    #[serde(default)]
    pub device: String,
    /// Processes of a distributed run (rank 0 streams); 1 otherwise.
    #[serde(default = "one")]
    pub world_size: u32,
    /// The controls (their `"control"` names) the producer handles; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controls: Option<Vec<String>>,
}

fn one() -> u32 {
    1
}

impl Producer {
    /// Whether the producer handles the control named `name` (its `"control"` tag).
    pub fn handles(&self, name: &str) -> bool {
        self.controls
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }
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
    /// Format 1.4: any other optimizer of an external producer (its class is `OptimizerConfig::name`).
    #[serde(other)]
    Other,
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
    /// Format 1.4: the optimizer's own name (an external producer's class, e.g. "AdamW").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(with = "float_encoding::scalar")]
    pub lr: f32,
    /// SGD momentum (0 = none); unused by Adam.
    #[serde(with = "float_encoding::scalar")]
    pub momentum: f32,
    #[serde(with = "float_encoding::scalar")]
    pub weight_decay: f32,
    pub weight_decay_mode: WeightDecayMode,
}

impl OptimizerConfig {
    /// What to call it on screen: the producer's name for it, else its kind's.
    pub fn display_name(&self) -> &str {
        match (self.kind, &self.name) {
            (_, Some(name)) => name,
            (OptimizerKind::Sgd, None) => "SGD",
            (OptimizerKind::Adam, None) => "Adam",
            (OptimizerKind::Other, None) => "optimizer",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
/// Format 1.4: every field but the optimizer may be left out by an external producer; 0, "" and
/// NaN then mean "not known".
pub struct RunConfig {
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub batch_size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Initial BN momentum of every layer (NaN: per layer, or PyTorch's cumulative `None`).
    #[serde(default = "float_encoding::nan", with = "float_encoding::scalar")]
    pub bn_momentum: f32,
    /// Held-out evaluation every this many steps.
    #[serde(default)]
    pub eval_every: u64,
    /// Held-out images used by each evaluation.
    #[serde(default)]
    pub eval_samples: usize,
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// A learnable bias before each BN (redundant in train mode: BN's mean subtraction cancels it).
    #[serde(default)]
    pub conv_bias: bool,
    /// How training batches are drawn, e.g. "shuffled".
    #[serde(default)]
    pub data_order: String,
    /// Per-layer statistics in every snapshot (false: loss and accuracy only, as in the benchmark).
    #[serde(default = "yes")]
    pub layer_metrics: bool,
    /// Format 1.3: PreciseBN, a three-way evaluation and the probe every this many steps (0: on
    /// demand only), over `precise_samples` shuffled training images. 0 in older files.
    #[serde(default)]
    pub lab_every: u64,
    #[serde(default)]
    pub precise_samples: usize,
}

fn yes() -> bool {
    true
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

/// The BatchNorm's input shape (format 1.4; before it every layer was a BatchNorm2d).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BnKind {
    /// (N, C) or (N, C, L): "features" rather than channels.
    Bn1d,
    #[default]
    Bn2d,
    Bn3d,
}

/// One BN layer and the conv (or linear) layer feeding it: the built-in engine's conv -> BN -> ReLU
/// block. Format 1.4: an external producer may leave out the geometry (0 and false: not known).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LayerInfo {
    pub name: String,
    #[serde(default)]
    pub in_channels: usize,
    /// Channels of the conv output = BN channels (BN1d: features).
    pub channels: usize,
    #[serde(default)]
    pub kind: BnKind,
    /// SyncBatchNorm: statistics over every rank's batch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sync: bool,
    /// The module whose output feeds the BN, whose weight metrics the snapshots carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feeds_from: Option<String>,
    #[serde(default)]
    pub kernel: usize,
    #[serde(default)]
    pub stride: usize,
    #[serde(default)]
    pub padding: usize,
    #[serde(default)]
    pub conv_bias: bool,
    #[serde(default)]
    pub in_height: usize,
    #[serde(default)]
    pub in_width: usize,
    #[serde(default)]
    pub out_height: usize,
    #[serde(default)]
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
