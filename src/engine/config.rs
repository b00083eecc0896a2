//! What a training run is asked to do, checked before any thread starts.
use super::architecture::Widths;
use crate::protocol::{DataOrder, OptimizerConfig, OptimizerKind, WeightDecayMode};

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub optimizer: OptimizerConfig,
    pub batch_size: usize,
    pub seed: u64,
    /// Initial BN momentum of every layer (PyTorch convention).
    pub bn_momentum: f32,
    pub eval_every: u64,
    pub eval_samples: usize,
    /// PreciseBN statistics, a three-way evaluation and the phantom-gradient probe every this
    /// many steps (0: only on demand).
    pub lab_every: u64,
    /// Shuffled training images behind each PreciseBN estimate (at least one batch is used).
    pub precise_samples: usize,
    pub max_steps: Option<u64>,
    /// Channels of each conv -> BN -> ReLU block; `None`: the default for the data's image size
    /// ([`Widths::default_for`]).
    pub widths: Option<Widths>,
    pub conv_bias: bool,
    /// The order training batches arrive in (changeable while running).
    pub data_order: DataOrder,
    /// Per-layer statistics in every snapshot; off only to measure their cost.
    pub layer_metrics: bool,
    /// `bntop bench` only: with layer metrics on, leave them out of alternate stretches of the
    /// run, so their cost is measured between stretches of one run rather than between runs.
    pub metrics_interleave: Option<Interleave>,
    pub start_paused: bool,
}

impl Default for TrainConfig {
    /// Settings that reach 97% held-out accuracy on the embedded digits well within 1000 steps.
    fn default() -> Self {
        TrainConfig {
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Sgd,
                name: None,
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 5e-4,
                weight_decay_mode: WeightDecayMode::Coupled,
            },
            batch_size: 64,
            seed: 1,
            bn_momentum: 0.1,
            eval_every: 50,
            eval_samples: 2000,
            // About 10% of the training speed (`bntop bench`): a refresh every second or so.
            lab_every: 200,
            precise_samples: 1024,
            max_steps: None,
            widths: None,
            conv_bias: false,
            data_order: DataOrder::Shuffled,
            layer_metrics: true,
            metrics_interleave: None,
            start_paused: false,
        }
    }
}

/// Layer metrics off for `off` steps, then on for `on` steps, and so on from step 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interleave {
    pub off: u64,
    pub on: u64,
}

impl Interleave {
    /// Whether `step` (counted from 1) falls in an "on" stretch.
    pub fn metrics_on(&self, step: u64) -> bool {
        step.saturating_sub(1) % (self.off + self.on).max(1) >= self.off
    }

    /// How many of steps 1..=`step` had layer metrics.
    pub fn on_steps_through(&self, step: u64) -> u64 {
        let period = (self.off + self.on).max(1);
        (step / period) * self.on + (step % period).saturating_sub(self.off)
    }
}

impl TrainConfig {
    /// The first problem found, as a one-line message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        let o = &self.optimizer;
        if o.kind == OptimizerKind::Other {
            return Err("the built-in engine trains with SGD or Adam".into());
        }
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(format!("--lr must be a positive number, got {}", o.lr));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(format!(
                "--momentum (optimizer) must be in [0, 1), got {}",
                o.momentum
            ));
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(format!(
                "--weight-decay must be >= 0, got {}",
                o.weight_decay
            ));
        }
        if self.batch_size < 2 {
            return Err(format!(
                "--batch must be at least 2 (BatchNorm needs two samples for a variance), got {}",
                self.batch_size
            ));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return Err(format!(
                "--bn-momentum must be in [0, 1], got {}",
                self.bn_momentum
            ));
        }
        if self.eval_every == 0 {
            return Err("--eval-every must be at least 1".into());
        }
        if self.precise_samples == 0 {
            return Err("--precise-samples must be at least 1".into());
        }
        if self.eval_samples == 0 {
            return Err("--eval-samples must be at least 1".into());
        }
        if self
            .metrics_interleave
            .is_some_and(|i| i.off == 0 || i.on == 0)
        {
            return Err("interleaved metrics need stretches of at least one step".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_each_bad_setting_is_named() {
        assert_eq!(TrainConfig::default().validate(), Ok(()));
        type Spoil = fn(&mut TrainConfig);
        let cases: [(Spoil, &str); 6] = [
            (|c| c.optimizer.lr = 0.0, "--lr"),
            (|c| c.optimizer.lr = f32::NAN, "--lr"),
            (|c| c.bn_momentum = 1.5, "--bn-momentum"),
            (|c| c.bn_momentum = -0.1, "--bn-momentum"),
            (|c| c.batch_size = 0, "--batch"),
            (|c| c.optimizer.weight_decay = -1.0, "--weight-decay"),
        ];
        for (spoil, flag) in cases {
            let mut c = TrainConfig::default();
            spoil(&mut c);
            let err = c.validate().expect_err(flag);
            assert!(err.starts_with(flag), "{err}");
        }
    }

    #[test]
    fn interleave_alternates_off_then_on_from_step_one() {
        let i = Interleave { off: 2, on: 3 };
        let on: Vec<bool> = (1..=11).map(|step| i.metrics_on(step)).collect();
        let want = [
            false, false, true, true, true, false, false, true, true, true, false,
        ];
        assert_eq!(on, want);
    }

    #[test]
    fn on_steps_are_counted_through_every_step() {
        for i in [
            Interleave { off: 2, on: 3 },
            Interleave { off: 40, on: 7 },
            Interleave { off: 1, on: 1 },
        ] {
            let mut counted = 0;
            for step in 1..=500 {
                counted += u64::from(i.metrics_on(step));
                assert_eq!(i.on_steps_through(step), counted, "{i:?} at step {step}");
            }
        }
    }
}
