//! Dead channels: BatchNorm plus weight decay (BN-METRICS.md §5, §8). A filter the loss stops
//! needing gets no gradient back, so weight decay shrinks it towards 0, and γ with it; once
//! σ²_B falls below ε, BN no longer rescales it and the channel's output collapses to β. Such a
//! channel passes no signal, and it makes the layer's aggregates over channels blow up
//! (η/‖w_c‖² goes to infinity, cos(w_c, g_c) is rounding of subnormal numbers).

/// A channel is dead when its train-mode BN output carries less than this standard deviation
/// (a healthy channel passes about |γ| ≈ 1).
pub const DEAD_SIGNAL: f64 = 0.01;

/// The standard deviation of channel c's BN output in train mode: |γ|·σ_B/√(σ²_B + ε). Small
/// when γ ≈ 0 (the channel is switched off) or σ²_B ≪ ε (the filter shrank so far that BN
/// stopped normalising it: ‖w_c‖ tiny, batch variance tiny). NaN stays NaN.
pub fn passed_signal(gamma: f64, batch_var: f64, epsilon: f64) -> f64 {
    gamma.abs() * (batch_var / (batch_var + epsilon)).sqrt()
}

/// The dead channels of a layer: [`passed_signal`] below [`DEAD_SIGNAL`]. A non-finite channel
/// (a diverged run) is not dead. None when `gamma` and `batch_var` are missing or of different
/// lengths (a summary-only snapshot).
pub fn dead_channels(gamma: &[f32], batch_var: &[f32], epsilon: f64) -> Option<Vec<usize>> {
    if gamma.is_empty() || gamma.len() != batch_var.len() {
        return None;
    }
    Some(
        gamma
            .iter()
            .zip(batch_var)
            .enumerate()
            .filter(|(_, (&g, &v))| {
                passed_signal(f64::from(g), f64::from(v), epsilon) < DEAD_SIGNAL
            })
            .map(|(c, _)| c)
            .collect(),
    )
}

/// The median of the finite values (the upper one of an even count); None if there are none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut xs: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied()
}

/// The layer's effective learning rate η/‖w_c‖² as the median over its live channels (those not
/// in `dead`, which must be sorted): a dead filter's ‖w_c‖ of 1e-30 would make the mean infinite.
/// None when no live channel has a finite value.
pub fn live_median_effective_lr(lr: f64, weight_norm: &[f32], dead: &[usize]) -> Option<f64> {
    median(
        weight_norm
            .iter()
            .enumerate()
            .filter(|(c, _)| dead.binary_search(c).is_err())
            .map(|(_, &n)| super::weights::effective_lr(lr, f64::from(n).powi(2))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BN_EPSILON;

    /// The shapes seen in a run with weight decay 5e-2 on the digits (block 3 at step 3000):
    /// γ ≈ 0, or a filter shrunk until σ²_B ≪ ε; a small but working channel stays live.
    #[test]
    fn switched_off_and_collapsed_channels_are_dead_small_ones_are_not() {
        let gamma = [0.93, 3.7e-12, 1.0, 0.037, f32::NAN, 0.0];
        let var = [7.7e-4, 1.5e-25, 1e-12, 6.9e-6, 1.0, 1.0];
        assert_eq!(dead_channels(&gamma, &var, BN_EPSILON), Some(vec![1, 2, 5]));
        // γ = 1 on σ²_B = ε/9999 passes 0.01: the threshold is a standard deviation.
        let at = passed_signal(1.0, BN_EPSILON / 9999.0, BN_EPSILON);
        assert!((at - DEAD_SIGNAL).abs() < 1e-12, "{at}");
        assert_eq!(dead_channels(&gamma, &var[..3], BN_EPSILON), None);
        assert_eq!(dead_channels(&[], &[], BN_EPSILON), None);
    }

    #[test]
    fn the_effective_lr_leaves_dead_filters_out() {
        let norms = [0.5, 1e-30, 1.0, 2.0, 6e-8];
        // Live: 0.5, 1.0, 2.0 -> η/‖w‖² = 0.4, 0.1, 0.025; the median is 0.1.
        let median = live_median_effective_lr(0.1, &norms, &[1, 4]).expect("live channels");
        assert!((median - 0.1).abs() < 1e-12, "{median}");
        assert_eq!(live_median_effective_lr(0.1, &[1e-30], &[0]), None);
        assert_eq!(super::median([f64::NAN, 3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median([]), None);
    }
}
