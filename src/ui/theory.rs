//! Theory beside measurement for the selected layer (BN-METRICS.md): the BatchNorm lab's
//! predictions computed from what the stream carries, so the dashboard can show both.
use crate::metrics::drift::xi;
use crate::metrics::relu::rectified_gaussian;
use crate::metrics::weights::{
    fit_power_law, power_law_scale, radial_fraction_sgd, NO_DECAY_ANGLE_EXPONENT,
    NO_DECAY_NORM_EXPONENT,
};
use crate::metrics::BN_EPSILON;
use crate::protocol::{BnMode, LayerSnapshot, OptimizerKind, ProbeLayer};

use super::state::{LayerState, RunState};

/// One row of the lab panel: what is measured, what theory predicts, and a verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub quantity: &'static str,
    pub measured: f64,
    pub predicted: Option<f64>,
    pub note: String,
    /// Length of a bar beside the value, as a fraction of the longest in its group (the probe).
    pub bar: Option<f64>,
}

/// ReLU after BN (§9): the pre-activation of channel c is about N(β_c, γ_c²), so the active
/// fraction is Φ(β/|γ|) and the mean |γ|φ(β/|γ|) + βΦ(β/|γ|). Layer values: channel means.
/// Returns (measured active, predicted active, measured mean, predicted mean, dead channels).
pub fn relu_shift(layer: &LayerSnapshot) -> Option<(f64, f64, f64, f64, usize)> {
    let c = layer.gamma.len();
    if c == 0 || layer.beta.len() != c || layer.relu_active.len() != c || layer.relu_mean.len() != c
    {
        return None;
    }
    let mean = |xs: &mut dyn Iterator<Item = f64>| xs.sum::<f64>() / c as f64;
    let predicted: Vec<_> = (0..c)
        .map(|i| rectified_gaussian(f64::from(layer.beta[i]), f64::from(layer.gamma[i])))
        .collect();
    let dead = layer.relu_active.iter().filter(|&&a| a < 0.01).count();
    Some((
        mean(&mut layer.relu_active.iter().map(|&a| f64::from(a))),
        mean(&mut predicted.iter().map(|p| p.active_fraction)),
        mean(&mut layer.relu_mean.iter().map(|&m| f64::from(m))),
        mean(&mut predicted.iter().map(|p| p.mean)),
        dead,
    ))
}

/// The running mean as an EMA (§2), averaged over channels: the producer's fit when the stream
/// carries one (format 1.5), otherwise measured over the layer's window of successive steps.
pub use crate::metrics::ema_window::EmaReading;

pub fn ema_reading(layer: &LayerState) -> Option<EmaReading> {
    layer.ema_reading()
}

/// The pre-BN bias gradient (§6, with `--conv-bias`), as mean |∇b| / mean |∇β| over channels:
/// measured, and predicted from the layer's mode. In train mode BN subtracts the batch mean,
/// so the bias cancels and its gradient is 0; in eval mode ∇b = (γ/σ_R)∇β.
pub fn bias_gradient(layer: &LayerSnapshot) -> Option<(f64, f64)> {
    let bias = layer.bias_grad.as_ref()?;
    let c = bias.len();
    let ok = |v: &Vec<f32>| v.len() == c;
    if c == 0 || !ok(&layer.grad_beta) || !ok(&layer.gamma) || !ok(&layer.running_var_pre) {
        return None;
    }
    let mean_abs = |it: &mut dyn Iterator<Item = f64>| it.map(f64::abs).sum::<f64>() / c as f64;
    let beta = mean_abs(&mut layer.grad_beta.iter().map(|&g| f64::from(g)));
    if beta == 0.0 {
        return None;
    }
    let measured = mean_abs(&mut bias.iter().map(|&g| f64::from(g))) / beta;
    let predicted = match layer.mode {
        BnMode::Train => 0.0,
        BnMode::Eval => {
            mean_abs(&mut (0..c).map(|i| {
                let sigma = (f64::from(layer.running_var_pre[i]) + BN_EPSILON).sqrt();
                f64::from(layer.gamma[i]) / sigma * f64::from(layer.grad_beta[i])
            })) / beta
        }
    };
    Some((measured, predicted))
}

