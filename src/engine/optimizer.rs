//! The optimizers bntop offers, behind one type, with the learning rate adjustable live.
//!
//! dfdx's `Sgd` and `Adam` walk a model through `TensorCollection`, which only describes
//! compile-time shapes; the network's widths are a runtime value, so this walks
//! [`Net::visit_params`] instead and updates each tensor with dfdx's own update kernels
//! (`SgdConfig::try_update`, `AdamConfig::try_update`), keeping the optimizer state in dfdx
//! `Gradients` exactly as dfdx's optimizers do. The one exception: on a step whose filters are
//! measured, SGD updates them in the pass that reads them ([`measured_sgd_step`]), which does
//! dfdx's arithmetic operation for operation (the tests compare the bits).
use std::sync::Arc;

use dfdx::optim::{AdamConfig, Momentum, SgdConfig, WeightDecay};
use dfdx::prelude::*;

use super::host::BufferPool;
use super::model::{ConvWeight, Net, ParamVisitor};
use super::weight_step::{measured_sgd_step, RowStep, WeightsBefore};
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
    ///
    /// With `measure`, each block's filters are measured across the update, and their rows'
    /// steps come back, one list per block (otherwise none): SGD reads them in the pass that
    /// updates the filters ([`measured_sgd_step`]), Adam in one pass before its update and one
    /// after ([`WeightsBefore`]).
    pub fn update(
        &mut self,
        net: &mut Net,
        grads: &mut Gradients<f32, Cpu>,
        measure: Option<MeasureFilters>,
    ) -> Result<Vec<Vec<RowStep>>, String> {
        let mut measured = measure.map(|m| MeasuredFilters {
            pool: m.pool.clone(),
            before: m.before.into_iter(),
            blocks: Vec::with_capacity(net.blocks.len()),
        });
        let result = match self {
            NetOptimizer::Sgd { cfg, velocity } => net.visit_params(&mut SgdStep {
                cfg,
                velocity,
                grads,
                measured: measured.as_mut(),
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
                    measured: measured.as_mut(),
                })
            }
        };
        result.map_err(|e| format!("optimizer update failed: {e}"))?;
        Ok(measured.map(|m| m.blocks).unwrap_or_default())
    }
}

/// What measuring the filters across an update takes.
pub struct MeasureFilters<'a> {
    /// Where the measurement's buffers come from.
    pub pool: &'a BufferPool,
    /// Each block's filters as they are before the update, in block order, if the caller has
    /// them (the step's forward copied them: `BlockObservation::filters`); SGD then reads them
    /// rather than copying the weights once more. A block without one is copied.
    pub before: Vec<Arc<Vec<f32>>>,
}

/// The filters' steps measured so far in an update, block by block.
struct MeasuredFilters {
    pool: BufferPool,
    before: std::vec::IntoIter<Arc<Vec<f32>>>,
    blocks: Vec<Vec<RowStep>>,
}

struct SgdStep<'a> {
    cfg: &'a SgdConfig,
    velocity: &'a mut Gradients<f32, Cpu>,
    grads: &'a mut Gradients<f32, Cpu>,
    measured: Option<&'a mut MeasuredFilters>,
}

impl ParamVisitor for SgdStep<'_> {
    fn visit<S: Shape>(&mut self, param: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
        let grad = self.grads.get_or_alloc_mut(param)?;
        let velocity = self.velocity.get_or_alloc_mut(param)?;
        self.cfg.try_update(param, velocity, grad)
    }

    fn visit_filters(&mut self, weight: &mut ConvWeight, rows: usize) -> Result<(), CpuError> {
        let Some(measured) = self.measured.as_deref_mut() else {
            return self.visit(weight);
        };
        let grad = self.grads.get_or_alloc_mut(weight)?;
        let velocity = self.velocity.get_or_alloc_mut(weight)?;
        let before = measured.before.next();
        let steps = measured_sgd_step(
            self.cfg,
            weight,
            before.as_deref().map(Vec::as_slice),
            grad,
            velocity,
            rows,
            &measured.pool,
        );
        measured.blocks.push(steps);
        Ok(())
    }
}

