//! Healthy ranges of the per-layer numbers: what the layers table highlights. The thresholds are
//! rules of thumb from BN-METRICS.md, stated here once so the help text and the table agree.
use crate::protocol::BnMode;
use crate::ui::theory::scale_invariance::{CosReading, CosVerdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Ok,
    Warn,
    Bad,
}

fn by_thresholds(x: f64, warn: f64, bad: f64) -> Health {
    if !x.is_finite() || x > bad {
        Health::Bad
    } else if x > warn {
        Health::Warn
    } else {
        Health::Ok
    }
}

/// Drift D against its noise floor D0 when known (Ξ = D²/D0²: about 1-2 is healthy), otherwise
/// against absolute limits.
pub fn drift(d: f64, floor: Option<f64>) -> Health {
    match floor {
        Some(f) if f.is_finite() && f > 0.0 => by_thresholds((d / f).powi(2), 4.0, 9.0),
        _ => by_thresholds(d, 0.1, 0.3),
    }
}

/// The range of r = σ_B/σ_R over channels: far from 1 means the running variance is stale.
pub fn r_range(min: f64, max: f64) -> Health {
    let worst = |r: f64| if r > 0.0 { r.ln().abs() } else { f64::INFINITY };
    by_thresholds(worst(min).max(worst(max)), 1.25f64.ln(), 2f64.ln())
}

/// The largest |d| over channels, in running standard deviations.
pub fn d_max(x: f64) -> Health {
    by_thresholds(x, 0.3, 1.0)
}

/// max |cos(w, g)|, judged by the layer's mode. In train mode it is BN's ε residual,
/// γ(∂L/∂γ)ε/((σ²_B+ε)‖w‖‖g‖) (`metrics::weights::epsilon_radial_gradient`), not rounding: about
/// 4e-5 early, then growing as weight decay shrinks the filters and σ²_B with them. In the shipped
/// recordings it runs 0.1-0.9x the largest ε/(σ²_B+ε), and 17% of a healthy run's train-mode
/// snapshots pass 1e-3; it is flagged only past 0.05, where ε is several % of σ²_B and BN no
/// longer fully normalises. In eval mode the layer is not normalised by its batch at all (0.1-0.2
/// in the recordings): past 1e-3 is worth seeing, though not an error in itself.
pub fn max_cos(x: f64, mode: BnMode) -> Health {
    match mode {
        BnMode::Train => by_thresholds(x, 0.05, f64::INFINITY),
        BnMode::Eval => by_thresholds(x, 1e-3, f64::INFINITY),
    }
}

/// max |cos(w, g)| over live channels read against BN's ε residual (`ui::theory::
/// scale_invariance`): in train mode the predicted residual is healthy however large
/// ("ε-dominated" included), one that is not the residual is worth a look; without a prediction,
/// and in eval mode, [`max_cos`]'s thresholds.
pub fn cos_reading(reading: &CosReading, mode: BnMode) -> Health {
    match reading.verdict {
        CosVerdict::EpsilonDominated | CosVerdict::EpsilonResidual => Health::Ok,
        CosVerdict::Unexplained => Health::Warn.max(max_cos(reading.measured, mode)),
        CosVerdict::EvalMode | CosVerdict::Unpredicted => max_cos(reading.measured, mode),
    }
}

/// Dead channels in a layer: worth seeing (weight decay switched them off), not an error.
pub fn dead_channels(count: usize) -> Health {
    if count > 0 {
        Health::Warn
    } else {
        Health::Ok
    }
}

/// Fraction of ReLU outputs that are positive: near 0 the channel is dying, near 1 it is linear.
pub fn relu_active(x: f64) -> Health {
    if !x.is_finite() || x < 0.01 {
        Health::Bad
    } else if !(0.05..=0.95).contains(&x) {
        Health::Warn
    } else {
        Health::Ok
    }
}

/// Any value that only has to be finite (loss, weight norm, γ, β ...).
pub fn finite(x: f64) -> Health {
    if x.is_finite() {
        Health::Ok
    } else {
        Health::Bad
    }
}

/// Help lines describing the highlights (shown in the help overlay; at most 74 characters, so
/// an 80-column terminal shows them whole).
pub const LEGEND: &[&str] = &[
    "D: warn when (D/D0)^2 > 4, bad > 9 (D0 known); else warn > 0.1, bad > 0.3",
    "r: warn outside [0.8, 1.25], bad outside [0.5, 2]",
    "|d|max: warn > 0.3, bad > 1",
    "max|cos(w,g)|, live channels: TRAIN ok when the predicted eps residual,",
    "  else warn (no prediction: > 0.05); EVAL warn > 1e-3 (not normalised)",
    "dead: warn when a layer has any (BN output std < 0.01, see above)",
    "ReLU active: warn outside [5%, 95%], bad below 1%; NaN/inf anywhere: bad",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_uses_the_noise_floor_when_known() {
        assert_eq!(drift(0.05, Some(0.04)), Health::Ok);
        assert_eq!(drift(0.10, Some(0.04)), Health::Warn);
        assert_eq!(drift(0.13, Some(0.04)), Health::Bad);
        assert_eq!(drift(0.05, None), Health::Ok);
        assert_eq!(drift(0.2, None), Health::Warn);
        assert_eq!(drift(f64::NAN, Some(0.04)), Health::Bad);
    }

    #[test]
    fn r_is_judged_on_a_log_scale() {
        assert_eq!(r_range(0.9, 1.1), Health::Ok);
        assert_eq!(r_range(0.7, 1.0), Health::Warn);
        assert_eq!(r_range(1.0, 1.3), Health::Warn);
        assert_eq!(r_range(0.4, 1.0), Health::Bad);
        assert_eq!(r_range(0.0, 1.0), Health::Bad);
    }

    #[test]
    fn relu_and_cos() {
        assert_eq!(relu_active(0.5), Health::Ok);
        assert_eq!(relu_active(0.03), Health::Warn);
        assert_eq!(relu_active(0.005), Health::Bad);
        assert_eq!(max_cos(1e-5, BnMode::Train), Health::Ok);
        // A healthy train-mode layer late in a run: the ε residual, not a problem.
        assert_eq!(max_cos(5e-3, BnMode::Train), Health::Ok);
        assert_eq!(max_cos(0.1, BnMode::Train), Health::Warn);
        assert_eq!(max_cos(5e-3, BnMode::Eval), Health::Warn);
        assert_eq!(max_cos(0.2, BnMode::Eval), Health::Warn);
        assert_eq!(finite(f64::INFINITY), Health::Bad);
    }

    #[test]
    fn legend_lines_fit_the_help_of_an_80_column_terminal() {
        for line in LEGEND {
            assert!(line.chars().count() <= 74, "{line}");
        }
    }
}
