//! Theory beside measurement for the selected layer (BN-METRICS.md): the BatchNorm lab's
//! predictions computed from what the stream carries, so the dashboard can show both.
use crate::metrics::relu::rectified_gaussian;
use crate::metrics::weights::{
    fit_power_law, power_law_scale, radial_fraction_sgd, NO_DECAY_ANGLE_EXPONENT,
};
use crate::metrics::BN_EPSILON;
use crate::protocol::{BnMode, LayerSnapshot, OptimizerKind, ProbeLayer};

use super::state::{LayerState, RunState};

mod rows;
pub mod scale_invariance;

pub use rows::comparisons;

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

impl Comparison {
    pub fn new(
        quantity: &'static str,
        measured: f64,
        predicted: Option<f64>,
        note: impl Into<String>,
    ) -> Comparison {
        Comparison {
            quantity,
            measured,
            predicted,
            note: note.into(),
            bar: None,
        }
    }

    /// With a bar of `fraction` of the longest in its group.
    pub fn with_bar(self, fraction: f64) -> Comparison {
        Comparison {
            bar: Some(fraction),
            ..self
        }
    }
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
            let f32s = |xs: &[f64]| xs.iter().map(|&x| x as f32).collect::<Vec<_>>();
            layer.ema_window.push(t, &f32s(&batch), &f32s(&running));
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
        assert!(cos.is_some_and(|r| r.note.contains("not normalised: eval mode")));
        // A train-mode layer whose filters weight decay has shrunk: max |cos| 0.03 on a channel
        // with σ²_B = 5ε is BN's ε residual as predicted, not a layer in eval mode.
        let mut layer = state.layers[0].clone();
        let latest = layer.latest.as_mut().expect("a snapshot");
        let c = latest.batch_var.len();
        latest.batch_var[c - 1] = (5.0 * BN_EPSILON) as f32;
        let (gamma, grad_gamma) = (f64::from(latest.gamma[c - 1]), 0.002);
        latest.grad_gamma[c - 1] = grad_gamma as f32;
        let (w, g) = (
            f64::from(latest.weight_norm[c - 1]),
            f64::from(latest.weight_grad_norm[c - 1]),
        );
        let predicted = gamma * grad_gamma / 6.0 / (w * g);
        latest.weight_grad_cos[c - 1] = (1.02 * predicted) as f32;
        assert!(predicted > 0.01, "{predicted}");
        let rows = comparisons(&state, &layer);
        let cos = rows
            .iter()
            .find(|r| r.quantity.starts_with("max |cos"))
            .expect("the cos row");
        assert!(
            (cos.predicted.expect("a prediction") / predicted - 1.0).abs() < 1e-5,
            "{cos:?}"
        );
        assert!((cos.measured / predicted - 1.02).abs() < 1e-5, "{cos:?}");
        assert!(
            cos.note
                .starts_with(&format!("c{}, σ²_B = 5.0ε: ε-dominated", c - 1)),
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
