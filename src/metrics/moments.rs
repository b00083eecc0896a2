//! Batch moments as BatchNorm computes them (BN-METRICS.md, "Notation" and section 9).
//!
//! Variances here are BIASED (divide by n): that is what BN normalises with. Use
//! [`unbiased_from_biased`] for what dfdx/PyTorch feed into the running variance.
//! Accumulation is f64 in two passes (mean, then squared deviations), accurate even when
//! |mean| >> std, with several partial sums so the loops vectorise.
//! An empty slice gives NaN moments.

use super::{clamp_non_negative, split_equal};

/// Mean and BIASED (population) variance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    pub mean: f64,
    pub var: f64,
}

/// Moments of ReLU(x) = max(0, x), and the fraction of x > 0 (section 9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReluMoments {
    pub mean: f64,
    /// Biased variance of max(0, x).
    pub var: f64,
    /// Fraction of values with x > 0 (a dead channel has 0).
    pub active_fraction: f64,
}

/// Mean and biased variance of `xs`.
pub fn moments(xs: &[f32]) -> Moments {
    two_pass(xs, |x| x)
}

/// Mean and biased variance of `xs` (f64 data, e.g. per-step batch statistics).
pub fn moments_f64(xs: &[f64]) -> Moments {
    moments_of(xs.iter().copied())
}

/// Per-channel moments of channel-major data: channel c is the c-th of `channels` equal
/// contiguous chunks, i.e. the engine's (C, N, H, W) activation layout.
///
/// # Panics
/// If `channels` is 0 or does not divide `xs.len()`.
pub fn channel_moments(xs: &[f32], channels: usize) -> Vec<Moments> {
    split_equal(xs, channels).map(moments).collect()
}

/// Moments of max(0, x) and the active fraction P(x > 0), measured on `xs`.
pub fn relu_moments(xs: &[f32]) -> ReluMoments {
    let Moments { mean, var } = two_pass(xs, relu);
    let active = xs.iter().filter(|&&x| x > 0.0).count();
    ReluMoments {
        mean,
        var,
        active_fraction: active as f64 / xs.len() as f64,
    }
}

/// [`relu_moments`] per channel of channel-major data (see [`channel_moments`]).
///
/// # Panics
/// If `channels` is 0 or does not divide `xs.len()`.
pub fn channel_relu_moments(xs: &[f32], channels: usize) -> Vec<ReluMoments> {
    split_equal(xs, channels).map(relu_moments).collect()
}

/// Unbiased variance from the biased one: `var * n/(n-1)` (Bessel's correction, what dfdx and
/// PyTorch feed into the running variance). NaN for n <= 1, where it is undefined (PyTorch
/// refuses to train BN on one value per channel).
pub fn unbiased_from_biased(var: f64, n: usize) -> f64 {
    if n <= 1 {
        return f64::NAN;
    }
    let n = n as f64;
    var * n / (n - 1.0)
}

/// max(0, x) that keeps NaN.
fn relu(x: f64) -> f64 {
    clamp_non_negative(x)
}

/// [`moments_of`] of `f(x)` over f32 data, with the sums in [`lane_sum`]: the engine runs this
/// over every activation of every step, so it must vectorise.
fn two_pass(xs: &[f32], f: impl Fn(f64) -> f64 + Copy) -> Moments {
    if xs.is_empty() {
        return Moments {
            mean: f64::NAN,
            var: f64::NAN,
        };
    }
    let n = xs.len() as f64;
    let mean = lane_sum(xs, f) / n;
    let var = lane_sum(xs, |x| {
        let dev = f(x) - mean;
        dev * dev
    }) / n;
    Moments { mean, var }
}