/// The radial fraction of the layer's last step (§5), measured, and predicted from each
/// channel's angle for SGD without momentum (the step is -η(g + λw) with g ⊥ w). With momentum
/// the norm oscillates around its equilibrium and there is no per-step prediction.
pub fn radial_step(state: &RunState, layer: &LayerSnapshot) -> (f64, Option<f64>) {
    let measured = f64::from(layer.summary.radial_fraction);
    let sgd = state
        .header
        .as_ref()
        .map(|h| &h.config.optimizer)
        .filter(|o| {
            o.kind == OptimizerKind::Sgd && o.momentum == 0.0 && !layer.angular_update.is_empty()
        });
    let predicted = sgd.map(|o| {
        let (lr, wd) = (f64::from(state.lr), f64::from(o.weight_decay));
        let n = layer.angular_update.len() as f64;
        layer
            .angular_update
            .iter()
            .map(|&t| radial_fraction_sgd(lr, wd, f64::from(t)))
            .sum::<f64>()
            / n
    });
    (measured, predicted)
}

/// Without weight decay (§5): the log-log slopes of the layer's angular update and weight norm
/// over the last 90% of the run, against -1/2 and 1/4.
pub struct NoDecayLaws {
    pub angle_exponent: f64,
    pub norm_exponent: f64,
    /// θ ≈ angle_scale·t^(-1/2), fitted with the exponent fixed (the chart's reference curve).
    pub angle_scale: f64,
}

pub fn no_decay_laws(state: &RunState, layer: &LayerState) -> Option<NoDecayLaws> {
    if !state.no_decay_sgd() {
        return None;
    }
    // A decade of steps at least, past the first few.
    let from = state.step / 10;
    if state.step < 100 {
        return None;
    }
    let angles = layer.angular_update.log_scale_points(from);
    let norms = layer.weight_norm.log_scale_points(from);
    Some(NoDecayLaws {
        angle_exponent: fit_power_law(&angles)?.exponent,
        norm_exponent: fit_power_law(&norms)?.exponent,
        angle_scale: power_law_scale(&angles, NO_DECAY_ANGLE_EXPONENT)?,
    })
}

/// The probe's three bars for the layer at `index` (§6-7), if a probe has run.
pub fn probe_bars(state: &RunState, index: usize) -> Option<(u64, ProbeLayer)> {
    let probe = state.last_probe.as_ref()?;
    Some((probe.step, *probe.layers.get(index)?))
}

