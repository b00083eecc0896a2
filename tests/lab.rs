//! The BatchNorm lab on the real engine and the embedded digits (BN-METRICS.md; issue 6, item 9):
//! each effect measured on a controlled case against the theory's prediction. The runs are
//! stepped (tests/common): controls land after exact steps and the steps a test reads are
//! published whole, so nothing depends on the machine's load.
mod common;

use bntop::engine::TrainConfig;
use bntop::metrics::weights::radial_fraction_sgd;
use bntop::protocol::{BnMode, Control, DataOrder, Event, PopulationReport};
use bntop::ui::state::RunState;
use bntop::ui::theory::{ema_reading, relu_shift};
use common::{run_exact, run_whole_from};

/// The fold_check control folds each conv + BN into one conv and checks it on the held-out set:
/// the folded network gives the eval-mode logits to float rounding.
#[test]
fn fold_check_reports_the_folded_network_matches_eval_mode() {
    let cfg = TrainConfig {
        max_steps: Some(60),
        eval_every: 1000,
        ..TrainConfig::default()
    };
    let events = run_exact(cfg, &[(50, Control::FoldCheck)]);
    let report = events.iter().find_map(|e| match e {
        Event::Folding(f) => Some(f.clone()),
        _ => None,
    });
    let report = report.expect("a folding record");
    assert_eq!(report.step, 50, "checked right after its step");
    assert!(report.samples > 0);
    assert!(
        report.max_abs_diff < 1e-4,
        "max |diff| {}",
        report.max_abs_diff
    );
    assert!(report.unfolded_us_per_image > 0.0 && report.folded_us_per_image > 0.0);
}

/// BN-METRICS §5: with SGD, momentum μ and coupled weight decay λ, the angular update of a
/// normalised filter settles at θ* = sqrt(2ηλ/(1+μ)) after a few time constants
/// τ = (1-μ)/(4ηλ). With η = 0.1, λ = 5e-3, μ = 0.9: θ* = 0.0229 and τ = 50 steps, so steps
/// 300-600 are 6-12 τ in.
#[test]
fn angular_update_settles_at_the_weight_decay_equilibrium() {
    let mut cfg = TrainConfig {
        max_steps: Some(600),
        eval_every: 1000,
        ..TrainConfig::default()
    };
    cfg.optimizer.lr = 0.1;
    cfg.optimizer.weight_decay = 5e-3;
    let theta_star = bntop::metrics::weights::theta_star_coupled(0.1, 5e-3, 0.9);
    let events = run_whole_from(cfg, 301, &[]);
    for layer in 0..3 {
        let angles: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Snapshot(s) if s.step > 300 && !s.layers.is_empty() => {
                    Some(f64::from(s.layers[layer].summary.angular_update))
                }
                _ => None,
            })
            .collect();
        assert_eq!(angles.len(), 300, "layer {layer}: every step 301-600");
        let mean = angles.iter().sum::<f64>() / angles.len() as f64;
        let ratio = mean / theta_star;
        assert!(
            (0.8..1.2).contains(&ratio),
            "layer {layer}: {mean:.4} vs theta* {theta_star:.4} ({ratio:.2})"
        );
    }
}

