//! EMA running statistics: lag, noise and the momentum trade-off (BN-METRICS.md, section 2).
//!
//! Convention (PyTorch/dfdx): `running <- (1 - m)·running + m·batch`, m = 0.1 by default
//! (Keras' momentum 0.99 is m = 0.01). The running variance averages the UNBIASED batch
//! variance σ²_B·n/(n - 1). After t steps a batch k steps old has weight m(1 - m)^k.
//! "Running" values below are POST-update unless stated: what the layer holds after step t.

use super::moments::unbiased_from_biased;

/// One EMA step: `(1 - m)·running + m·batch` (the order of operations matches PyTorch).
pub fn ema_update(running: f64, batch: f64, m: f64) -> f64 {
    (1.0 - m) * running + m * batch
}

/// One running-variance step as dfdx/PyTorch do it: the EMA of the UNBIASED batch variance
/// `batch_var_biased·n/(n - 1)`; `n` = N·H·W values per channel. NaN for n <= 1.
pub fn running_var_update(running_var: f64, batch_var_biased: f64, n: usize, m: f64) -> f64 {
    ema_update(running_var, unbiased_from_biased(batch_var_biased, n), m)
}

/// Inverts [`ema_update`]: the pre-update running value from the post-update one,
/// `(post - m·batch)/(1 - m)`. For the variance pass the UNBIASED batch variance as `batch`.
/// Needs m < 1 (at m = 1 the old value is gone; the result is then NaN or infinite). Rounding
/// errors grow by 1/(1 - m).
pub fn pre_update_from_post(post: f64, batch: f64, m: f64) -> f64 {
    (post - m * batch) / (1.0 - m)
}

/// Weight left on the initial running value after `steps` updates: (1 - m)^steps.
/// Below 1% after 44 steps for m = 0.1 and after 459 steps for m = 0.01.
pub fn initial_residue(m: f64, steps: u64) -> f64 {
    (1.0 - m).powf(steps as f64)
}

/// Mean age of the post-update running value in steps: Σ_k k·m(1 - m)^k = (1 - m)/m.
/// (The pre-update value, as used for drift, is one step older: 1/m.)
pub fn lag_steps(m: f64) -> f64 {
    (1.0 - m) / m
}

/// Steady-state bias of the post-update running mean, running - batch, under a linear drift of
/// the batch statistic by `slope_per_step`: -b(1 - m)/m (the running value lags by
/// [`lag_steps`]).
pub fn drift_bias(slope_per_step: f64, m: f64) -> f64 {
    -slope_per_step * lag_steps(m)
}

/// Stationary variance of the running value when the batch statistic has independent noise of
/// variance `v`: Σ_k m²(1 - m)^(2k)·v = m/(2 - m)·v. For the mean, v = σ²/n_eff.
pub fn noise_var(m: f64, v: f64) -> f64 {
    m / (2.0 - m) * v
}

/// [`noise_var`] when consecutive batch statistics have lag-1 correlation `phi`: multiplied by
/// (1 + (1 - m)φ)/(1 - (1 - m)φ). Exact when the autocorrelation at lag k is φ^k (AR(1)).
pub fn noise_var_correlated(m: f64, v: f64, phi: f64) -> f64 {
    let a = (1.0 - m) * phi;
    noise_var(m, v) * (1.0 + a) / (1.0 - a)
}

/// Mean squared error of the running mean under drift `b` per step and batch noise variance `v`:
/// squared lag bias plus noise, b²(1 - m)²/m² + m·v/(2 - m).
pub fn mse(m: f64, b: f64, v: f64) -> f64 {
    let bias = drift_bias(b, m);
    bias * bias + noise_var(m, v)
}

/// Approximate minimiser of [`mse`]: m* ≈ (4b²/v)^(1/3) (small-m expansion; e.g. 0.0159 where
/// the exact argmin is 0.0157), capped at 1 (no noise: follow the batch). 0 when b = 0: with no
/// drift every smaller momentum is better. NaN when b = v = 0 (every m is optimal).
pub fn optimal_momentum(b: f64, v: f64) -> f64 {
    let m = (4.0 * b * b / v).cbrt();
    if m > 1.0 {
        1.0
    } else {
        m
    }
}

