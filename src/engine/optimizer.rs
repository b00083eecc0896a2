//! The optimizers bntop offers, behind one type, with the learning rate adjustable live.
//!
//! dfdx's `Sgd` and `Adam` walk a model through `TensorCollection`, which only describes
//! compile-time shapes; the network's widths are a runtime value, so this walks
//! [`Net::visit_params`] instead and updates each tensor with dfdx's own update kernels
//! (`SgdConfig::try_update`, `AdamConfig::try_update`), keeping the optimizer state in dfdx
//! `Gradients` exactly as dfdx's optimizers do.
use dfdx::optim::{AdamConfig, Momentum, SgdConfig, WeightDecay};
use dfdx::prelude::*;

use super::model::{Net, ParamVisitor};
use crate::protocol::{OptimizerConfig, OptimizerKind, WeightDecayMode};

/// Optimizer state lives in dfdx `Gradients`, which are `Send`, but build this on the training
/// thread anyway, next to the network it updates.
#[derive(Clone)]
pub enum NetOptimizer {
    Sgd {
        cfg: SgdConfig,
        velocity: Gradients<f32, Cpu>,
    },
    Adam {
        cfg: AdamConfig,
        /// Updates so far (Adam's bias correction).
        t: i32,
        moment1: Gradients<f32, Cpu>,
        moment2: Gradients<f32, Cpu>,
    },
}

impl NetOptimizer {
    pub fn new(cfg: &OptimizerConfig) -> Self {
        let weight_decay = (cfg.weight_decay > 0.0).then_some(match cfg.weight_decay_mode {
            WeightDecayMode::Coupled => WeightDecay::L2(cfg.weight_decay as f64),
            WeightDecayMode::Decoupled => WeightDecay::Decoupled(cfg.weight_decay as f64),
        });
        match cfg.kind {
            // `TrainConfig::validate` refuses `Other` (an external producer's optimizer).
            OptimizerKind::Sgd | OptimizerKind::Other => NetOptimizer::Sgd {
                cfg: SgdConfig {
                    lr: cfg.lr as f64,
                    momentum: (cfg.momentum > 0.0)
                        .then_some(Momentum::Classic(cfg.momentum as f64)),
                    weight_decay,
                },
                velocity: Gradients::leaky(),
            },
            OptimizerKind::Adam => NetOptimizer::Adam {
                cfg: AdamConfig {
                    lr: cfg.lr as f64,
                    weight_decay,
                    ..Default::default()
                },
                t: 0,
                moment1: Gradients::leaky(),
                moment2: Gradients::leaky(),
            },
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        match self {
            NetOptimizer::Sgd { cfg, .. } => cfg.lr = lr,
            NetOptimizer::Adam { cfg, .. } => cfg.lr = lr,
        }
    }

    /// One update of every trainable parameter from `grads`. Every parameter has a gradient there
    /// ([`Net::zero_grads`] allocates them before the step): one outside the graph (the pre-BN
    /// biases without `--conv-bias`) has 0 and stays 0.
    pub fn update(&mut self, net: &mut Net, grads: &mut Gradients<f32, Cpu>) -> Result<(), String> {
        let result = match self {
            NetOptimizer::Sgd { cfg, velocity } => net.visit_params(&mut SgdStep {
                cfg,
                velocity,
                grads,
            }),
            NetOptimizer::Adam {
                cfg,
                t,
                moment1,
                moment2,
            } => {
                *t = t.checked_add(1).ok_or("Adam's step counter overflowed")?;
                net.visit_params(&mut AdamStep {
                    cfg,
                    t: *t,
                    moment1,
                    moment2,
                    grads,
                })
            }
        };
        result.map_err(|e| format!("optimizer update failed: {e}"))
    }
}

struct SgdStep<'a> {
    cfg: &'a SgdConfig,
    velocity: &'a mut Gradients<f32, Cpu>,
    grads: &'a mut Gradients<f32, Cpu>,
}

impl ParamVisitor for SgdStep<'_> {
    fn visit<S: Shape>(&mut self, param: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
        let grad = self.grads.get_or_alloc_mut(param)?;
        let velocity = self.velocity.get_or_alloc_mut(param)?;
        self.cfg.try_update(param, velocity, grad)
    }
}