fn populations(events: &[Event]) -> Vec<&PopulationReport> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Population(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// BN-METRICS §3 on a trained network: shuffled batches see the population's variance; class-
/// sorted batches see much less in the class-specific last layer, as 1 - 1/n_eff predicts; the
/// EMA learns the shrunken variance, and writing the PreciseBN statistics into the running
/// statistics recovers the population's.
#[test]
fn precise_bn_measures_the_class_sorted_variance_ratio_and_recovers_the_population() {
    let cfg = TrainConfig {
        max_steps: Some(500),
        eval_every: 500,
        lab_every: 0,
        ..TrainConfig::default()
    };
    let class_sorted = Control::SetDataOrder {
        order: DataOrder::ClassSorted,
    };
    let events = run_exact(
        cfg,
        &[
            (300, Control::PreciseBn),
            (301, class_sorted),
            (302, Control::PreciseBn),
            (480, Control::PreciseBn),
            (481, Control::ApplyPreciseBn { layer: None }),
            (482, Control::PreciseBn),
        ],
    );
    let reports = populations(&events);
    let steps: Vec<u64> = reports.iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        [300, 302, 480, 481, 482],
        "three on demand, one per apply, one after"
    );
    let (shuffled, sorted, sorted_trained, applied) =
        (reports[0], reports[1], reports[2], reports[3]);
    assert_eq!(shuffled.order, DataOrder::Shuffled);
    assert!(shuffled.samples >= 1000, "{}", shuffled.samples);
    for l in &shuffled.layers {
        assert!(l.var_ratio > 0.97, "shuffled: {l:?}");
        assert!((l.var_ratio - l.predicted_ratio).abs() < 0.02, "{l:?}");
    }
    assert_eq!(sorted.order, DataOrder::ClassSorted);
    let last = &sorted.layers[2];
    assert!(
        last.var_ratio < 0.85 && last.predicted_ratio < 0.9,
        "class-sorted batches shrink the last layer's variance: {last:?}"
    );
    assert!(last.n_eff < 10.0, "{last:?}");
    // Block 1 sees the images themselves (no BN upstream), so the law of total variance makes
    // measurement and prediction agree up to the sampling of the two image sets.
    let first = &sorted.layers[0];
    assert!(
        (first.var_ratio - first.predicted_ratio).abs() < 0.02,
        "{first:?}"
    );
    // After some class-sorted training the EMA holds the batches' smaller variance...
    assert!(
        sorted_trained.layers[2].running_var_ratio < 0.95,
        "{:?}",
        sorted_trained.layers[2]
    );
    // ...and PreciseBN puts the population's back (running variances are stored unbiased).
    for l in &applied.layers {
        assert!((l.running_var_ratio - 1.0).abs() < 1e-3, "{l:?}");
    }
    let three_way = events
        .iter()
        .filter(|e| matches!(e, Event::Evaluation(v) if v.precise_stats.is_some()))
        .count();
    assert_eq!(three_way, 4, "each PreciseBn control evaluates three ways");
}

/// Issue 11, item 11: switching the order back to `shuffled` mid-epoch takes effect from the
/// next batch. The rest of the epoch was sorted by class; if it stays sorted, the batches
/// PreciseBN compares against (the next epoch's worth in the current order) are mostly one class
/// each and n_eff collapses as under `class_sorted`. Shuffled batches give block3 n_eff of 100+.
#[test]
fn switching_back_to_shuffled_mid_epoch_reshuffles_the_rest_of_the_epoch() {
    // 1437 training images in batches of 64: 22 steps an epoch, a new one after every step
    // that is a multiple of 22.
    let epoch = (1437 / 64) as u64;
    let order = |order| Control::SetDataOrder { order };
    // Train to step 200 and measure the shuffled order; at the next epoch boundary switch to
    // class_sorted, train 3 sorted steps and measure; switch back (19 batches of the epoch
    // left) and measure at once.
    let sorted_from = 200u64.next_multiple_of(epoch);
    let back = sorted_from + 3;
    let cfg = TrainConfig {
        max_steps: Some(back),
        eval_every: 1000,
        lab_every: 0,
        ..TrainConfig::default()
    };
    let events = run_exact(
        cfg,
        &[
            (200, Control::PreciseBn),
            (sorted_from, order(DataOrder::ClassSorted)),
            (back, Control::PreciseBn),
            (back, order(DataOrder::Shuffled)),
            (back, Control::PreciseBn),
        ],
    );
    let switches: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Control(c) if matches!(c.control, Control::SetDataOrder { .. }) => Some(c.step),
            _ => None,
        })
        .collect();
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(
        switches[0] % epoch,
        0,
        "class_sorted from an epoch's first batch"
    );
    assert_eq!(switches[1], switches[0] + 3, "three class-sorted steps");
    let reports = populations(&events);
    assert_eq!(reports.len(), 3);
    let (before, sorted, after) = (reports[0], reports[1], reports[2]);
    assert_eq!(
        (before.order, sorted.order, after.order),
        (
            DataOrder::Shuffled,
            DataOrder::ClassSorted,
            DataOrder::Shuffled
        )
    );
    assert_eq!(
        after.step, switches[1],
        "measured right after the switch back"
    );
    let last = |r: &PopulationReport| r.layers[2].n_eff;
    assert!(
        last(sorted) < 30.0 && last(before) > 60.0,
        "block3 n_eff: shuffled {:.1}, class-sorted {:.1}",
        last(before),
        last(sorted)
    );
    assert!(
        last(after) > 0.5 * last(before) && last(after) > 4.0 * last(sorted),
        "block3 n_eff after the switch back {:.1}: shuffled {:.1}, class-sorted {:.1}",
        last(after),
        last(before),
        last(sorted)
    );
}

