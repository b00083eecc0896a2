//! Checkpoints in the engine: a restore brings back every bit of the saved state and training
//! after it repeats training after the save; a restart repeats a fresh run.
use crossbeam_channel::{Receiver, Sender};
use dfdx::prelude::*;

use super::Trainer;
use crate::engine::config::TrainConfig;
use crate::engine::data::embedded_digits;
use crate::engine::host::to_host;
use crate::engine::model::ParamVisitor;
use crate::engine::optimizer::NetOptimizer;
use crate::engine::outbox::Outbox;
use crate::engine::publisher::Publisher;
use crate::metrics::weights::row_step_sums;
use crate::protocol::{
    BnMode, Control, ControlEvent, DataOrder, Event, OptimizerKind, WeightDecayMode,
};

/// A trainer on the digits (small widths: quick), its events and its control input.
fn trainer(cfg: &TrainConfig) -> (Trainer, Receiver<Event>, Sender<Control>) {
    let mut data = embedded_digits().expect("the embedded digits");
    data.standardise();
    let (event_tx, events) = crossbeam_channel::unbounded();
    let (controls, control_rx) = crossbeam_channel::unbounded();
    let outbox = Publisher::spawn(Outbox::new(event_tx)).expect("publisher");
    (
        Trainer::new(cfg.clone(), data, outbox, control_rx),
        events,
        controls,
    )
}

fn config(optimizer: OptimizerKind) -> TrainConfig {
    let mut cfg = TrainConfig {
        batch_size: 16,
        seed: 7,
        eval_samples: 64,
        precise_samples: 32,
        lab_every: 0,
        widths: Some("4,8".parse().expect("widths")),
        ..TrainConfig::default()
    };
    cfg.optimizer.kind = optimizer;
    cfg.optimizer.weight_decay_mode = WeightDecayMode::Decoupled;
    cfg
}

/// The losses of `n` more steps and their weight readings (each conv row's sums across the
/// step and its angle), as bits: the readings compare the weights before each update with
/// those after it, so they repeat only if the run repeats the weights before every step too.
fn train(t: &mut Trainer, n: usize) -> Vec<Vec<u64>> {
    (0..n)
        .map(|_| {
            let record = t.train_step().expect("a step");
            let mut bits = vec![u64::from(record.snapshot.loss.to_bits())];
            for row in record.blocks.iter().flat_map(|b| &b.weight_rows) {
                let s = row.sums;
                let sums = [s.before_sq, s.after_sq, s.grad_sq, s.step_sq, s.before_grad];
                bits.extend(
                    sums.iter()
                        .chain([&s.before_step, &row.angle()])
                        .map(|x| x.to_bits()),
                );
            }
            bits
        })
        .collect()
}

/// Every parameter with its optimizer buffers, as bits.
struct Collect {
    opt: NetOptimizer,
    out: Vec<Vec<u32>>,
}

impl ParamVisitor for Collect {
    fn visit<S: Shape>(&mut self, p: &mut Tensor<S, f32, Cpu>) -> Result<(), CpuError> {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.out.push(bits(&to_host(p)));
        match &mut self.opt {
            NetOptimizer::Sgd { velocity, .. } => {
                self.out.push(bits(velocity.get_or_alloc_mut(p)?))
            }
            NetOptimizer::Adam {
                moment1,
                moment2,
                t,
                ..
            } => {
                self.out.push(bits(moment1.get_or_alloc_mut(p)?));
                self.out.push(bits(moment2.get_or_alloc_mut(p)?));
                self.out.push(vec![*t as u32]);
            }
        }
        Ok(())
    }
}

/// Everything a checkpoint must bring back, as bits: weights, γ, β, the optimizer's buffers,
/// running statistics, BN momentum, modes, lr, step, and the batches to come.
fn fingerprint(t: &mut Trainer) -> Vec<Vec<u32>> {
    let mut collect = Collect {
        opt: t.opt.clone(),
        out: Vec::new(),
    };
    t.net.visit_params(&mut collect).expect("visit");
    let mut out = collect.out;
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for block in &t.net.blocks {
        out.push(bits(to_host(&block.bn.running_mean)));
        out.push(bits(block.running_var()));
        out.push(vec![(block.momentum() as f32).to_bits()]);
    }
    out.push(
        t.modes
            .iter()
            .map(|&m| u32::from(m == BnMode::Eval))
            .collect(),
    );
    out.push(vec![
        t.lr.to_bits(),
        t.step as u32,
        t.batches.epoch() as u32,
    ]);
    let upcoming = t.batches.clone().next(&t.data.train);
    out.push(upcoming.labels.iter().map(|&l| u32::from(l)).collect());
    out
}

/// The first `n` control echoes (the publisher thread passes them on in order).
fn echoes(events: &Receiver<Event>, n: usize) -> Vec<ControlEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match events.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Event::Control(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => panic!("{} of {n} echoes: {e}", out.len()),
        }
    }
    out
}