/// Σ g(x) in f64 with eight independent partial sums: no longer dependency chain than one sum
/// (so no less accurate), and the compiler can vectorise it.
fn lane_sum(xs: &[f32], g: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = xs.chunks_exact(lanes.len());
    let tail: f64 = chunks.remainder().iter().map(|&x| g(f64::from(x))).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += g(f64::from(x));
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Two-pass algorithm: the second pass sums squared deviations from the mean, so nothing
/// cancels when |mean| >> std (the mean's own rounding error adds only its square).
fn moments_of<I>(values: I) -> Moments
where
    I: Iterator<Item = f64> + Clone,
{
    let (count, sum) = values
        .clone()
        .fold((0_usize, 0.0), |(count, sum), x| (count + 1, sum + x));
    if count == 0 {
        return Moments {
            mean: f64::NAN,
            var: f64::NAN,
        };
    }
    let n = count as f64;
    let mean = sum / n;
    let sum_sq: f64 = values.map(|x| (x - mean) * (x - mean)).sum();
    Moments {
        mean,
        var: sum_sq / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_util::assert_close;

    #[test]
    fn moments_of_a_known_vector() {
        let m = moments(&[1.0, 2.0, 3.0, 4.0]);
        assert_close(m.mean, 2.5, 1e-15);
        assert_close(m.var, 1.25, 1e-15); // biased: 5/4, not 5/3
    }

    #[test]
    fn moments_accurate_with_large_offset() {
        // f32 values 1e6 + 0.25 k, k in -4..=4, all exactly representable: mean 1e6,
        // var = 0.0625 * mean(k^2) = 0.0625 * 60/9. A single-pass E[x^2] - E[x]^2, even in f64,
        // is off by ~1e-4 here (x^2 ~ 1e12).
        let xs: Vec<f32> = (0..90_000)
            .map(|i| 1.0e6 + 0.25 * ((i % 9) as f32 - 4.0))
            .collect();
        let m = moments(&xs);
        assert_close(m.mean, 1.0e6, 1e-9);
        let expected_var = 0.0625 * 60.0 / 9.0;
        assert_close(m.var, expected_var, 1e-12 * expected_var);
    }

    #[test]
    fn channel_moments_on_two_channels() {
        // (C=2, N=2, H=1, W=2): channel 0 is the first four values.
        let xs = [1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 30.0, 30.0];
        let m = channel_moments(&xs, 2);
        assert_eq!(m.len(), 2);
        assert_close(m[0].mean, 2.5, 1e-15);
        assert_close(m[0].var, 1.25, 1e-15);
        assert_close(m[1].mean, 20.0, 1e-15);
        assert_close(m[1].var, 100.0, 1e-12);
    }

    #[test]
    fn relu_moments_of_a_known_vector() {
        // max(0, x) = [0, 0, 1, 3]: mean 1, var (1 + 1 + 0 + 4)/4 = 1.5, active 2/4.
        let m = relu_moments(&[-2.0, 0.0, 1.0, 3.0]);
        assert_close(m.mean, 1.0, 1e-15);
        assert_close(m.var, 1.5, 1e-15);
        assert_close(m.active_fraction, 0.5, 0.0);
        let per_channel = channel_relu_moments(&[-1.0, -2.0, 5.0, 7.0], 2);
        assert_eq!(per_channel[0].active_fraction, 0.0);
        assert_eq!(per_channel[0].mean, 0.0);
        assert_close(per_channel[1].mean, 6.0, 1e-15);
        assert_close(per_channel[1].var, 1.0, 1e-15);
    }

    #[test]
    fn empty_and_non_finite_data_give_nan_without_panicking() {
        assert!(moments(&[]).mean.is_nan());
        assert!(moments(&[]).var.is_nan());
        assert!(relu_moments(&[]).active_fraction.is_nan());
        let m = moments(&[1.0, f32::NAN, 3.0]);
        assert!(m.mean.is_nan() && m.var.is_nan());
        assert!(relu_moments(&[1.0, f32::NAN]).mean.is_nan());
        assert!(moments(&[1.0, f32::INFINITY]).var.is_nan());
        let single = moments(&[7.0]);
        assert_eq!((single.mean, single.var), (7.0, 0.0));
    }

    #[test]
    fn unbiased_uses_bessel_correction() {
        assert_close(unbiased_from_biased(1.25, 4), 1.25 * 4.0 / 3.0, 1e-15);
        assert!(unbiased_from_biased(0.0, 1).is_nan());
        assert!(unbiased_from_biased(0.0, 0).is_nan());
    }
}
