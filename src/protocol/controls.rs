//! Controls: what a user (or a script) asks the training run to change, applied between steps.
use serde::{Deserialize, Serialize};

use super::float_encoding;

/// Which statistics a BatchNorm layer normalises with while training.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum BnMode {
    /// Batch statistics; running statistics are updated with the momentum (the usual training mode).
    Train,
    /// Running statistics, not updated, while gradients still flow (PyTorch's `.eval()` during
    /// training): the phantom-gradient case.
    Eval,
}

/// The order training images arrive in (BN-METRICS §2-3: what correlated or non-stationary
/// batches do to the statistics). Held-out evaluation is always shuffled and undrifted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DataOrder {
    /// A fresh permutation every epoch: i.i.d. batches.
    Shuffled,
    /// Each epoch sorted by class: every batch holds one or two classes (strongly correlated).
    ClassSorted,
    /// Clips of consecutive frames, each a small shift of the frame before (autocorrelated).
    Clips,
    /// Shuffled, with input contrast and brightness ramping slowly (non-stationary).
    Drifting,
}

impl DataOrder {
    pub const ALL: [DataOrder; 4] = [
        DataOrder::Shuffled,
        DataOrder::ClassSorted,
        DataOrder::Clips,
        DataOrder::Drifting,
    ];

    /// The name used on the command line, in headers and on screen.
    pub fn name(self) -> &'static str {
        match self {
            DataOrder::Shuffled => "shuffled",
            DataOrder::ClassSorted => "class_sorted",
            DataOrder::Clips => "clips",
            DataOrder::Drifting => "drifting",
        }
    }

    /// The next order in `ALL`, wrapping (the dashboard's `o` key).
    pub fn next(self) -> DataOrder {
        let i = Self::ALL.iter().position(|&o| o == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn from_name(name: &str) -> Option<DataOrder> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// A request to the training run. `layer: None` means every BN layer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "control", rename_all = "snake_case")]
pub enum Control {
    SetMode {
        layer: Option<usize>,
        mode: BnMode,
    },
    /// BN momentum in [0, 1], PyTorch convention: running <- (1-m)·running + m·batch.
    SetMomentum {
        layer: Option<usize>,
        #[serde(with = "float_encoding::scalar")]
        momentum: f32,
    },
    /// Format 1.4: PyTorch's `momentum=None`, the cumulative average of every batch so far.
    SetMomentumCumulative {
        layer: Option<usize>,
    },
    SetLr {
        #[serde(with = "float_encoding::scalar")]
        lr: f32,
    },
    /// Format 1.2.
    SetDataOrder {
        order: DataOrder,
    },
    /// Format 1.2: fold each conv + BN and check the folded network (answered by a `folding`
    /// record).
    FoldCheck,
    /// Format 1.3: PreciseBN population statistics now, and a three-way held-out evaluation
    /// (answered by a `population` and an `evaluation` record).
    PreciseBn,
    /// Format 1.3: recompute the PreciseBN statistics and write them into the running statistics
    /// (the variance Bessel-corrected, as running variances are stored).
    ApplyPreciseBn {
        layer: Option<usize>,
    },
    /// Format 1.3: the phantom-gradient probe now (answered by a `probe` record).
    PhantomProbe,
    Pause,
    Resume,
    /// One training step while paused.
    Step,
    /// Running mean <- 0 and running variance <- 1, as at initialisation.
    ResetRunningStats {
        layer: Option<usize>,
    },
    Quit,
    /// Format 1.5: keep a checkpoint of the whole training state (the built-in engine keeps it in
    /// memory, for the session; a newer one replaces it).
    SaveCheckpoint,
    /// Format 1.5: go back to the latest checkpoint. Echoed with the checkpoint's step and, in
    /// `from`, the step the run had reached: the records after the echo continue from the
    /// checkpoint's step (a marked discontinuity, sessions/FORMAT.md "Checkpoints").
    RestoreCheckpoint {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
    /// Format 1.5: start the run over from step 0 with its configuration (the same seed, so the
    /// same initial weights and batches). Echoed at step 0 with `from`, as a restore.
    Restart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
}

impl Control {
    /// The control's `"control"` tag on the wire (what a producer's header lists; a test holds it
    /// to serde's).
    pub fn name(&self) -> &'static str {
        match self {
            Control::SetMode { .. } => "set_mode",
            Control::SetMomentum { .. } => "set_momentum",
            Control::SetMomentumCumulative { .. } => "set_momentum_cumulative",
            Control::SetLr { .. } => "set_lr",
            Control::SetDataOrder { .. } => "set_data_order",
            Control::FoldCheck => "fold_check",
            Control::PreciseBn => "precise_bn",
            Control::ApplyPreciseBn { .. } => "apply_precise_bn",
            Control::PhantomProbe => "phantom_probe",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Step => "step",
            Control::ResetRunningStats { .. } => "reset_running_stats",
            Control::Quit => "quit",
            Control::SaveCheckpoint => "save_checkpoint",
            Control::RestoreCheckpoint { .. } => "restore_checkpoint",
            Control::Restart { .. } => "restart",
        }
    }

    /// Whether an accepted echo of this control sends the run back to the echo's step (a restore
    /// or a restart): the records after it continue from there.
    pub fn goes_back(&self) -> bool {
        matches!(
            self,
            Control::RestoreCheckpoint { .. } | Control::Restart { .. }
        )
    }
}

/// A control as the engine handled it: applied after training step `step` had completed (0: before
/// the first step), so it affects step `step + 1` onwards; or rejected with the reason.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ControlEvent {
    pub step: u64,
    pub control: Control,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}