/// BN-METRICS §6-7: the probe's three bars on the real network. In train mode the pre-BN bias
/// gradient cancels to rounding; with stop-gradient and in eval mode it is (γ/σ)∇β, non-zero.
#[test]
fn phantom_probe_bars_match_theory() {
    let cfg = TrainConfig {
        max_steps: Some(300),
        eval_every: 100,
        lab_every: 100,
        ..TrainConfig::default()
    };
    let events = run_exact(cfg, &[(150, Control::PhantomProbe)]);
    let probes: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Probe(p) => Some(p),
            _ => None,
        })
        .collect();
    let steps: Vec<u64> = probes.iter().map(|p| p.step).collect();
    assert_eq!(
        steps,
        [0, 100, 150, 200, 300],
        "every 100 steps and one on demand"
    );
    for probe in probes {
        assert_eq!(probe.layers.len(), 3);
        for l in &probe.layers {
            // 0 in exact arithmetic; what is left is f32 rounding of BN's backward, whose channel
            // sums run over n = N·H·W terms (4,096 in block1, 256 in block3): at most about
            // n·2⁻²⁴ relative (2.4e-4), typically √n·2⁻²⁴ (3.8e-6). Runs give 1e-7 to 1.6e-6.
            assert!(l.train_cancellation < 1e-5, "step {}: {l:?}", probe.step);
            assert!(
                l.train < 1e-4 * l.stop_gradient,
                "step {}: {l:?}",
                probe.step
            );
            assert!(l.eval > 1e-5 && l.stop_gradient > 1e-5, "{l:?}");
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 * b.abs();
            assert!(close(l.stop_gradient, l.stop_gradient_predicted), "{l:?}");
            assert!(close(l.eval, l.eval_predicted), "{l:?}");
        }
    }
}

/// BN-METRICS §5: plain SGD (no momentum) makes a step of -η(g + λw) with g ⊥ w, so its radial
/// fraction is -ηλ/sqrt((ηλ)² + ((1-ηλ)tan θ)²) given the step's angle θ; without weight decay
/// the step is purely tangential.
#[test]
fn radial_fraction_of_plain_sgd_steps_matches_theory() {
    for wd in [0.0, 5e-3] {
        let mut cfg = TrainConfig {
            max_steps: Some(60),
            eval_every: 1000,
            lab_every: 0,
            ..TrainConfig::default()
        };
        cfg.optimizer.lr = 0.1;
        cfg.optimizer.momentum = 0.0;
        cfg.optimizer.weight_decay = wd;
        let events = run_whole_from(cfg, 1, &[]);
        let mut checked = 0;
        for e in &events {
            let Event::Snapshot(s) = e else { continue };
            for l in &s.layers {
                let predicted = l
                    .angular_update
                    .iter()
                    .map(|&t| radial_fraction_sgd(0.1, f64::from(wd), f64::from(t)))
                    .sum::<f64>()
                    / l.angular_update.len() as f64;
                let measured = f64::from(l.summary.radial_fraction);
                assert!(
                    (measured - predicted).abs() < 2e-3,
                    "wd {wd} step {}: {measured} vs {predicted}",
                    s.step
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 3 * 60, "every step's three layers");
    }
}

/// Feeds the run into the dashboard's state and returns it as it stood right after `step` (or
/// the first snapshot past it).
fn state_at(events: &[Event], step: u64) -> RunState {
    let mut state = RunState::new();
    for e in events {
        state.apply(e);
        if matches!(e, Event::Snapshot(s) if s.step >= step) {
            break;
        }
    }
    state
}

/// Mean of D² over the snapshots in `steps` for `layer`.
fn mean_drift_sq(events: &[Event], layer: usize, steps: std::ops::RangeInclusive<u64>) -> f64 {
    let d2: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) if steps.contains(&s.step) && !s.layers.is_empty() => {
                Some(f64::from(s.layers[layer].summary.drift).powi(2))
            }
            _ => None,
        })
        .collect();
    d2.iter().sum::<f64>() / d2.len() as f64
}