struct AdamStep<'a> {
    cfg: &'a AdamConfig,
    t: i32,
    moment1: &'a mut Gradients<f32, Cpu>,
    moment2: &'a mut Gradients<f32, Cpu>,
    grads: &'a mut Gradients<f32, Cpu>,
    measured: Option<&'a mut MeasuredFilters>,
}

impl ParamVisitor for AdamStep<'_> {
    fn visit<S: Shape>(&mut self, param: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
        let grad = self.grads.get_or_alloc_mut(param)?;
        let moment1 = self.moment1.get_or_alloc_mut(param)?;
        let moment2 = self.moment2.get_or_alloc_mut(param)?;
        self.cfg.try_update(self.t, param, moment1, moment2, grad)
    }

    fn visit_filters(&mut self, weight: &mut ConvWeight, rows: usize) -> Result<(), CpuError> {
        // Out of `self` while `visit` updates the filters, then back.
        let Some(measured) = self.measured.take() else {
            return self.visit(weight);
        };
        // Adam's two passes copy the filters themselves.
        measured.before.next();
        let grad = self.grads.get_or_alloc_mut(weight)?;
        let before = WeightsBefore::measure(weight, grad, rows, &measured.pool);
        self.visit(weight)?;
        measured.blocks.push(before.after(weight, &measured.pool));
        self.measured = Some(measured);
        Ok(())
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
                    measured: None,
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
                    measured: None,
                }
                .visit(&mut ours)
                .expect("adam");
            }
            assert_eq!(theirs.as_vec(), ours.as_vec(), "adam {weight_decay:?}");
        }
    }

    /// Fills every parameter's gradient with noise, one filter row left at 0 (with weight decay
    /// alone, SGD's step is radial: the angle is read from the rows, not the sums).
    fn noisy_gradients(net: &mut Net, dev: &Cpu) -> Gradients<f32, Cpu> {
        struct Fill<'a>(&'a mut Gradients<f32, Cpu>, &'a Cpu);
        impl ParamVisitor for Fill<'_> {
            fn visit<S: Shape>(&mut self, p: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
                let noise = to_host(&self.1.sample_normal_like(p.shape()));
                self.0.get_or_alloc_mut(p)?.copy_from_slice(&noise);
                Ok(())
            }
        }
        let mut grads = Gradients::leaky();
        net.zero_grads(&mut grads).expect("gradients");
        net.visit_params(&mut Fill(&mut grads, dev)).expect("fill");
        let first = grads
            .get_or_alloc_mut(&net.blocks[0].weight)
            .expect("first filters");
        let fan_in = first.len() / net.blocks[0].channels();
        first[..fan_in].fill(0.0);
        grads
    }

    /// With its filters measured, an update leaves every parameter and optimizer buffer as it
    /// does unmeasured, bit for bit, and each filter row's readings are those of the rows before
    /// and after it with their gradient ([`row_step_sums`]), bit for bit: SGD's one pass for
    /// every momentum and weight decay, and Adam's two. Rows of 27, 36 and 144 weights: a
    /// partial chunk, a tail, and more than one f32 run.
    #[test]
    fn measured_updates_change_nothing_and_read_the_rows() {
        use crate::engine::model::Widths;
        use crate::engine::weight_step::every_sgd_config;
        use crate::metrics::weights::row_step_sums;

        let configs = every_sgd_config();
        let sgd = configs.iter().map(|&cfg| NetOptimizer::Sgd {
            cfg,
            velocity: Gradients::leaky(),
        });
        // Adam with each decay: those of the configs without momentum.
        let decays = configs.iter().filter(|c| c.momentum.is_none());
        let adam = decays.map(|c| NetOptimizer::Adam {
            cfg: AdamConfig {
                lr: 0.01,
                weight_decay: c.weight_decay,
                ..Default::default()
            },
            t: 0,
            moment1: Gradients::leaky(),
            moment2: Gradients::leaky(),
        });
        let widths = Widths::new(vec![4, 16, 8]).expect("widths");
        let mut radial_rows = 0;
        for opt in sgd.chain(adam) {
            let name = match &opt {
                NetOptimizer::Sgd { cfg, .. } => {
                    format!("SGD {:?} {:?}", cfg.momentum, cfg.weight_decay)
                }
                NetOptimizer::Adam { cfg, .. } => format!("Adam {:?}", cfg.weight_decay),
            };
            let dev = Cpu::seed_from_u64(9);
            let mut plain = Net::new(&dev, 3, &widths);
            let mut measured = plain.clone();
            let (mut plain_opt, mut measured_opt) = (opt.clone(), opt.clone());
            let pool = BufferPool::default();
            for step in 0..3 {
                let grads = noisy_gradients(&mut plain, &dev);
                let before: Vec<_> = plain.blocks.iter().map(|b| to_host(&b.weight)).collect();
                let none =
                    (plain_opt.update(&mut plain, &mut grads.clone(), None)).expect("plain update");
                assert!(none.is_empty());
                // Every other step the filters come with the update, as the trainer's forward
                // hands them over; in between the update copies them.
                let copies = (step % 2 == 0).then(|| before.iter().cloned().map(Arc::new));
                let measure = MeasureFilters {
                    pool: &pool,
                    before: copies.into_iter().flatten().collect(),
                };
                let rows = (measured_opt.update(&mut measured, &mut grads.clone(), Some(measure)))
                    .expect("measured update");
                let (want, got) = (
                    params_and_state(&mut plain, &mut plain_opt),
                    params_and_state(&mut measured, &mut measured_opt),
                );
                assert_eq!(want.len(), got.len());
                let differs = want.iter().zip(&got).position(|(w, g)| w != g);
                assert_eq!(differs, None, "{name}, step {step}: tensor differs");
                assert_eq!(rows.len(), plain.blocks.len());
                for ((block, before), rows) in plain.blocks.iter().zip(&before).zip(&rows) {
                    let after = to_host(&block.weight);
                    let grad = to_host(&grads.get(&block.weight));
                    let want = row_step_sums(before, &after, &grad, block.channels());
                    assert_eq!(rows.len(), block.channels());
                    for (got, (sums, angle)) in rows.iter().zip(want) {
                        assert_eq!(got.sums, sums, "{name}, step {step}");
                        assert_eq!(got.angle().to_bits(), angle.to_bits(), "{name}");
                    }
                }
                radial_rows += rows
                    .iter()
                    .flatten()
                    .filter(|r| r.sums.angle().is_none())
                    .count();
            }
        }
        assert!(radial_rows > 0, "no row stepped radially");
    }

    /// Every parameter and its optimizer buffers, as bits, in [`Net::visit_params`] order.
    fn params_and_state(net: &mut Net, opt: &mut NetOptimizer) -> Vec<Vec<u32>> {
        struct Collect<'a>(&'a mut NetOptimizer, Vec<Vec<u32>>);
        impl ParamVisitor for Collect<'_> {
            fn visit<S: Shape>(&mut self, p: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect();
                self.1.push(bits(&to_host(p)));
                let buffers = match &mut self.0 {
                    NetOptimizer::Sgd { velocity, .. } => vec![velocity],
                    NetOptimizer::Adam {
                        moment1, moment2, ..
                    } => vec![moment1, moment2],
                };
                for buffer in buffers {
                    self.1.push(bits(buffer.get_or_alloc_mut(p)?));
                }
                Ok(())
            }
        }
        let mut collect = Collect(opt, Vec::new());
        net.visit_params(&mut collect).expect("collect");
        collect.1
    }
}
