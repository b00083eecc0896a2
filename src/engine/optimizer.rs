//! The optimizers bntop offers, behind one type, with the learning rate adjustable live.
use dfdx::optim::{
    Adam, AdamConfig, Momentum, Optimizer, OptimizerUpdateError, Sgd, SgdConfig, WeightDecay,
};
use dfdx::prelude::*;

use super::model::{Net, BLOCKS};
use crate::protocol::{OptimizerConfig, OptimizerKind, WeightDecayMode};

/// dfdx optimizers are `!Send`: build this inside the training thread.
pub enum NetOptimizer<const IN: usize> {
    Sgd(Sgd<Net<IN, f32, Cpu>, f32, Cpu>),
    Adam(Adam<Net<IN, f32, Cpu>, f32, Cpu>),
}

impl<const IN: usize> NetOptimizer<IN> {
    pub fn new(net: &Net<IN, f32, Cpu>, cfg: &OptimizerConfig) -> Self {
        let weight_decay = (cfg.weight_decay > 0.0).then_some(match cfg.weight_decay_mode {
            WeightDecayMode::Coupled => WeightDecay::L2(cfg.weight_decay as f64),
            WeightDecayMode::Decoupled => WeightDecay::Decoupled(cfg.weight_decay as f64),
        });
        match cfg.kind {
            // `TrainConfig::validate` refuses `Other` (an external producer's optimizer).
            OptimizerKind::Sgd | OptimizerKind::Other => NetOptimizer::Sgd(Sgd::new(
                net,
                SgdConfig {
                    lr: cfg.lr as f64,
                    momentum: (cfg.momentum > 0.0)
                        .then_some(Momentum::Classic(cfg.momentum as f64)),
                    weight_decay,
                },
            )),
            OptimizerKind::Adam => NetOptimizer::Adam(Adam::new(
                net,
                AdamConfig {
                    lr: cfg.lr as f64,
                    weight_decay,
                    ..Default::default()
                },
            )),
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        match self {
            NetOptimizer::Sgd(o) => o.cfg.lr = lr,
            NetOptimizer::Adam(o) => o.cfg.lr = lr,
        }
    }

    /// One update. A parameter without a gradient is an error, except the three pre-BN biases,
    /// which are outside the graph when the run has no `--conv-bias` (dfdx exposes no tensor ids to
    /// compare, so the check is on their count).
    pub fn update(
        &mut self,
        net: &mut Net<IN, f32, Cpu>,
        grads: &Gradients<f32, Cpu>,
        conv_bias: bool,
    ) -> Result<(), String> {
        let allowed_unused = if conv_bias { 0 } else { BLOCKS.len() };
        let result = match self {
            NetOptimizer::Sgd(o) => o.update(net, grads),
            NetOptimizer::Adam(o) => o.update(net, grads),
        };
        match result {
            Ok(()) => Ok(()),
            Err(OptimizerUpdateError::UnusedParams(unused))
                if unused.ids.len() == allowed_unused =>
            {
                Ok(())
            }
            Err(e) => Err(format!("optimizer update failed: {e}")),
        }
    }
}
