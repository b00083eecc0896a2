//! Reading a layer's cos(w, g) and its dead channels (BN-METRICS §5): in train mode BN leaves
//! the ε residual γ(∂L/∂γ)ε/(σ²_B+ε) in w·∇_w L, so the cosine is predicted per channel and a
//! large one late in a run is "ε-dominated" (σ²_B shrunk toward ε), not a layer in eval mode.
use crate::metrics::dead::{dead_channels, DEAD_SIGNAL};
use crate::metrics::weights::epsilon_cosine;
use crate::metrics::BN_EPSILON;
use crate::protocol::{BnMode, LayerSnapshot};
use crate::ui::state::RunState;

/// σ²_B within this many ε: BN's ε is no longer small next to the variance (BN-METRICS §5).
pub const EPSILON_DOMINATED_VAR: f64 = 100.0;
/// Measured and predicted cosines agree within this fraction of the larger of them ...
const AGREE_RELATIVE: f64 = 0.1;
/// ... plus this much: f32 rounding of the gradients (about 1e-6 in the built-in engine).
const AGREE_ABSOLUTE: f64 = 1e-5;

/// The run's BN ε (its header's conventions; PyTorch's default without one).
pub fn epsilon(state: &RunState) -> f64 {
    state
        .header
        .as_ref()
        .map(|h| h.conventions.epsilon)
        .filter(|e| e.is_finite() && *e >= 0.0)
        .unwrap_or(BN_EPSILON)
}

/// The layer's dead channels (`metrics::dead`), in channel order; empty without γ and σ²_B.
pub fn dead(layer: &LayerSnapshot, epsilon: f64) -> Vec<usize> {
    dead_channels(&layer.gamma, &layer.batch_var, epsilon).unwrap_or_default()
}

/// Help text stating the dead-channel criterion (the help overlay and the lab agree).
pub fn dead_criterion() -> String {
    format!("BN output std |γ|σ_B/√(σ²_B+ε) < {DEAD_SIGNAL}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CosVerdict {
    /// Normalised with running statistics: not scale invariant, cos of order 0.1.
    EvalMode,
    /// Train mode, the predicted ε residual, on a channel whose σ²_B is within 100ε.
    EpsilonDominated,
    /// Train mode, the predicted ε residual, σ²_B ≫ ε.
    EpsilonResidual,
    /// Train mode, yet not the predicted residual: something else feeds this gradient.
    Unexplained,
    /// Train mode, but the stream has no ‖g_c‖ (older recordings): nothing to predict with.
    Unpredicted,
}

/// The layer's largest |cos(w_c, g_c)| over its live channels, beside the ε residual's
/// prediction for the same channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosReading {
    /// That channel; None when the snapshot has no per-channel cosines (the summary's max).
    pub channel: Option<usize>,
    pub measured: f64,
    pub predicted: Option<f64>,
    /// σ²_B/ε of that channel.
    pub var_over_eps: Option<f64>,
    pub verdict: CosVerdict,
}

/// Reads `layer`'s cosines. Dead channels are left out: their filters are subnormal numbers
/// whose cosine is rounding (0.8 measured), and they have a row of their own.
pub fn cos_reading(layer: &LayerSnapshot, epsilon: f64) -> CosReading {
    let dead = dead(layer, epsilon);
    let worst = (layer.weight_grad_cos.iter().enumerate())
        .filter(|(c, v)| v.is_finite() && dead.binary_search(c).is_err())
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(c, &v)| (c, f64::from(v)));
    let Some((c, measured)) = worst else {
        let verdict = match layer.mode {
            BnMode::Eval => CosVerdict::EvalMode,
            BnMode::Train => CosVerdict::Unpredicted,
        };
        let measured = f64::from(layer.summary.max_abs_cos);
        return CosReading {
            channel: None,
            measured,
            predicted: None,
            var_over_eps: None,
            verdict,
        };
    };
    let at = |xs: &[f32]| xs.get(c).map(|&x| f64::from(x));
    let var = at(&layer.batch_var).filter(|_| layer.mode == BnMode::Train);
    // The residual is a train-mode formula: in eval mode there is nothing to predict.
    let predicted = (|| {
        let (gamma, grad_gamma) = (at(&layer.gamma)?, at(&layer.grad_gamma)?);
        let (w, g) = (at(&layer.weight_norm)?, at(&layer.weight_grad_norm)?);
        epsilon_cosine(gamma, grad_gamma, var?, epsilon, w, g)
    })();
    let var_over_eps = var.filter(|_| epsilon > 0.0).map(|v| v / epsilon);
    let verdict = match (layer.mode, predicted) {
        (BnMode::Eval, _) => CosVerdict::EvalMode,
        (BnMode::Train, None) => CosVerdict::Unpredicted,
        (BnMode::Train, Some(p)) if !agree(measured, p) => CosVerdict::Unexplained,
        (BnMode::Train, Some(_)) if var_over_eps.is_some_and(|r| r <= EPSILON_DOMINATED_VAR) => {
            CosVerdict::EpsilonDominated
        }
        (BnMode::Train, Some(_)) => CosVerdict::EpsilonResidual,
    };
    CosReading {
        channel: Some(c),
        measured: measured.abs(),
        predicted: predicted.map(f64::abs),
        var_over_eps,
        verdict,
    }
}

