//! The lab's rows: one small function per reading, each a [`Comparison`] of a measurement with
//! its prediction (or none when the run gives nothing to read).
use super::scale_invariance::{cos_reading, dead, dead_criterion, epsilon};
use super::{
    bias_gradient, ema_reading, no_decay_laws, probe_bars, radial_step, relu_shift, Comparison,
};
use crate::metrics::drift::xi;
use crate::metrics::weights::NO_DECAY_ANGLE_EXPONENT;
use crate::metrics::weights::NO_DECAY_NORM_EXPONENT;
use crate::protocol::{BnMode, LayerSnapshot};
use crate::ui::format::{channel_list, num};
use crate::ui::state::{LayerState, RunState};

/// The lab rows for `layer` in `state`.
pub fn comparisons(state: &RunState, layer: &LayerState) -> Vec<Comparison> {
    let Some(latest) = &layer.latest else {
        return Vec::new();
    };
    let index = state.layers.iter().position(|l| l.name == layer.name);
    let mut rows = vec![drift(layer, latest)];
    rows.extend(dead_channels(state, latest));
    rows.extend(relu(latest));
    rows.extend(ema(layer));
    rows.extend(folding(state));
    rows.extend(bias(latest));
    rows.extend(index.and_then(|i| population(state, i)));
    rows.extend(three_way(state));
    rows.extend(index.map(|i| probe(state, i)).unwrap_or_default());
    rows.push(radial(state, latest));
    rows.extend(no_decay(state, layer));
    rows.push(angular(state, latest));
    rows.push(cosine(state, latest));
    rows
}

fn drift(layer: &LayerState, latest: &LayerSnapshot) -> Comparison {
    let d = f64::from(latest.summary.drift);
    let floor = layer.noise_floor();
    let note = match floor {
        Some(f) => format!("Ξ = (D/D0)² = {:.2} (healthy 1-2)", xi(d * d, f * f)),
        None => "D0 needs successive steps (live runs)".into(),
    };
    Comparison::new("drift D vs floor D0", d, floor, note)
}

/// Channels weight decay has switched off (`metrics::dead`), named; none: no row.
fn dead_channels(state: &RunState, latest: &LayerSnapshot) -> Option<Comparison> {
    let dead = dead(latest, epsilon(state));
    if dead.is_empty() {
        return None;
    }
    let note = format!(
        "{} of {}: {}; weight decay shrinks what the loss stopped using; left out of η/‖w‖² \
         and max|cos|",
        channel_list(&dead, 40),
        latest.gamma.len(),
        dead_criterion()
    );
    Some(Comparison::new(
        "dead channels",
        dead.len() as f64,
        None,
        note,
    ))
}

fn relu(latest: &LayerSnapshot) -> Vec<Comparison> {
    let Some((active, active_pred, mean, mean_pred, silent)) = relu_shift(latest) else {
        return Vec::new();
    };
    vec![
        Comparison::new(
            "ReLU active fraction",
            active,
            Some(active_pred),
            format!("Φ(β/|γ|); {silent} channels never active (< 1%)"),
        ),
        Comparison::new(
            "ReLU output mean",
            mean,
            Some(mean_pred),
            "rectified Gaussian N(β, γ²)",
        ),
    ]
}

fn ema(layer: &LayerState) -> Vec<Comparison> {
    let Some(ema) = ema_reading(layer) else {
        return Vec::new();
    };
    let noise_note = format!(
        "√(m/(2-m)·v·(1+(1-m)φ)/(1-(1-m)φ)), v the batch-mean noise, φ = {:.2} its lag-1 \
         correlation",
        ema.batch_correlation
    );
    let lag_note = match (ema.lag, ema.best_momentum) {
        (Some(_), Some(best)) => format!("(1-m)/m; m* ≈ {best:.3} for this drift"),
        _ => "no trend in the batch means to lag behind".into(),
    };
    vec![
        Comparison::new(
            "running-mean noise",
            ema.noise,
            Some(ema.noise_predicted),
            noise_note,
        ),
        Comparison::new(
            "running-mean lag (steps)",
            ema.lag.unwrap_or(f64::NAN),
            Some(ema.lag_predicted),
            lag_note,
        ),
    ]
}

fn folding(state: &RunState) -> Option<Comparison> {
    let f = state.last_folding.as_ref()?;
    let note = format!(
        "float rounding (~1e-6); {:.2}x faster folded (F to rerun)",
        f.unfolded_us_per_image / f.folded_us_per_image
    );
    Some(Comparison::new(
        "folded conv+BN max |Δlogit|",
        f64::from(f.max_abs_diff),
        Some(0.0),
        note,
    ))
}

