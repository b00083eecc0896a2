//! Batch statistics of correlated values (BN-METRICS.md, section 3).
//!
//! For any stationary correlation, E\[σ²_B\] = σ²(1 - 1/n_eff) exactly, with σ²_B the BIASED
//! batch variance and n_eff = σ²/Var(μ_B). Bessel's n/(n - 1) fixes only the i.i.d. case
//! (n_eff = n); with correlated values (video frames, class-sorted data, spatial correlation)
//! the batch variance underestimates the population variance by much more.

use super::moments::moments_f64;

/// E\[σ²_B\]/σ² = 1 - Var(μ_B)/σ² for n consecutive values of an AR(1) series with lag-1
/// correlation `rho` (-1 <= ρ <= 1), using the exact Var(μ_B) = (σ²/n)(1 + (2/n)S),
/// S = Σ_{k=1}^{n-1} (n - k)ρ^k = [nρ(1 - ρ) - ρ(1 - ρⁿ)]/(1 - ρ)².
/// Checks: (32, 0.5) -> 0.910, (32, 0.9) -> 0.576, (8, 0.9) -> 0.227; ρ = 0 gives (n - 1)/n.
pub fn expected_biased_var_ratio_ar1(n: usize, rho: f64) -> f64 {
    1.0 - 1.0 / n_eff_ar1(n, rho)
}

/// Effective sample size σ²/Var(μ_B) of n consecutive AR(1) values (exact; for large n it
/// tends to n(1 - ρ)/(1 + ρ)). NaN for n = 0.
pub fn n_eff_ar1(n: usize, rho: f64) -> f64 {
    let nf = n as f64;
    let s = if rho == 1.0 {
        // The limit of the closed form (which is 0/0 here): Σ (n - k) = n(n - 1)/2.
        nf * (nf - 1.0) / 2.0
    } else {
        (nf * rho * (1.0 - rho) - rho * (1.0 - rho.powf(nf))) / ((1.0 - rho) * (1.0 - rho))
    };
    nf / (1.0 + 2.0 / nf * s)
}

/// Population mean and variance estimated from K batches of equal size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PopulationEstimate {
    pub mean: f64,
    pub var: f64,
}

/// PreciseBN's population statistics (fvcore's estimator) from per-batch means and BIASED
/// variances: mean = mean_B\[μ_B\], σ²_pop = mean_B\[σ²_B + μ_B²\] - (mean_B\[μ_B\])².
///
/// Computed in the algebraically identical form mean_B\[σ²_B\] + Var_B(μ_B) (law of total
/// variance), which does not cancel catastrophically when |mean| >> std. NaN when empty.
///
/// # Panics
/// If the slices have different lengths.
pub fn population_stats(batch_means: &[f64], batch_vars_biased: &[f64]) -> PopulationEstimate {
    assert_eq!(
        batch_means.len(),
        batch_vars_biased.len(),
        "one mean and one variance per batch"
    );
    let means = moments_f64(batch_means);
    let mean_var = moments_f64(batch_vars_biased).mean;
    PopulationEstimate {
        mean: means.mean,
        var: mean_var + means.var,
    }
}

/// Effective batch size n_eff = σ²_pop/Var_t(μ_B): the number of independent values a batch is
/// worth. Predicts mean_t σ²_B/σ²_pop = 1 - 1/n_eff.
pub fn n_eff(pop_var: f64, var_of_batch_means: f64) -> f64 {
    pop_var / var_of_batch_means
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::moments::moments;
    use crate::metrics::test_util::{assert_close, Gaussian};

    #[test]
    fn documented_ar1_ratios() {
        assert_close(expected_biased_var_ratio_ar1(32, 0.5), 0.910, 5e-4);
        assert_close(expected_biased_var_ratio_ar1(32, 0.9), 0.576, 5e-4);
        assert_close(expected_biased_var_ratio_ar1(8, 0.9), 0.227, 5e-4);
    }

    #[test]
    fn closed_form_matches_the_direct_sum() {
        for n in [1_usize, 2, 8, 32, 1000] {
            assert_close(
                expected_biased_var_ratio_ar1(n, 0.0),
                (n as f64 - 1.0) / n as f64,
                1e-15,
            );
            for rho in [-0.7_f64, 0.3, 0.9, 0.999, 1.0] {
                let s: f64 = (1..n).map(|k| (n - k) as f64 * rho.powi(k as i32)).sum();
                let direct = n as f64 / (1.0 + 2.0 / n as f64 * s);
                assert_close(n_eff_ar1(n, rho), direct, 1e-9 * direct);
            }
        }
        assert_close(n_eff_ar1(32, 1.0), 1.0, 1e-15);
        // Large n: n(1 - ρ)/(1 + ρ).
        assert_close(n_eff_ar1(1_000_000, 0.5), 1e6 / 3.0, 1.0);
    }

    #[test]
    fn population_estimator_on_correlated_batches() {
        // Batches of 32 consecutive values of a stationary AR(1) series, ρ = 0.95, σ² = 9.
        let (n, batches, rho, sigma) = (32, 4000, 0.95, 3.0);
        let mut gauss = Gaussian::new(11);
        let innovation_std = sigma * (1.0_f64 - rho * rho).sqrt();
        let mut x = sigma * gauss.sample();
        let (mut means, mut vars) = (Vec::new(), Vec::new());
        for _ in 0..batches {
            let batch: Vec<f32> = (0..n)
                .map(|_| {
                    x = rho * x + innovation_std * gauss.sample();
                    (4.0 + x) as f32
                })
                .collect();
            let m = moments(&batch);
            means.push(m.mean);
            vars.push(m.var);
        }
        // Biased batch variances average 9·0.380 = 3.42 (BN-METRICS.md's 3.53 is that times
        // n/(n - 1), the Bessel-corrected value), far below the population's 9.
        let mean_batch_var = moments_f64(&vars).mean;
        let ratio = expected_biased_var_ratio_ar1(n, rho);
        assert_close(ratio, 0.380, 5e-4);
        assert_close(mean_batch_var, 9.0 * ratio, 0.03 * 9.0 * ratio);
        let pop = population_stats(&means, &vars);
        assert_close(pop.var, 9.0, 0.04 * 9.0);
        assert_close(pop.mean, 4.0, 0.1);
        let measured = n_eff(pop.var, moments_f64(&means).var);
        let predicted = n_eff_ar1(n, rho);
        assert_close(measured, predicted, 0.06 * predicted);
    }

    #[test]
    fn population_estimator_is_the_fvcore_formula() {
        let (means, vars) = ([1.0, 2.0, 4.0], [0.5, 1.5, 1.0]);
        let mean_sq: f64 = means.iter().zip(&vars).map(|(m, v)| v + m * m).sum::<f64>() / 3.0;
        let grand_mean = 7.0 / 3.0;
        let pop = population_stats(&means, &vars);
        assert_close(pop.mean, grand_mean, 1e-15);
        assert_close(pop.var, mean_sq - grand_mean * grand_mean, 1e-14);
        assert!(population_stats(&[], &[]).var.is_nan());
    }
}
