//! The records of a stream: header first, then snapshots, controls, evaluations and markers, then end.
use serde::{Deserialize, Serialize};

use super::controls::ControlEvent;
use super::float_encoding;
use super::header::RunHeader;
use super::snapshot::Snapshot;

/// One record. As JSON each is one object whose `"kind"` names the variant.
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
    pub unfolded_us_per_image: f64,
    pub folded_us_per_image: f64,
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
    pub elapsed_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