fn bias(latest: &LayerSnapshot) -> Option<Comparison> {
    let (measured, predicted) = bias_gradient(latest)?;
    let note = match latest.mode {
        BnMode::Train => "train mode: the bias cancels, ∇b ≈ 0",
        BnMode::Eval => "eval mode: ∇b = (γ/σ_R)∇β, a phantom gradient",
    };
    Some(Comparison::new(
        "bias grad |∇b|/|∇β|",
        measured,
        Some(predicted),
        note,
    ))
}

fn population(state: &RunState, index: usize) -> Option<Comparison> {
    let p = state.last_population.as_ref()?;
    let l = p.layers.get(index)?;
    let note = format!(
        "1-1/n_eff, n_eff {}; {} batches; EMA var/σ²_pop {} (step {}, P a A)",
        num(l.n_eff, 3),
        p.order.name(),
        // A dead channel's σ²_pop of 1e-44 makes this ratio astronomical: digits, not 45 of them.
        num(l.running_var_ratio, 3),
        p.step
    );
    Some(Comparison::new(
        "batch var σ²_B/σ²_pop",
        l.var_ratio,
        Some(l.predicted_ratio),
        note,
    ))
}

fn three_way(state: &RunState) -> Option<Comparison> {
    let e = state.last_three_way.as_ref()?;
    let precise = e.precise_stats?;
    let note = format!(
        "batch stats {:.1}% (step {}): EMA-Precise = EMA staleness, batch-Precise = train/test \
         mismatch",
        100.0 * e.batch_stats.accuracy,
        e.step
    );
    Some(Comparison::new(
        "held-out acc EMA vs PreciseBN",
        f64::from(e.running_stats.accuracy),
        Some(f64::from(precise.accuracy)),
        note,
    ))
}

/// The probe's three bars, as fractions of the longest.
fn probe(state: &RunState, index: usize) -> Vec<Comparison> {
    let Some((step, bars)) = probe_bars(state, index) else {
        return Vec::new();
    };
    let longest = bars.train.max(bars.stop_gradient).max(bars.eval);
    let bar = |x: f64| if longest > 0.0 { x / longest } else { 0.0 };
    let train_note = format!(
        "BN cancels the bias: |Σ∂L/∂h|/Σ|∂L/∂h| ≤ {:.0e} (step {step}, b)",
        bars.train_cancellation
    );
    vec![
        Comparison::new("probe ∇b, train mode", bars.train, Some(0.0), train_note)
            .with_bar(bar(bars.train)),
        Comparison::new(
            "probe ∇b, stop-gradient",
            bars.stop_gradient,
            Some(bars.stop_gradient_predicted),
            "(γ/σ̃_B)∇β: batch stats held constant",
        )
        .with_bar(bar(bars.stop_gradient)),
        Comparison::new(
            "probe ∇b, eval mode",
            bars.eval,
            Some(bars.eval_predicted),
            "(γ/σ_R)∇β: the phantom gradient",
        )
        .with_bar(bar(bars.eval)),
    ]
}

fn radial(state: &RunState, latest: &LayerSnapshot) -> Comparison {
    let (radial, predicted) = radial_step(state, latest);
    let note = format!(
        "cos(w, Δw); tangential {:.3}{}",
        (1.0 - radial * radial).max(0.0).sqrt(),
        if predicted.is_some() {
            ""
        } else {
            "; momentum: the norm oscillates"
        }
    );
    Comparison::new("radial part of a step", radial, predicted, note)
}

fn no_decay(state: &RunState, layer: &LayerState) -> Option<Comparison> {
    let laws = no_decay_laws(state, layer)?;
    let note = format!(
        "θ ~ t^-1/2, ‖w‖ ~ t^1/4 (‖w‖ slope {:.3} vs {}) while gradients keep their size; as \
         the loss falls θ drops faster and ‖w‖ stops growing",
        laws.norm_exponent, NO_DECAY_NORM_EXPONENT
    );
    Some(Comparison::new(
        "θ log-log slope (no decay)",
        laws.angle_exponent,
        Some(NO_DECAY_ANGLE_EXPONENT),
        note,
    ))
}

fn angular(state: &RunState, latest: &LayerSnapshot) -> Comparison {
    let theta = f64::from(latest.summary.angular_update);
    let note = match state.theta_star() {
        Some(t) => format!("θ* = √(2ηλ/(1+μ)); ratio {:.2}", theta / t),
        None if state.no_decay_sgd() => "no weight decay: no θ*, the t^-1/2 law".into(),
        None => "no θ* for Adam".into(),
    };
    Comparison::new("angular update (rad/step)", theta, state.theta_star(), note)
}

/// max |cos(w, g)| over the live channels beside BN's ε residual predicted for that channel:
/// "ε-dominated" in train mode is told apart from eval mode (`scale_invariance`).
fn cosine(state: &RunState, latest: &LayerSnapshot) -> Comparison {
    let reading = cos_reading(latest, epsilon(state));
    Comparison::new(
        "max |cos(w, grad)|",
        reading.measured,
        reading.predicted,
        reading.note(),
    )
}
