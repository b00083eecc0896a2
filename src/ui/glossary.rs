//! One line per symbol the dashboard shows (BN-METRICS.md has the derivations), for the help
//! overlay. Each line fits the overlay of an 80-column terminal (74 characters).

/// A symbol and its meaning, with Unicode and with `--ascii`.
pub struct Entry {
    pub term: &'static str,
    pub ascii_term: &'static str,
    pub meaning: &'static str,
    pub ascii_meaning: &'static str,
}

const fn entry(
    term: &'static str,
    ascii_term: &'static str,
    meaning: &'static str,
    ascii_meaning: &'static str,
) -> Entry {
    Entry {
        term,
        ascii_term,
        meaning,
        ascii_meaning,
    }
}

/// Terms are padded to this width.
pub const TERM_WIDTH: usize = 9;

pub const GLOSSARY: &[Entry] = &[
    entry(
        "D",
        "D",
        "drift √(d²+(r-1)²): RMS move of x̂, batch -> running stats",
        "drift sqrt(d^2+(r-1)^2): RMS move of x-hat, batch -> running",
    ),
    entry(
        "D0",
        "D0",
        "D's noise floor from the data: D0² = 1.5·(2/(2-m))/n_eff",
        "D's noise floor from the data: D0^2 = 1.5*(2/(2-m))/n_eff",
    ),
    entry(
        "Ξ",
        "Xi",
        "(D/D0)²: drift in units of its noise floor; healthy about 1-2",
        "(D/D0)^2: drift in units of its noise floor; healthy about 1-2",
    ),
    entry(
        "r",
        "r",
        "√(σ²_B+ε)/√(v_R+ε): batch over running std (pre-update)",
        "sqrt(var_B+eps)/sqrt(v_R+eps): batch / running std, pre-update",
    ),
    entry(
        "d",
        "d",
        "(μ_B-μ_R)/√(v_R+ε): batch minus running mean, in running stds",
        "(mu_B-mu_R)/sqrt(v_R+eps): batch - running mean, in running stds",
    ),
    entry(
        "θ",
        "ang",
        "a filter's angle moved in one step (rad), RMS over channels",
        "a filter's angle moved in one step (rad), RMS over channels",
    ),
    entry(
        "θ*",
        "ang*",
        "θ at the weight-decay equilibrium, √(2ηλ/(1+μ)) (coupled)",
        "ang at the weight-decay equilibrium, sqrt(2*lr*wd/(1+mom))",
    ),
    entry(
        "η/‖w‖²",
        "lr/|w|^2",
        "effective lr of a filter's direction; table: live median",
        "effective lr of a filter's direction; table: live median",
    ),
    entry(
        "cos(w,g)",
        "cos(w,g)",
        "filter vs its loss gradient: ≈ 0 when BN normalises",
        "filter vs its loss gradient: ~0 when BN normalises",
    ),
    entry(
        "dead",
        "dead",
        "BN output std |γ|σ_B/√(σ²_B+ε) < 0.01: γ ≈ 0 or σ²_B ≪ ε",
        "BN output std |gamma|sd_B/sqrt(var_B+eps) < 0.01",
    ),
    entry(
        "ε-dominated",
        "eps-dominated",
        "cos(w,g) = BN's ε residual as predicted, σ²_B ≤ 100ε",
        "cos(w,g) = BN's eps residual as predicted, var_B <= 100 eps",
    ),
];

/// The entry as one help line.
pub fn line(entry: &Entry, ascii: bool) -> String {
    let (term, meaning) = if ascii {
        (entry.ascii_term, entry.ascii_meaning)
    } else {
        (entry.term, entry.meaning)
    };
    format!("{term:<TERM_WIDTH$} {meaning}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::theory::scale_invariance::EPSILON_DOMINATED_VAR;

    #[test]
    fn every_line_fits_an_80_column_help_and_ascii_is_ascii() {
        for e in GLOSSARY {
            for ascii in [false, true] {
                let l = line(e, ascii);
                assert!(l.chars().count() <= 74, "{l}");
                assert!(!ascii || l.is_ascii(), "{l}");
            }
        }
        // The glossary states the thresholds the code uses.
        assert_eq!(EPSILON_DOMINATED_VAR, 100.0);
        assert_eq!(crate::metrics::dead::DEAD_SIGNAL, 0.01);
    }
}