/// BN-METRICS §1: in a stationary run D sits at its noise floor D0 (Ξ = D²/D0² about 1-2);
/// a layer that trains on its running statistics (eval mode) leaves it far behind.
#[test]
fn drift_sits_at_its_noise_floor_until_a_layer_trains_in_eval_mode() {
    // Block2 trains in eval mode from step 501; measured 150-200 steps later.
    let (switch, from, to) = (500, 650, 700);
    let cfg = TrainConfig {
        max_steps: Some(to),
        eval_every: 1000,
        lab_every: 0,
        ..TrainConfig::default()
    };
    let eval = Control::SetMode {
        layer: Some(1),
        mode: BnMode::Eval,
    };
    // D0 averages over every pair of successive steps from the first.
    let events = run_whole_from(cfg, 1, &[(switch, eval)]);
    let before = state_at(&events, 499);
    for (i, layer) in before.layers.iter().enumerate() {
        let floor = layer.noise_floor().expect("a floor after 499 steps");
        let xi = mean_drift_sq(&events, i, 400..=499) / (floor * floor);
        assert!((0.3..4.0).contains(&xi), "{}: Ξ = {xi:.2}", layer.name);
    }
    let switched = events.iter().find_map(|e| match e {
        Event::Control(c) if matches!(c.control, Control::SetMode { .. }) => Some(c.step),
        _ => None,
    });
    assert_eq!(switched, Some(switch));
    let after = state_at(&events, to);
    let floor = after.layers[1].noise_floor().expect("floor");
    let xi = mean_drift_sq(&events, 1, from..=to) / (floor * floor);
    assert!(xi > 20.0, "block2 in eval mode: Ξ = {xi:.1}");
}

/// BN-METRICS §2: under the drifting order the running mean trails the batch means by
/// (1-m)/m steps (19 for m = 0.05), measured by the lab's fit over successive steps.
#[test]
fn running_mean_lags_the_drifting_batch_means_by_one_minus_m_over_m() {
    let cfg = TrainConfig {
        max_steps: Some(500),
        eval_every: 1000,
        lab_every: 0,
        bn_momentum: 0.05,
        data_order: DataOrder::Drifting,
        ..TrainConfig::default()
    };
    // The fit's window: the last 400 successive steps, 101-500.
    let state = state_at(&run_whole_from(cfg, 101, &[]), 500);
    for layer in &state.layers {
        let window: Vec<u64> = layer.ema_window.steps().collect();
        assert_eq!(window, (101..=500).collect::<Vec<_>>(), "{}", layer.name);
        let reading = ema_reading(layer).expect("a full window");
        let lag = reading.lag.expect("a trend to lag behind");
        assert!((reading.lag_predicted - 19.0).abs() < 1e-3);
        assert!(
            (lag / reading.lag_predicted - 1.0).abs() < 0.3,
            "{}: lag {lag:.1} vs {:.1}",
            layer.name,
            reading.lag_predicted
        );
    }
}

/// BN-METRICS §9: after a train-mode BN the pre-activation of a channel is about N(β, γ²), so
/// ReLU's active fraction is about Φ(β/|γ|) and its mean about the rectified Gaussian's.
#[test]
fn relu_after_bn_follows_the_rectified_gaussian() {
    let cfg = TrainConfig {
        max_steps: Some(300),
        eval_every: 1000,
        lab_every: 0,
        ..TrainConfig::default()
    };
    // Step 300's own layers.
    let state = state_at(&run_whole_from(cfg, 300, &[]), 300);
    for layer in &state.layers {
        let latest = layer.latest.as_ref().expect("a snapshot");
        let (active, active_pred, mean, mean_pred, dead) = relu_shift(latest).expect("arrays");
        assert!(
            (active - active_pred).abs() < 0.12,
            "{}: active {active:.3} vs {active_pred:.3}",
            layer.name
        );
        assert!(
            (mean / mean_pred - 1.0).abs() < 0.15,
            "{}: mean {mean:.3} vs {mean_pred:.3}",
            layer.name
        );
        assert_eq!(dead, 0, "{}", layer.name);
    }
}
