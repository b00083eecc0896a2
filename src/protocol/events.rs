//! The records of a stream: header first, then snapshots, controls, evaluations and markers, then end.
use serde::{Deserialize, Serialize};

use super::controls::{ControlEvent, DataOrder};
use super::float_encoding;
use super::header::RunHeader;
use super::snapshot::Snapshot;

/// One record. As JSON each is one object whose `"kind"` names the variant. Read input lines with
/// [`parse_record`](super::parse_record), not serde's derived parse, which buffers the whole
/// record before it looks at the kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Header(Box<RunHeader>),
    Snapshot(Snapshot),
    Control(ControlEvent),
    Evaluation(Evaluation),
    Marker(Marker),
    /// Format 1.2: the result of folding conv + BN (the `fold_check` control).
    Folding(FoldingReport),
    /// Format 1.3: PreciseBN population statistics against the current order's batches.
    Population(PopulationReport),
    /// Format 1.3: the phantom-gradient probe (train / stop-gradient / eval bias gradients).
    Probe(ProbeReport),
    End(RunEnd),
    /// A record kind this version does not know (written by a newer bntop): skipped by readers.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// The training step the record belongs to (None for the header and unknown records).
    pub fn step(&self) -> Option<u64> {
        match self {
            Event::Snapshot(s) => Some(s.step),
            Event::Control(c) => Some(c.step),
            Event::Evaluation(e) => Some(e.step),
            Event::Marker(m) => Some(m.step),
            Event::Folding(f) => Some(f.step),
            Event::Population(p) => Some(p.step),
            Event::Probe(p) => Some(p.step),
            Event::End(e) => Some(e.step),
            Event::Header(_) | Event::Unknown => None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct EvalScore {
    #[serde(with = "float_encoding::scalar")]
    pub loss: f32,
    #[serde(with = "float_encoding::scalar")]
    pub accuracy: f32,
}

/// Held-out loss and accuracy after step `step`, with BN normalising by each kind of statistics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub step: u64,
    /// Held-out images evaluated.
    pub samples: usize,
    /// Batch statistics of each held-out batch (batches of the training batch size; BN "train mode").
    pub batch_stats: EvalScore,
    /// The running (EMA) statistics: what deployment uses (BN "eval mode").
    pub running_stats: EvalScore,
    /// Format 1.3: PreciseBN statistics recomputed over shuffled training samples just before
    /// (see the `population` record of the same step); absent when none were computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precise_stats: Option<EvalScore>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// A new pass over the training set begins after this step.
    Epoch,
    /// The loss became non-finite.
    Divergence,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Marker {
    pub step: u64,
    /// Written as `"marker"`: `"kind"` is the record's own tag.
    #[serde(rename = "marker")]
    pub kind: MarkerKind,
    pub label: String,
}

/// Each conv + BN folded into one conv in eval form, checked on the held-out set: the largest
/// logit difference from the eval-mode network, and both networks' time per image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FoldingReport {
    pub step: u64,
    pub samples: usize,
    #[serde(with = "float_encoding::scalar")]
    pub max_abs_diff: f32,
    #[serde(with = "float_encoding::scalar")]
    pub unfolded_us_per_image: f64,
    #[serde(with = "float_encoding::scalar")]
    pub folded_us_per_image: f64,
}

/// PreciseBN (BN-METRICS §3): population statistics of every BN input over `samples` shuffled
/// training images (batch statistics upstream, momentum-free), compared with `order_batches`
/// upcoming training batches in the current data order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PopulationReport {
    pub step: u64,
    pub samples: usize,
    pub order: DataOrder,
    pub order_batches: usize,
    /// One per BN layer, in header order.
    #[serde(deserialize_with = "super::limits::bounded_layers")]
    pub layers: Vec<PopulationLayer>,
}

/// One layer's population statistics; layer values are means over channels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PopulationLayer {
    /// Per channel: μ_pop and σ²_pop = mean_B[σ²_B + μ_B²] - (mean_B μ_B)² (pooled, biased).
    #[serde(with = "float_encoding::vec")]
    pub mean: Vec<f32>,
    #[serde(with = "float_encoding::vec")]
    pub var: Vec<f32>,
    /// Measured mean_t σ²_B / σ²_pop over the current order's batches.
    #[serde(with = "float_encoding::scalar")]
    pub var_ratio: f64,
    /// Effective batch size σ²_pop / Var_t(μ_B) (harmonic mean over channels).
    #[serde(with = "float_encoding::scalar")]
    pub n_eff: f64,
    /// Predicted 1 - 1/n_eff.
    #[serde(with = "float_encoding::scalar")]
    pub predicted_ratio: f64,
    /// The running (EMA) variance against the population's: v_R / σ²_pop.
    #[serde(with = "float_encoding::scalar")]
    pub running_var_ratio: f64,
}

/// The phantom-gradient probe (BN-METRICS §6-7) on one training batch: the gradient of a bias
/// added before each BN, with every layer normalising three ways. Nothing in the model changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProbeReport {
    pub step: u64,
    pub batch: usize,
    /// One per BN layer, in header order.
    #[serde(deserialize_with = "super::limits::bounded_layers")]
    pub layers: Vec<ProbeLayer>,
}

/// One layer's three bars: RMS over channels of ∂L/∂b, measured and predicted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct ProbeLayer {
    /// Batch statistics with their gradient: BN subtracts the batch mean, so ∂L/∂b = 0.
    #[serde(with = "float_encoding::scalar")]
    pub train: f64,
    /// max_c |Σ_i ∂L/∂h_ic| / Σ_i |∂L/∂h_ic| in train mode (0 in exact arithmetic; 1e-7 to 2e-6 from
    /// f32 rounding of sums of 256-4096 terms).
    #[serde(with = "float_encoding::scalar")]
    pub train_cancellation: f64,
    /// Batch statistics treated as constants: ∂L/∂b = (γ/σ̃_B)∇β.
    #[serde(with = "float_encoding::scalar")]
    pub stop_gradient: f64,
    #[serde(with = "float_encoding::scalar")]
    pub stop_gradient_predicted: f64,
    /// Running statistics (eval mode): ∂L/∂b = (γ/σ_R)∇β.
    #[serde(with = "float_encoding::scalar")]
    pub eval: f64,
    #[serde(with = "float_encoding::scalar")]
    pub eval_predicted: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The requested number of steps ran.
    Completed,
    /// A quit control, or the controller went away.
    Quit,
    /// The loss became non-finite; training stopped.
    Diverged,
    /// The engine failed; see `message`.
    Error,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunEnd {
    /// Steps completed.
    pub step: u64,
    pub reason: EndReason,
    #[serde(with = "float_encoding::scalar")]
    pub elapsed_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