/// Signed cosines that agree: a residual of the wrong sign does not.
fn agree(measured: f64, predicted: f64) -> bool {
    (measured - predicted).abs()
        <= AGREE_RELATIVE * measured.abs().max(predicted.abs()) + AGREE_ABSOLUTE
}

impl CosReading {
    /// One line for the lab: which channel, and what it means.
    pub fn note(&self) -> String {
        let at = match (self.channel, self.var_over_eps) {
            (Some(c), Some(r)) => format!("c{c}, σ²_B = {}ε: ", crate::ui::format::num(r, 2)),
            (Some(c), None) => format!("c{c}: "),
            (None, _) => String::new(),
        };
        let reading = match self.verdict {
            CosVerdict::EvalMode => "not normalised: eval mode (running statistics)",
            CosVerdict::EpsilonDominated => {
                "ε-dominated (σ²_B near ε): BN's ε residual γ(∂L/∂γ)ε/(σ²_B+ε)/(‖w‖‖g‖), as \
                 predicted; the layer is normalised"
            }
            CosVerdict::EpsilonResidual => {
                "BN's ε residual γ(∂L/∂γ)ε/(σ²_B+ε)/(‖w‖‖g‖), as predicted"
            }
            CosVerdict::Unexplained => {
                "not BN's ε residual: this filter's gradient has another radial part"
            }
            CosVerdict::Unpredicted => {
                "BN's ε residual γ(∂L/∂γ)ε/(σ²_B+ε)/(‖w‖‖g‖); no ‖g‖ in this stream to predict it"
            }
        };
        format!("{at}{reading}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::synthetic;

    fn train_layer() -> LayerSnapshot {
        let mut state = RunState::new();
        for e in &synthetic::run(10, 1) {
            state.apply(e);
        }
        state.layers[0].latest.clone().expect("a snapshot")
    }

    /// Block 3 of a weight-decay run (5e-2, digits, step 3000): channel 4 has σ²_B = 10.8ε and
    /// cos -0.1819 where the ε residual predicts -0.1816; a dead channel's 0.8 is left out.
    #[test]
    fn a_train_layer_near_epsilon_reads_epsilon_dominated_not_eval_mode() {
        let mut layer = train_layer();
        let c = layer.gamma.len();
        layer.gamma = vec![1.0; c];
        layer.grad_gamma = vec![1e-3; c];
        layer.batch_var = vec![1.0; c];
        layer.weight_norm = vec![1.0; c];
        layer.weight_grad_norm = vec![0.1; c];
        layer.weight_grad_cos = vec![1e-7; c];
        (layer.gamma[4], layer.grad_gamma[4], layer.batch_var[4]) = (0.307, -0.01584, 1.08e-4);
        (layer.weight_norm[4], layer.weight_grad_norm[4]) = (0.108, 0.021);
        layer.weight_grad_cos[4] = -0.1819;
        (layer.gamma[7], layer.batch_var[7], layer.weight_grad_cos[7]) = (6.9e-8, 8e-17, -0.8166);
        let reading = cos_reading(&layer, BN_EPSILON);
        assert_eq!(reading.channel, Some(4));
        assert_eq!(reading.verdict, CosVerdict::EpsilonDominated);
        let predicted = reading.predicted.expect("a prediction");
        let expected = 0.307 * 0.01584 * (1e-5 / 1.18e-4) / (0.108 * 0.021);
        assert!(
            (predicted - expected).abs() < 1e-4 * expected,
            "{predicted}"
        );
        assert!(reading.note().contains("ε-dominated"), "{}", reading.note());
        // The same numbers in eval mode: not normalised.
        layer.mode = BnMode::Eval;
        let reading = cos_reading(&layer, BN_EPSILON);
        assert_eq!(
            (reading.verdict, reading.predicted),
            (CosVerdict::EvalMode, None)
        );
        assert_eq!(
            reading.note(),
            "c4: not normalised: eval mode (running statistics)"
        );
        // A train-mode cosine of the wrong sign is not the residual.
        layer.mode = BnMode::Train;
        layer.weight_grad_cos[4] = 0.1819;
        assert_eq!(
            cos_reading(&layer, BN_EPSILON).verdict,
            CosVerdict::Unexplained
        );
        // Far from ε: the residual, not ε-dominated.
        layer.batch_var[4] = 1.0;
        let residual =
            crate::metrics::weights::epsilon_cosine(0.307, -0.01584, 1.0, BN_EPSILON, 0.108, 0.021);
        layer.weight_grad_cos[4] = residual.expect("norms") as f32;
        assert_eq!(
            cos_reading(&layer, BN_EPSILON).verdict,
            CosVerdict::EpsilonResidual
        );
        // A stream without ‖g‖ has no prediction.
        layer.weight_grad_norm.clear();
        let reading = cos_reading(&layer, BN_EPSILON);
        assert_eq!(
            (reading.verdict, reading.predicted),
            (CosVerdict::Unpredicted, None)
        );
    }

    #[test]
    fn a_summary_only_snapshot_reads_the_summary() {
        let mut layer = train_layer();
        layer.weight_grad_cos.clear();
        layer.summary.max_abs_cos = 0.2;
        let reading = cos_reading(&layer, BN_EPSILON);
        assert_eq!(
            (reading.channel, reading.measured),
            (None, f64::from(0.2f32))
        );
        assert_eq!(reading.verdict, CosVerdict::Unpredicted);
    }
}