/// The lab rows for `layer` in `state`.
pub fn comparisons(state: &RunState, layer: &LayerState) -> Vec<Comparison> {
    let mut rows = Vec::new();
    let Some(latest) = &layer.latest else {
        return rows;
    };
    let d = f64::from(latest.summary.drift);
    let floor = layer.noise_floor();
    rows.push(Comparison {
        bar: None,
        quantity: "drift D vs floor D0",
        measured: d,
        predicted: floor,
        note: match floor {
            Some(f) => format!("Ξ = (D/D0)² = {:.2} (healthy 1-2)", xi(d * d, f * f)),
            None => "D0 needs successive steps (live runs)".into(),
        },
    });
    if let Some((active, active_pred, mean, mean_pred, dead)) = relu_shift(latest) {
        rows.push(Comparison {
            bar: None,
            quantity: "ReLU active fraction",
            measured: active,
            predicted: Some(active_pred),
            note: format!("Φ(β/|γ|); {dead} dead channels (< 1% active)"),
        });
        rows.push(Comparison {
            bar: None,
            quantity: "ReLU output mean",
            measured: mean,
            predicted: Some(mean_pred),
            note: "rectified Gaussian N(β, γ²)".into(),
        });
    }
    if let Some(ema) = ema_reading(layer) {
        rows.push(Comparison {
            bar: None,
            quantity: "running-mean noise",
            measured: ema.noise,
            predicted: Some(ema.noise_predicted),
            note: format!(
                "√(m/(2-m)·v·(1+(1-m)φ)/(1-(1-m)φ)), v the batch-mean noise, φ = {:.2} its lag-1 \
                 correlation",
                ema.batch_correlation
            ),
        });
        rows.push(Comparison {
            bar: None,
            quantity: "running-mean lag (steps)",
            measured: ema.lag.unwrap_or(f64::NAN),
            predicted: Some(ema.lag_predicted),
            note: match (ema.lag, ema.best_momentum) {
                (Some(_), Some(best)) => format!("(1-m)/m; m* ≈ {:.3} for this drift", best),
                _ => "no trend in the batch means to lag behind".into(),
            },
        });
    }
    if let Some(f) = &state.last_folding {
        rows.push(Comparison {
            bar: None,
            quantity: "folded conv+BN max |Δlogit|",
            measured: f64::from(f.max_abs_diff),
            predicted: Some(0.0),
            note: format!(
                "float rounding (~1e-6); {:.2}x faster folded (F to rerun)",
                f.unfolded_us_per_image / f.folded_us_per_image
            ),
        });
    }
    if let Some((measured, predicted)) = bias_gradient(latest) {
        rows.push(Comparison {
            bar: None,
            quantity: "bias grad |∇b|/|∇β|",
            measured,
            predicted: Some(predicted),
            note: match latest.mode {
                BnMode::Train => "train mode: the bias cancels, ∇b ≈ 0".into(),
                BnMode::Eval => "eval mode: ∇b = (γ/σ_R)∇β, a phantom gradient".into(),
            },
        });
    }
    let index = state.layers.iter().position(|l| l.name == layer.name);
    if let Some(p) = &state.last_population {
        if let Some(l) = index.and_then(|i| p.layers.get(i)) {
            rows.push(Comparison {
                bar: None,
                quantity: "batch var σ²_B/σ²_pop",
                measured: l.var_ratio,
                predicted: Some(l.predicted_ratio),
                note: format!(
                    "1-1/n_eff, n_eff {}; {} batches; EMA var/σ²_pop {:.2} (step {}, P a A)",
                    crate::ui::format::num(l.n_eff, 3),
                    p.order.name(),
                    l.running_var_ratio,
                    p.step
                ),
            });
        }
    }
    if let Some(e) = &state.last_three_way {
        if let Some(precise) = e.precise_stats {
            rows.push(Comparison {
                bar: None,
                quantity: "held-out acc EMA vs PreciseBN",
                measured: f64::from(e.running_stats.accuracy),
                predicted: Some(f64::from(precise.accuracy)),
                note: format!(
                    "batch stats {:.1}% (step {}): EMA-Precise = EMA staleness, batch-Precise = \
                     train/test mismatch",
                    100.0 * e.batch_stats.accuracy,
                    e.step
                ),
            });
        }
    }
    if let Some((step, bars)) = index.and_then(|i| probe_bars(state, i)) {
        let longest = bars.train.max(bars.stop_gradient).max(bars.eval);
        let bar = |x: f64| Some(if longest > 0.0 { x / longest } else { 0.0 });
        rows.push(Comparison {
            bar: bar(bars.train),
            quantity: "probe ∇b, train mode",
            measured: bars.train,
            predicted: Some(0.0),
            note: format!(
                "BN cancels the bias: |Σ∂L/∂h|/Σ|∂L/∂h| ≤ {:.0e} (step {step}, b)",
                bars.train_cancellation
            ),
        });
        rows.push(Comparison {
            bar: bar(bars.stop_gradient),
            quantity: "probe ∇b, stop-gradient",
            measured: bars.stop_gradient,
            predicted: Some(bars.stop_gradient_predicted),
            note: "(γ/σ̃_B)∇β: batch stats held constant".into(),
        });
        rows.push(Comparison {
            bar: bar(bars.eval),
            quantity: "probe ∇b, eval mode",
            measured: bars.eval,
            predicted: Some(bars.eval_predicted),
            note: "(γ/σ_R)∇β: the phantom gradient".into(),
        });
    }
    let (radial, radial_predicted) = radial_step(state, latest);
    rows.push(Comparison {
        bar: None,
        quantity: "radial part of a step",
        measured: radial,
        predicted: radial_predicted,
        note: format!(
            "cos(w, Δw); tangential {:.3}{}",
            (1.0 - radial * radial).max(0.0).sqrt(),
            if radial_predicted.is_some() {
                ""
            } else {
                "; momentum: the norm oscillates"
            }
        ),
    });
    if let Some(laws) = no_decay_laws(state, layer) {
        rows.push(Comparison {
            bar: None,
            quantity: "θ log-log slope (no decay)",
            measured: laws.angle_exponent,
            predicted: Some(NO_DECAY_ANGLE_EXPONENT),
            note: format!(
                "θ ~ t^-1/2, ‖w‖ ~ t^1/4 (‖w‖ slope {:.3} vs {}) while gradients keep their \
                 size; as the loss falls θ drops faster and ‖w‖ stops growing",
                laws.norm_exponent, NO_DECAY_NORM_EXPONENT
            ),
        });
    }
    let theta = f64::from(latest.summary.angular_update);
    rows.push(Comparison {
        bar: None,
        quantity: "angular update (rad/step)",
        measured: theta,
        predicted: state.theta_star(),
        note: match state.theta_star() {
            Some(t) => format!("θ* = √(2ηλ/(1+μ)); ratio {:.2}", theta / t),
            None if state.no_decay_sgd() => "no weight decay: no θ*, the t^-1/2 law".into(),
            None => "no θ* for Adam".into(),
        },
    });
    rows.push(Comparison {
        bar: None,
        quantity: "max |cos(w, grad)|",
        measured: f64::from(latest.summary.max_abs_cos),
        // Needs ‖g‖, which the snapshot does not carry; the note gives the ε share instead.
        predicted: None,
        note: match latest.mode {
            BnMode::Train => {
                let share = latest
                    .batch_var
                    .iter()
                    .map(|&v| BN_EPSILON / (f64::from(v) + BN_EPSILON))
                    .reduce(f64::max);
                format!(
                    "BN's ε residual γ(∂L/∂γ)ε/((σ²_B+ε)‖w‖‖g‖), not f32 rounding{}",
                    share.map_or(String::new(), |s| format!(
                        "; largest ε/(σ²_B+ε) {}",
                        crate::ui::format::num(s, 2)
                    ))
                )
            }
            BnMode::Eval => "eval mode: not normalised by its batch, not scale invariant".into(),
        },
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::synthetic;

    /// With β = 0 every channel is active half the time and its mean is |γ|/sqrt(2π).
    #[test]
    fn relu_shift_matches_the_rectified_gaussian_at_zero_shift() {
        let mut state = RunState::new();
        for e in &synthetic::run(10, 1) {
            state.apply(e);
        }
        let mut layer = state.layers[0].latest.clone().expect("a snapshot");
        let c = layer.gamma.len();
        layer.gamma = vec![2.0; c];
        layer.beta = vec![0.0; c];
        layer.relu_active = vec![0.5; c];
        layer.relu_mean = vec![2.0 / (2.0 * std::f32::consts::PI).sqrt(); c];
        let (active, active_pred, mean, mean_pred, dead) = relu_shift(&layer).expect("arrays");
        assert!((active - active_pred).abs() < 1e-9 && (mean - mean_pred).abs() < 1e-6);
        assert_eq!(dead, 0);
        layer.relu_active[3] = 0.0;
        assert_eq!(relu_shift(&layer).map(|r| r.4), Some(1));
    }

    /// A running mean fed an EMA of linearly drifting, noisy batch means: the measured lag is
    /// (1-m)/m and the measured noise matches √(m/(2-m)·v).
    #[test]
    fn ema_reading_recovers_lag_and_noise() {
        use crate::metrics::test_util::Gaussian;
        let mut state = RunState::new();
        for e in &synthetic::run(2, 1) {
            state.apply(e);
        }
        let mut layer = state.layers[0].clone();
        layer.momentum = 0.1;
        layer.ema_window.clear();
        let mut g = Gaussian::new(3);
        let channels = 16;
        let mut running = vec![0.0f64; channels];
        for t in 0..(crate::ui::state::EMA_WINDOW as u64 + 200) {
            let batch: Vec<f64> = (0..channels)
                .map(|_| 0.01 * t as f64 + 0.2 * g.sample())
                .collect();
            for (r, b) in running.iter_mut().zip(&batch) {
                *r = 0.9 * *r + 0.1 * b;
            }
            if layer.ema_window.len() == crate::ui::state::EMA_WINDOW {
                layer.ema_window.pop_front();
            }
            layer.ema_window.push_back(crate::ui::state::EmaStep {
                step: t,
                batch_mean: batch.iter().map(|&x| x as f32).collect(),
                running_mean_post: running.iter().map(|&x| x as f32).collect(),
            });
        }
        let reading = ema_reading(&layer).expect("a reading");
        let lag = reading.lag.expect("a trend");
        assert!((lag - 9.0).abs() < 1.5, "lag {lag}");
        assert!(
            (reading.noise / reading.noise_predicted - 1.0).abs() < 0.25,
            "{} vs {}",
            reading.noise,
            reading.noise_predicted
        );
        assert!(reading.best_momentum.is_some_and(|m| m > 0.0 && m < 1.0));
    }

    #[test]
    fn bias_gradient_prediction_follows_the_mode() {
        let mut state = RunState::new();
        for e in &synthetic::run(10, 1) {
            state.apply(e);
        }
        let mut layer = state.layers[0].latest.clone().expect("a snapshot");
        assert_eq!(
            bias_gradient(&layer),
            None,
            "no --conv-bias, no bias gradient"
        );
        let c = layer.gamma.len();
        layer.gamma = vec![2.0; c];
        layer.running_var_pre = vec![4.0 - BN_EPSILON as f32; c];
        layer.grad_beta = vec![0.5; c];
        // Eval mode: ∇b = (γ/σ_R)∇β = (2/2)·0.5, so the ratio is 1.
        layer.mode = BnMode::Eval;
        layer.bias_grad = Some(vec![0.5; c]);
        let (measured, predicted) = bias_gradient(&layer).expect("arrays");
        assert!((measured - 1.0).abs() < 1e-6 && (predicted - 1.0).abs() < 1e-4);
        layer.mode = BnMode::Train;
        layer.bias_grad = Some(vec![1e-9; c]);
        let (measured, predicted) = bias_gradient(&layer).expect("arrays");
        assert!(measured < 1e-6 && predicted == 0.0);
    }

    #[test]
    fn comparisons_flag_an_eval_mode_layer() {
        let mut state = RunState::new();
        for e in &synthetic::run(1000, 1) {
            state.apply(e);
        }
        // The synthetic run switches block2 to eval mode at step 400: its running statistics
        // stop updating, so there is no EMA lag or noise to read.
        assert!(ema_reading(&state.layers[1]).is_none());
        assert!(ema_reading(&state.layers[0]).is_some());
        let rows = comparisons(&state, &state.layers[1]);
        let cos = rows.iter().find(|r| r.quantity.starts_with("max |cos"));
        assert!(cos.is_some_and(|r| r.note.contains("not scale invariant")));
        // A train-mode layer whose filters weight decay has shrunk: max |cos| 5e-3 is BN's ε
        // residual, not a sign that the layer is not normalised.
        let mut layer = state.layers[0].clone();
        let latest = layer.latest.as_mut().expect("a snapshot");
        latest.summary.max_abs_cos = 5e-3;
        let c = latest.batch_var.len();
        latest.batch_var = vec![1e-3; c];
        latest.batch_var[c - 1] = (BN_EPSILON / 0.02 - BN_EPSILON) as f32;
        let rows = comparisons(&state, &layer);
        let cos = rows
            .iter()
            .find(|r| r.quantity.starts_with("max |cos"))
            .expect("the cos row");
        assert_eq!(cos.predicted, None);
        assert!(
            cos.note.contains("ε residual") && !cos.note.contains("normalised"),
            "{}",
            cos.note
        );
        assert!(
            cos.note.contains("largest ε/(σ²_B+ε) 0.020"),
            "{}",
            cos.note
        );
        let rows = comparisons(&state, &state.layers[0]);
        assert!(rows
            .iter()
            .any(|r| r.quantity.starts_with("angular") && r.predicted.is_some()));
    }

    #[test]
    fn lab_rows_carry_precise_bn_the_probe_and_the_radial_step() {
        let mut state = RunState::new();
        for e in &synthetic::run(1000, 1) {
            state.apply(e);
        }
        let rows = comparisons(&state, &state.layers[2]);
        let find = |q: &str| rows.iter().find(|r| r.quantity.starts_with(q));
        let ratio = find("batch var").expect("PreciseBN row");
        assert_eq!(ratio.predicted, Some(1.0 - 1.0 / 62.5), "block3's n_eff");
        let train = find("probe ∇b, train").expect("probe row");
        assert_eq!((train.predicted, train.bar.is_some()), (Some(0.0), true));
        assert!(train.bar < find("probe ∇b, eval").and_then(|r| r.bar));
        assert!(find("held-out acc").is_some_and(|r| r.predicted.is_some()));
        // With momentum there is no per-step prediction of the radial part; without, there is.
        let latest = state.layers[2].latest.clone().expect("snapshot");
        assert_eq!(radial_step(&state, &latest).1, None);
        if let Some(h) = state.header.as_mut() {
            h.config.optimizer.momentum = 0.0;
        }
        let (_, predicted) = radial_step(&state, &latest);
        let theta = f64::from(latest.angular_update[0]);
        let expected = radial_fraction_sgd(f64::from(state.lr), 5e-4, theta);
        assert!(
            predicted.is_some_and(|p| (p - expected).abs() < 1e-9),
            "{predicted:?}"
        );
    }

    /// Without weight decay the lab fits the log-log slopes of θ and ||w||: on updates that
    /// follow the law exactly it reads -1/2 and 1/4.
    #[test]
    fn no_decay_laws_read_the_log_log_slopes() {
        let mut state = RunState::new();
        for e in &synthetic::run(2, 1) {
            state.apply(e);
        }
        let mut layer = state.layers[0].clone();
        assert!(
            no_decay_laws(&state, &layer).is_none(),
            "weight decay 5e-4: θ* instead"
        );
        if let Some(h) = state.header.as_mut() {
            h.config.optimizer.weight_decay = 0.0;
        }
        layer.angular_update = crate::ui::history::Series::new(512);
        layer.weight_norm = crate::ui::history::Series::new(512);
        for t in 1..=5000u64 {
            let t_f = t as f64;
            layer.angular_update.push(t, (0.02 / t_f.sqrt()) as f32);
            layer.weight_norm.push(t, (2.0 * t_f.powf(0.25)) as f32);
        }
        state.step = 5000;
        let laws = no_decay_laws(&state, &layer).expect("laws");
        assert!(
            (laws.angle_exponent + 0.5).abs() < 0.01,
            "{}",
            laws.angle_exponent
        );
        assert!(
            (laws.norm_exponent - 0.25).abs() < 0.01,
            "{}",
            laws.norm_exponent
        );
        assert!(
            (laws.angle_scale / 0.02 - 1.0).abs() < 0.02,
            "{}",
            laws.angle_scale
        );
    }
}