/// Lag and noise of a running mean, measured over a window (see [`fit_lag_noise`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LagNoise {
    /// Slope of the least-squares line f(t) through the batch means, per step.
    pub slope: f64,
    /// Steps by which the running mean trails the line: mean_t(f(t) - μ_R,t)/slope. Compare with
    /// [`lag_steps`]. Not finite when the slope is 0; meaningless when it is small next to
    /// `noise_std` divided by the window length.
    pub lag_steps: f64,
    /// Standard deviation of μ_R,t - f(t) over the window: compare with sqrt([`noise_var`]).
    pub noise_std: f64,
    /// Standard deviation of μ_B,t - f(t): the batch noise to feed [`noise_var`] as sqrt(v).
    pub batch_noise_std: f64,
    /// Lag-1 autocorrelation φ of μ_B,t - f(t), for [`noise_var_correlated`]: about 0 for
    /// independent batches; positive when the batch means wander (the weights move under them).
    /// NaN for a window of fewer than 3 steps or without batch noise.
    pub batch_noise_lag1: f64,
}

/// Measures lag and noise of the running mean from a window of consecutive steps (section 2).
///
/// `batch_means[t]` is μ_B at step t and `running_means[t]` the running mean AFTER step t's
/// update (post-update, what the layer holds after training step t). A least-squares line
/// f(t) = a + slope·t is fitted to the batch means; the running mean, an EMA of them, follows
/// f(t - lag) plus noise. The lag is estimated from the residual f(t) - μ_R,t averaged over the
/// whole window, not read at one step: that averages the EMA noise (correlated over ~1/m steps),
/// so use a window W >> 1/m that starts well after the running mean was initialised. For a
/// linear drift this recovers (1 - m)/m (pre-update running means would give 1/m).
///
/// Returns None for fewer than 2 steps.
///
/// # Panics
/// If the two slices have different lengths.
pub fn fit_lag_noise(batch_means: &[f64], running_means: &[f64]) -> Option<LagNoise> {
    let (batch_means, _) = batch_means.as_chunks::<1>();
    let (running_means, _) = running_means.as_chunks::<1>();
    fit_lag_noise_lanes(batch_means, running_means).map(|[fit]| fit)
}

