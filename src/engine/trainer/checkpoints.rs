//! Checkpoint controls between steps: save the training state, restore the latest save, restart
//! from step 0 (the state `Trainer::new` built, kept as a checkpoint of step 0).
use super::Trainer;
use crate::engine::checkpoint::Checkpoint;

/// Why a restore is refused before any save.
pub(super) const NO_CHECKPOINT: &str = "no checkpoint saved yet (K saves one)";

impl Trainer {
    /// The training state now.
    pub(super) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            step: self.step,
            net: self.net.clone(),
            opt: self.opt.clone(),
            batches: self.batches.clone(),
            modes: self.modes.clone(),
            lr: self.lr,
        }
    }

    /// Continue from `checkpoint` (a copy of a kept one: it can be restored again and again).
    pub(super) fn restore(&mut self, checkpoint: Checkpoint) {
        let Checkpoint {
            step,
            net,
            opt,
            batches,
            modes,
            lr,
        } = checkpoint;
        self.step = step;
        self.net = net;
        self.opt = opt;
        self.batches = batches;
        self.modes = modes;
        self.lr = lr;
        self.last_evaluated = None;
    }

    /// Back to the latest saved checkpoint, or why not.
    pub(super) fn restore_latest(&mut self) -> Result<(), String> {
        let checkpoint = self.saved.clone().ok_or(NO_CHECKPOINT)?;
        self.restore(checkpoint);
        Ok(())
    }

    /// Back to step 0: the initial weights, a fresh optimizer, the first batch of the first
    /// epoch, the configured modes, momentum and learning rate. The saved checkpoint stays.
    pub(super) fn restart(&mut self) {
        self.restore(self.initial.clone());
    }
}