struct AdamStep<'a> {
    cfg: &'a AdamConfig,
    t: i32,
    moment1: &'a mut Gradients<f32, Cpu>,
    moment2: &'a mut Gradients<f32, Cpu>,
    grads: &'a mut Gradients<f32, Cpu>,
}

impl ParamVisitor for AdamStep<'_> {
    fn visit<S: Shape>(&mut self, param: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
        let grad = self.grads.get_or_alloc_mut(param)?;
        let moment1 = self.moment1.get_or_alloc_mut(param)?;
        let moment2 = self.moment2.get_or_alloc_mut(param)?;
        self.cfg.try_update(self.t, param, moment1, moment2, grad)
    }
}

#[cfg(test)]
mod tests {
    use dfdx::optim::{Adam, Optimizer, Sgd};

    use super::*;
    use crate::engine::host::{from_host, to_host};

    /// The same gradient for a const-shaped and a runtime-shaped copy of one parameter: the loss
    /// Σ (p·w)², so each step's gradient depends on where the parameter has got to.
    fn gradients<S: Shape>(
        p: &Tensor<S, f32, Cpu>,
        w: &Tensor<S, f32, Cpu>,
    ) -> Gradients<f32, Cpu> {
        (p.leaky_trace() * w.clone()).square().sum().backward()
    }

    /// Our walk with dfdx's update kernels against dfdx's own `Sgd` and `Adam` on the same
    /// parameter: identical after several steps, with momentum and both weight decays.
    #[test]
    fn updates_equal_dfdx_sgd_and_adam() {
        let decays = [
            None,
            Some(WeightDecay::L2(0.01)),
            Some(WeightDecay::Decoupled(0.01)),
        ];
        for weight_decay in decays {
            let dev = Cpu::seed_from_u64(4);
            let w: Tensor<Rank1<7>, f32, Cpu> = dev.sample_normal();
            let start: Tensor<Rank1<7>, f32, Cpu> = dev.sample_normal();
            let runtime = |t: &Tensor<Rank1<7>, f32, Cpu>| from_host(&dev, &to_host(t), (7,));
            let w_ours = runtime(&w);

            let sgd = SgdConfig {
                lr: 0.1,
                momentum: Some(Momentum::Classic(0.9)),
                weight_decay,
            };
            let (mut theirs, mut ours) = (start.clone(), runtime(&start));
            let mut reference = Sgd::new(&theirs, sgd);
            let mut velocity = Gradients::leaky();
            for _ in 0..4 {
                let grads = gradients(&theirs, &w);
                reference.update(&mut theirs, &grads).expect("dfdx sgd");
                let mut grads = gradients(&ours, &w_ours);
                SgdStep {
                    cfg: &sgd,
                    velocity: &mut velocity,
                    grads: &mut grads,
                }
                .visit(&mut ours)
                .expect("sgd");
            }
            assert_eq!(theirs.as_vec(), ours.as_vec(), "sgd {weight_decay:?}");
            assert_ne!(theirs.as_vec(), start.as_vec(), "sgd moved the parameter");

            let adam = AdamConfig {
                lr: 0.01,
                weight_decay,
                ..Default::default()
            };
            let (mut theirs, mut ours) = (start.clone(), runtime(&start));
            let mut reference = Adam::new(&theirs, adam);
            let (mut moment1, mut moment2) = (Gradients::leaky(), Gradients::leaky());
            for t in 1..=4 {
                let grads = gradients(&theirs, &w);
                reference.update(&mut theirs, &grads).expect("dfdx adam");
                let mut grads = gradients(&ours, &w_ours);
                AdamStep {
                    cfg: &adam,
                    t,
                    moment1: &mut moment1,
                    moment2: &mut moment2,
                    grads: &mut grads,
                }
                .visit(&mut ours)
                .expect("adam");
            }
            assert_eq!(theirs.as_vec(), ours.as_vec(), "adam {weight_decay:?}");
        }
    }
}
