//! ReLU of a Gaussian: the rectified-Gaussian model of post-ReLU statistics
//! (BN-METRICS.md, section 9). After BN the pre-activation of channel c is ≈ N(β_c, γ_c²), so
//! `rectified_gaussian(beta, gamma.abs())` predicts what
//! [`relu_moments`](super::moments::relu_moments) measures.

use super::clamp_non_negative;
use super::moments::ReluMoments;
use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// Moments of max(0, z) for z ~ N(μ, σ²), with a = μ/σ, Φ the normal CDF and φ its density:
/// mean = μΦ(a) + σφ(a), E\[y²\] = (μ² + σ²)Φ(a) + μσφ(a), active fraction P(z > 0) = Φ(a).
/// Zero mean: mean = σ/sqrt(2π) = 0.3989σ, var = σ²(1/2 - 1/(2π)) = 0.3408σ².
///
/// σ enters only through σ², so its sign is ignored; σ = 0 gives the deterministic limit
/// max(0, μ) with variance 0. Φ uses erfc (accurate tails). For μ > 0 the variance is
/// computed through max(0, z) = z + max(0, -z), which avoids E\[y²\] - mean² cancelling. For
/// μ < 0 the tail terms cancel: relative error 1e-13 at μ = -3σ, 2e-11 at -10σ (a dead unit).
pub fn rectified_gaussian(mu: f64, sigma: f64) -> ReluMoments {
    let sigma = sigma.abs();
    let a = mu / sigma;
    if sigma == 0.0 || a.is_infinite() {
        return ReluMoments {
            mean: clamp_non_negative(mu),
            var: 0.0,
            active_fraction: if mu.is_nan() {
                f64::NAN
            } else if mu > 0.0 {
                1.0
            } else {
                0.0
            },
        };
    }
    let var_in_sigma_units = if a > 0.0 {
        // y = z + max(0, -z): Var y = σ² + Var r - 2E[r²] - 2μE[r] with r = max(0, -z),
        // which is σ²(1 - h(-a) - g(-a)² - 2a·g(-a)); every term is small for large a.
        let (g, h) = standard_partial_moments(-a);
        1.0 - h - g * g - 2.0 * a * g
    } else {
        let (g, h) = standard_partial_moments(a);
        h - g * g
    };
    ReluMoments {
        mean: clamp_non_negative(mu * normal_cdf(a) + sigma * normal_pdf(a)),
        var: clamp_non_negative(sigma * sigma * var_in_sigma_units),
        active_fraction: normal_cdf(a),
    }
}

/// E\[max(0, a + Z)\] and E\[max(0, a + Z)²\] for Z ~ N(0, 1): aΦ(a) + φ(a) and
/// (a² + 1)Φ(a) + aφ(a).
fn standard_partial_moments(a: f64) -> (f64, f64) {
    let (cdf, pdf) = (normal_cdf(a), normal_pdf(a));
    (a * cdf + pdf, (a * a + 1.0) * cdf + a * pdf)
}

/// Φ(x) = erfc(-x/√2)/2, accurate in the lower tail.
fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * FRAC_1_SQRT_2)
}

/// φ(x) = exp(-x²/2)/sqrt(2π).
fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::moments::relu_moments;
    use crate::metrics::test_util::{assert_close, Gaussian};

    #[test]
    fn zero_mean_closed_forms() {
        for sigma in [1.0, 2.5] {
            let m = rectified_gaussian(0.0, sigma);
            assert_close(m.mean, sigma / (2.0 * PI).sqrt(), 1e-15 * sigma);
            assert_close(m.mean, 0.3989 * sigma, 5e-5 * sigma);
            let var = sigma * sigma * (0.5 - 0.5 / PI);
            assert_close(m.var, var, 1e-15 * var);
            assert_close(m.var, 0.3408 * sigma * sigma, 5e-5 * sigma * sigma);
            assert_eq!(m.active_fraction, 0.5);
        }
    }

    #[test]
    fn matches_monte_carlo() {
        const SAMPLES: usize = 400_000;
        for (seed, (mu, sigma)) in [(0.5, 1.0), (-1.2, 0.8), (2.0, 3.0)]
            .into_iter()
            .enumerate()
        {
            let mut gauss = Gaussian::new(100 + seed as u64);
            let xs: Vec<f32> = (0..SAMPLES)
                .map(|_| (mu + sigma * gauss.sample()) as f32)
                .collect();
            let measured = relu_moments(&xs);
            let predicted = rectified_gaussian(mu, sigma);
            // Standard errors from the sample: the mean's sqrt(var/N); the variance's
            // sqrt((m4 - var²)/N); the active fraction's sqrt(p(1 - p)/N). Allow 5 of them.
            let n = SAMPLES as f64;
            let m4 = xs
                .iter()
                .map(|&x| (f64::from(x).max(0.0) - measured.mean).powi(4))
                .sum::<f64>()
                / n;
            let p = predicted.active_fraction;
            assert_close(
                measured.mean,
                predicted.mean,
                5.0 * (measured.var / n).sqrt(),
            );
            assert_close(
                measured.var,
                predicted.var,
                5.0 * ((m4 - measured.var.powi(2)) / n).sqrt(),
            );
            assert_close(
                measured.active_fraction,
                p,
                5.0 * (p * (1.0 - p) / n).sqrt(),
            );
        }
    }

    #[test]
    fn both_variance_branches_agree_near_zero() {
        for a in [1e-3, 0.5, 2.0] {
            let (g, h) = standard_partial_moments(a);
            let direct = h - g * g;
            let reflected = rectified_gaussian(a, 1.0).var;
            assert_close(reflected, direct, 1e-14);
        }
        let left = rectified_gaussian(-1e-12, 1.0).var;
        let right = rectified_gaussian(1e-12, 1.0).var;
        assert_close(left, right, 1e-11);
    }

    #[test]
    fn tails_and_limits() {
        // Far right: y = z, so mean μ and variance σ² (no cancellation against μ² = 1e16).
        let m = rectified_gaussian(1e8, 1.0);
        assert_close(m.mean, 1e8, 1e-7);
        assert_close(m.var, 1.0, 1e-12);
        assert_eq!(m.active_fraction, 1.0);
        // Far left: a dead unit, tiny but positive mean; E[y] ~ σφ(a)/a².
        let m = rectified_gaussian(-10.0, 1.0);
        let asymptotic = normal_pdf(10.0) / 100.0 * (1.0 - 3.0 / 100.0);
        assert_close(m.mean, asymptotic, 0.01 * asymptotic);
        assert!(m.var > 0.0 && m.active_fraction > 0.0 && m.active_fraction < 1e-22);
        // σ = 0: deterministic.
        let m = rectified_gaussian(2.0, 0.0);
        assert_eq!((m.mean, m.var, m.active_fraction), (2.0, 0.0, 1.0));
        let m = rectified_gaussian(-2.0, -0.0);
        assert_eq!((m.mean, m.var, m.active_fraction), (0.0, 0.0, 0.0));
        assert_eq!(rectified_gaussian(0.0, 0.0).mean, 0.0);
        // The sign of σ does not matter; NaN propagates.
        assert_eq!(rectified_gaussian(0.3, -1.5), rectified_gaussian(0.3, 1.5));
        let m = rectified_gaussian(f64::NAN, 1.0);
        assert!(m.mean.is_nan() && m.var.is_nan() && m.active_fraction.is_nan());
        assert!(rectified_gaussian(f64::NAN, 0.0).mean.is_nan());
    }
}