/// Save, train on with controls that change every part of the state, restore: bit-identical
/// state, and the same losses as after the save. For SGD with momentum and for Adam.
#[test]
fn restore_brings_back_every_bit_and_training_repeats() {
    for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
        let (mut t, events, _controls) = trainer(&config(kind));
        train(&mut t, 30);
        t.handle(Control::SetDataOrder {
            order: DataOrder::Drifting,
        });
        train(&mut t, 7);
        t.handle(Control::SaveCheckpoint);
        let saved = fingerprint(&mut t);
        let after_save = train(&mut t, 12);
        for control in [
            Control::SetMode {
                layer: Some(1),
                mode: BnMode::Eval,
            },
            Control::SetMomentum {
                layer: None,
                momentum: 0.5,
            },
            Control::SetLr { lr: 0.3 },
            Control::SetDataOrder {
                order: DataOrder::ClassSorted,
            },
            Control::ResetRunningStats { layer: Some(0) },
        ] {
            t.handle(control);
        }
        train(&mut t, 5);
        assert_ne!(fingerprint(&mut t), saved, "{kind:?}: training moved on");
        t.handle(Control::RestoreCheckpoint { from: None });
        assert_eq!(fingerprint(&mut t), saved, "{kind:?}: restored state");
        assert_eq!(
            train(&mut t, 12),
            after_save,
            "{kind:?}: losses after restore"
        );
        // Again: the checkpoint stays.
        t.handle(Control::RestoreCheckpoint { from: None });
        assert_eq!(fingerprint(&mut t), saved, "{kind:?}: second restore");
        let echoed: Vec<(u64, Control)> = echoes(&events, 9)
            .into_iter()
            .filter(|e| e.rejected.is_none())
            .map(|e| (e.step, e.control))
            .filter(|(_, c)| !matches!(c, Control::SetDataOrder { .. }))
            .filter(|(_, c)| c.name().contains("checkpoint"))
            .collect();
        assert_eq!(
            echoed,
            vec![
                (37, Control::SaveCheckpoint),
                (37, Control::RestoreCheckpoint { from: Some(54) }),
                (37, Control::RestoreCheckpoint { from: Some(49) }),
            ],
            "{kind:?}: echoed at the step gone back to, with where the run was"
        );
    }
}

/// A restart is a fresh run with the same configuration: the same state at step 0 and the same
/// first losses; a restore before any save is refused and changes nothing.
#[test]
fn restart_repeats_a_fresh_run_and_restore_needs_a_save() {
    let cfg = config(OptimizerKind::Sgd);
    let (mut fresh, _, _) = trainer(&cfg);
    let initial = fingerprint(&mut fresh);
    let first = train(&mut fresh, 15);

    let (mut t, events, _controls) = trainer(&cfg);
    train(&mut t, 20);
    let before = fingerprint(&mut t);
    t.handle(Control::RestoreCheckpoint { from: None });
    assert_eq!(
        fingerprint(&mut t),
        before,
        "a refused restore changes nothing"
    );
    t.handle(Control::SetLr { lr: 0.01 });
    t.handle(Control::SetMode {
        layer: None,
        mode: BnMode::Eval,
    });
    train(&mut t, 3);
    t.handle(Control::Restart { from: None });
    assert_eq!(fingerprint(&mut t), initial, "restarted state");
    assert_eq!(train(&mut t, 15), first, "losses after a restart");
    let echoed: Vec<(u64, String, Option<String>)> = echoes(&events, 4)
        .into_iter()
        .map(|e| (e.step, e.control.name().to_string(), e.rejected))
        .collect();
    assert_eq!(
        echoed[0],
        (
            20,
            "restore_checkpoint".into(),
            Some(super::checkpoints::NO_CHECKPOINT.into())
        )
    );
    assert_eq!(echoed[3], (0, "restart".into(), None));
}

/// Each step's filter readings are those of the weights before and after its update, with its
/// gradient. The update reads the weights before it from the filters the step's forward ran
/// with (not copied again): those are the weights as they were, bit for bit.
#[test]
fn every_step_reads_the_filters_before_and_after_its_update() {
    for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
        let (mut t, _events, _controls) = trainer(&config(kind));
        for step in 0..4 {
            let before: Vec<Vec<f32>> = t.net.blocks.iter().map(|b| b.weight()).collect();
            let record = t.train_step().expect("a step");
            assert_eq!(record.blocks.len(), t.net.blocks.len());
            for ((block, before), measured) in t.net.blocks.iter().zip(&before).zip(&record.blocks)
            {
                assert_eq!(*measured.seen.filters, *before, "{kind:?}, step {step}");
                let after = block.weight();
                let grad = to_host(&t.grads.get(&block.weight));
                let want = row_step_sums(before, &after, &grad, block.channels());
                assert_eq!(measured.weight_rows.len(), block.channels());
                for (got, (sums, angle)) in measured.weight_rows.iter().zip(want) {
                    assert_eq!(got.sums, sums, "{kind:?}, step {step}");
                    assert_eq!(got.angle().to_bits(), angle.to_bits(), "{kind:?}");
                }
            }
        }
    }
}