mod lanes;
pub use lanes::fit_lag_noise_lanes;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::moments::moments_f64;
    use crate::metrics::test_util::{assert_close, Gaussian};

    #[test]
    fn update_and_inverse() {
        assert_close(ema_update(1.0, 3.0, 0.1), 1.2, 1e-15);
        let (pre, batch, m) = (-0.37, 2.9, 0.1);
        let post = ema_update(pre, batch, m);
        assert_close(pre_update_from_post(post, batch, m), pre, 1e-15);
        // Variance: the inverse needs the unbiased batch variance that went in.
        let (pre_var, batch_var_biased, n) = (1.7, 0.8, 64);
        let post_var = running_var_update(pre_var, batch_var_biased, n, m);
        let unbiased = unbiased_from_biased(batch_var_biased, n);
        assert_close(pre_update_from_post(post_var, unbiased, m), pre_var, 1e-15);
    }

    #[test]
    fn running_var_uses_the_unbiased_batch_variance() {
        // dfdx: var.axpy(1 - m, batch_var, m·n/(n - 1)).
        let expected = 0.9 * 1.0 + 0.1 * 2.0 * 4.0 / 3.0;
        assert_close(running_var_update(1.0, 2.0, 4, 0.1), expected, 1e-15);
        assert!(running_var_update(1.0, 2.0, 1, 0.1).is_nan());
    }

    #[test]
    fn initial_residue_thresholds() {
        assert!(initial_residue(0.1, 44) < 0.01);
        assert!(initial_residue(0.1, 43) >= 0.01);
        assert!(initial_residue(0.01, 459) < 0.01);
        assert!(initial_residue(0.01, 458) >= 0.01);
        // Agrees with iterating the update from 1 towards a constant 0.
        let running = (0..44).fold(1.0, |run, _| ema_update(run, 0.0, 0.1));
        assert_close(running, initial_residue(0.1, 44), 1e-15);
    }

    #[test]
    fn lag_is_the_mean_age() {
        for m in [0.1, 0.01, 0.5] {
            let mean_age: f64 = (0..20_000).map(|k| k as f64 * m * (1.0 - m).powi(k)).sum();
            assert_close(lag_steps(m), mean_age, 1e-9 * mean_age);
        }
    }

    #[test]
    fn drift_bias_matches_a_simulated_ema() {
        let (b, m) = (0.02, 0.1);
        let mut running = 0.0;
        let mut batch = 0.0;
        for t in 0..1000 {
            batch = 5.0 + b * t as f64;
            running = ema_update(running, batch, m);
        }
        assert_close(running - batch, drift_bias(b, m), 1e-9);
    }

    /// Stationary variance of the EMA of a unit-variance AR(1) series with coefficient `phi`.
    fn simulated_ema_var(m: f64, phi: f64, seed: u64) -> f64 {
        let mut gauss = Gaussian::new(seed);
        let innovation_std = (1.0 - phi * phi).sqrt();
        let (mut x, mut running) = (gauss.sample(), 0.0);
        let (mut sum, mut sum_sq, mut count) = (0.0, 0.0, 0.0);
        for step in 0..400_000 {
            x = phi * x + innovation_std * gauss.sample();
            running = ema_update(running, x, m);
            if step >= 1000 {
                sum += running;
                sum_sq += running * running;
                count += 1.0;
            }
        }
        let mean = sum / count;
        sum_sq / count - mean * mean
    }

    #[test]
    fn noise_var_matches_a_simulated_ema() {
        let m = 0.1;
        let predicted = noise_var(m, 1.0);
        assert_close(simulated_ema_var(m, 0.0, 1), predicted, 0.03 * predicted);
        let predicted = noise_var_correlated(m, 1.0, 0.5);
        assert_close(predicted / noise_var(m, 1.0), 1.45 / 0.55, 1e-12);
        assert_close(simulated_ema_var(m, 0.5, 2), predicted, 0.03 * predicted);
        assert_eq!(noise_var_correlated(m, 2.0, 0.0), noise_var(m, 2.0));
    }

    #[test]
    fn optimal_momentum_is_near_the_numeric_argmin() {
        // Choose b²/v so that the formula gives 0.0159: 4b²/v = 0.0159³.
        let v = 1.0;
        let b = (0.0159_f64.powi(3) / 4.0).sqrt();
        let formula = optimal_momentum(b, v);
        assert_close(formula, 0.0159, 1e-12);
        let argmin = (1..=100_000)
            .map(|i| i as f64 * 1e-6)
            .min_by(|&x, &y| mse(x, b, v).total_cmp(&mse(y, b, v)))
            .expect("non-empty grid");
        assert_close(argmin, 0.0157, 5e-5);
        assert!(mse(argmin, b, v) < mse(formula, b, v));
        assert_eq!(optimal_momentum(1.0, 0.0), 1.0);
        assert_eq!(optimal_momentum(0.0, 1.0), 0.0);
    }

    #[test]
    fn fit_recovers_lag_and_noise_of_a_drifting_mean() {
        let (m, b, noise) = (0.1, 0.01, 0.002);
        let mut gauss = Gaussian::new(3);
        let mut running = 0.0;
        let (mut batch_means, mut running_means) = (Vec::new(), Vec::new());
        for t in 0..3000 {
            let batch = 1.0 + b * t as f64 + noise * gauss.sample();
            running = ema_update(running, batch, m);
            // Window: after the initial value has decayed (0.9^500 ~ 1e-23).
            if t >= 500 {
                batch_means.push(batch);
                running_means.push(running);
            }
        }
        let fit = fit_lag_noise(&batch_means, &running_means).expect("2500 steps fit a line");
        assert_close(fit.slope, b, 1e-5);
        assert_close(fit.lag_steps, lag_steps(m), 0.02);
        assert_close(fit.batch_noise_std, noise, 0.05 * noise);
        let predicted = noise_var(m, fit.batch_noise_std.powi(2)).sqrt();
        assert_close(fit.noise_std, predicted, 0.1 * predicted);
    }

    /// Batch means with AR(1) noise (φ = 0.5) around a drift: the fit reads φ, and the running
    /// mean's noise matches the correlated prediction, not the independent one.
    #[test]
    fn fit_reads_correlated_batch_noise() {
        let (m, phi, innovation) = (0.1, 0.5, 0.002);
        let mut gauss = Gaussian::new(5);
        let (mut running, mut e) = (0.0, 0.0);
        let (mut batch_means, mut running_means) = (Vec::new(), Vec::new());
        for t in 0..40_000 {
            e = phi * e + innovation * gauss.sample();
            let batch = 0.001 * t as f64 + e;
            running = ema_update(running, batch, m);
            if t >= 500 {
                batch_means.push(batch);
                running_means.push(running);
            }
        }
        let fit = fit_lag_noise(&batch_means, &running_means).expect("a fit");
        assert_close(fit.batch_noise_lag1, phi, 0.03);
        let v = fit.batch_noise_std.powi(2);
        let correlated = noise_var_correlated(m, v, fit.batch_noise_lag1).sqrt();
        assert_close(fit.noise_std, correlated, 0.05 * correlated);
        assert!(fit.noise_std > 1.3 * noise_var(m, v).sqrt());
    }

    #[test]
    fn fit_needs_two_steps() {
        assert_eq!(fit_lag_noise(&[1.0], &[1.0]), None);
        let fit = fit_lag_noise(&[0.0, 1.0], &[-1.0, 0.0]).expect("two steps define a line");
        assert_close(fit.slope, 1.0, 1e-15);
        assert_close(fit.lag_steps, 1.0, 1e-15);
        assert_close(fit.noise_std, 0.0, 1e-15);
    }

    /// The fit as it was first written: each residual stored, each sum its own pass.
    fn fit_lag_noise_in_stored_passes(
        batch_means: &[f64],
        running_means: &[f64],
    ) -> Option<LagNoise> {
        assert_eq!(
            batch_means.len(),
            running_means.len(),
            "batch_means and running_means must cover the same steps"
        );
        let len = batch_means.len();
        if len < 2 {
            return None;
        }
        let t_mean = (len - 1) as f64 / 2.0;
        let y_mean = moments_f64(batch_means).mean;
        let (sxy, sxx) = batch_means
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(sxy, sxx), (t, &y)| {
                let dt = t as f64 - t_mean;
                (sxy + dt * (y - y_mean), sxx + dt * dt)
            });
        let slope = sxy / sxx;
        let fit = |t: usize| y_mean + slope * (t as f64 - t_mean);
        let running_residual: Vec<f64> = running_means
            .iter()
            .enumerate()
            .map(|(t, &r)| r - fit(t))
            .collect();
        let batch_residual: Vec<f64> = batch_means
            .iter()
            .enumerate()
            .map(|(t, &y)| y - fit(t))
            .collect();
        let running = moments_f64(&running_residual);
        let batch = moments_f64(&batch_residual);
        Some(LagNoise {
            slope,
            lag_steps: -running.mean / slope,
            noise_std: running.var.sqrt(),
            batch_noise_std: batch.var.sqrt(),
            batch_noise_lag1: stored_lag1_autocorrelation(&batch_residual, batch.mean, batch.var),
        })
    }
    fn stored_lag1_autocorrelation(xs: &[f64], mean: f64, var: f64) -> f64 {
        if xs.len() < 3 || var <= 0.0 {
            return f64::NAN;
        }
        let cov: f64 = xs.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
        cov / ((xs.len() - 1) as f64 * var)
    }

    fn bits(fit: Option<LagNoise>) -> Option<[u64; 5]> {
        fit.map(|f| {
            [
                f.slope,
                f.lag_steps,
                f.noise_std,
                f.batch_noise_std,
                f.batch_noise_lag1,
            ]
            .map(f64::to_bits)
        })
    }

    /// Fusing the passes changes no bit: a drifting noisy channel (lag-1 correlated, too), a
    /// constant one (no batch noise: φ NaN), windows of 2 and 3 steps, and NaN data.
    #[test]
    fn fused_fit_is_the_stored_passes_fit() {
        let mut noise = Gaussian::new(21);
        let (mut running, mut previous) = (0.0, 0.0);
        let mut batch = Vec::new();
        let mut post = Vec::new();
        for t in 0..400 {
            previous = 0.6 * previous + noise.sample();
            let mean = 0.3 + 2e-3 * f64::from(t) + 0.05 * previous;
            running = ema_update(running, mean, 0.1);
            batch.push(mean);
            post.push(running);
        }
        let constant = vec![0.25; 50];
        let mut with_nan = batch.clone();
        with_nan[17] = f64::NAN;
        let cases: [(&[f64], &[f64]); 6] = [
            (&batch, &post),
            (&batch[..2], &post[..2]),
            (&batch[..3], &post[..3]),
            (&constant, &post[..50]),
            (&with_nan, &post),
            (&batch, &with_nan),
        ];
        for (batch, running) in cases {
            let fused = fit_lag_noise(batch, running);
            assert_eq!(
                bits(fused),
                bits(fit_lag_noise_in_stored_passes(batch, running))
            );
        }
        let drifting = fit_lag_noise(&batch, &post).expect("a fit");
        assert!(drifting.batch_noise_lag1 > 0.2, "{drifting:?}");
        let flat = fit_lag_noise(&constant, &post[..50]).expect("a fit");
        assert!(flat.batch_noise_lag1.is_nan());
    }
}
