//! BN's ε residual and dead channels in a real run: strong weight decay (5e-2) on the embedded
//! digits switches channels off within a thousand steps, and the built-in engine's cos(w_c, g_c)
//! is, on every live channel, the cosine the ε residual predicts from the snapshot's own fields.
use std::time::Duration;

use bntop::engine::{self, data, TrainConfig};
use bntop::metrics::dead::{dead_channels, live_median_effective_lr};
use bntop::metrics::weights::epsilon_cosine;
use bntop::metrics::BN_EPSILON;
use bntop::protocol::{Event, OptimizerConfig, Snapshot};

/// The last snapshot of a 1000-step run with weight decay 5e-2 that carries every layer's arrays.
fn strong_decay_run() -> Snapshot {
    let defaults = TrainConfig::default();
    let cfg = TrainConfig {
        max_steps: Some(1000),
        eval_every: 1000,
        lab_every: 0,
        optimizer: OptimizerConfig {
            weight_decay: 5e-2,
            ..defaults.optimizer.clone()
        },
        ..defaults
    };
    let engine = engine::spawn(cfg, data::embedded_digits().expect("digits")).expect("spawn");
    let mut last = None;
    while let Ok(event) = engine.events.recv_timeout(Duration::from_secs(120)) {
        match event {
            Event::Snapshot(s) if s.layers.iter().all(|l| !l.weight_grad_norm.is_empty()) => {
                last = Some(s)
            }
            Event::End(_) => break,
            _ => {}
        }
    }
    drop(engine.controls);
    engine.thread.join().expect("engine thread");
    last.expect("a whole snapshot")
}

#[test]
fn weight_decay_kills_channels_and_the_epsilon_residual_predicts_every_live_cosine() {
    let snapshot = strong_decay_run();
    let mut dead_total = 0;
    let mut largest = 0.0f64;
    for (l, layer) in snapshot.layers.iter().enumerate() {
        let dead = dead_channels(&layer.gamma, &layer.batch_var, BN_EPSILON).expect("arrays");
        dead_total += dead.len();
        for c in (0..layer.gamma.len()).filter(|c| !dead.contains(c)) {
            let at = |xs: &[f32]| f64::from(xs[c]);
            let predicted = epsilon_cosine(
                at(&layer.gamma),
                at(&layer.grad_gamma),
                at(&layer.batch_var),
                BN_EPSILON,
                at(&layer.weight_norm),
                at(&layer.weight_grad_norm),
            )
            .expect("a live filter has a direction");
            let measured = at(&layer.weight_grad_cos);
            largest = largest.max(measured.abs());
            // `weight_norm` is ‖w_c‖ after the step; the cosine used the one before. Weight
            // decay moves it by about ηλ/(1-μ) = 2.5% a step here (2.5e-4 at the defaults).
            assert!(
                (measured - predicted).abs() <= 0.05 * predicted.abs() + 2e-6,
                "layer {l} c{c}: cos {measured:e}, ε residual predicts {predicted:e}"
            );
        }
        // The mean η/‖w_c‖² is dominated by the dead filters; the live median is not.
        let live = live_median_effective_lr(f64::from(snapshot.lr), &layer.weight_norm, &dead)
            .expect("live channels");
        assert!(live.is_finite() && live < 10.0, "layer {l}: {live}");
        if !dead.is_empty() {
            let mean = f64::from(layer.summary.effective_lr);
            assert!(mean > 1e3 * live, "layer {l}: mean {mean} vs median {live}");
        }
    }
    eprintln!("dead channels: {dead_total}; largest live |cos| {largest:e}");
    assert!(dead_total >= 3, "{dead_total} dead channels");
    assert!(largest > 1e-4, "a residual worth predicting: {largest:e}");
}
