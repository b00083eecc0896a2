//! Train/eval drift of one BN channel (BN-METRICS.md, section 1).
//!
//! With σ̃_B = sqrt(σ²_B + ε) (σ²_B the BIASED batch variance) and σ_R = sqrt(v_R + ε)
//! (v_R the running variance, as stored), Batch Renormalization's (Ioffe 2017)
//!
//! - r = σ̃_B / σ_R,  d = (μ_B - μ_R) / σ_R,  D = sqrt(d² + (r - 1)²).
//!
//! The running statistics must be the ones from BEFORE this step's update (dfdx updates them
//! inside `forward_mut`; see [`super::ema::pre_update_from_post`]).
//!
//! Why r and d: for every value x of the batch, with x̂_train = (x - μ_B)/σ̃_B and
//! x̂_eval = (x - μ_R)/σ_R,
//!
//! ```text
//! x̂_eval = (x - μ_B)/σ_R + (μ_B - μ_R)/σ_R = (σ̃_B/σ_R)·(x - μ_B)/σ̃_B + d = r·x̂_train + d,
//! ```
//!
//! exactly. So switching the layer from batch to running statistics changes each normalised
//! activation by (r - 1)·x̂_train + d. Over the batch x̂_train has mean 0 and mean square
//! σ²_B/(σ²_B + ε) ≈ 1, so the RMS change is sqrt(d² + (r - 1)²·σ²_B/(σ²_B + ε)) ≈ D
//! (exact for ε = 0), and |γ|·D in the layer's output. D stays finite as r -> 0.

/// Batch Renormalization's r and d, and the RMS normalised-activation change D.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drift {
    pub r: f64,
    pub d: f64,
    pub big_d: f64,
}

/// r, d and D for one channel (see the module docs). `batch_var_biased` is the biased batch
/// variance, `running_mean`/`running_var` the PRE-update running statistics.
pub fn drift(
    batch_mean: f64,
    batch_var_biased: f64,
    running_mean: f64,
    running_var: f64,
    eps: f64,
) -> Drift {
    let sigma_r = (running_var + eps).sqrt();
    let r = (batch_var_biased + eps).sqrt() / sigma_r;
    let d = (batch_mean - running_mean) / sigma_r;
    let e = r - 1.0;
    Drift {
        r,
        d,
        // Not `hypot`: the publisher takes this for every channel at every step, and glibc's
        // hypot cost about 15 ns a call. d and r - 1 come from f32 statistics over
        // σ_R >= sqrt(ε), far too small for d² to overflow an f64 for any ε BN uses.
        big_d: (d * d + e * e).sqrt(),
    }
}

/// Root mean square, sqrt(mean x²): the layer aggregate of per-channel D. NaN when empty.
pub fn rms<I>(xs: I) -> f64
where
    I: IntoIterator<Item = f64>,
    I::IntoIter: ExactSizeIterator,
{
    let xs = xs.into_iter();
    let len = xs.len();
    (xs.map(|x| x * x).sum::<f64>() / len as f64).sqrt()
}

/// KL(N(μ_B, σ̃²_B) || N(μ_R, σ²_R)) = -ln r + (r² + d² - 1)/2, in nats; 0 iff r = 1 and d = 0.
pub fn kl_batch_running(r: f64, d: f64) -> f64 {
    -r.ln() + (r * r + d * d - 1.0) / 2.0
}

/// Expected D² of a stationary, converged run with Gaussian activations:
/// D₀² ≈ 1.5·(2/(2 - m))/n_eff, with n_eff = σ²/Var(μ_B) (n_eff = n for i.i.d. values).
///
/// The d-part is Var(μ_B - μ_R)/σ² = (1 + m/(2 - m))/n_eff = (2/(2 - m))/n_eff (the pre-update
/// μ_R is independent of μ_B); the r-part, r - 1 ≈ δσ²/(2σ²) with Var(σ²_B) ≈ 2σ⁴/n, adds half
/// of that again. Check: n = 32, m = 0.1 gives 0.0493 (0.0500 measured).
pub fn noise_floor_sq(momentum: f64, n_eff: f64) -> f64 {
    1.5 * (2.0 / (2.0 - momentum)) / n_eff
}

/// Empirical 1/n_eff from two successive batches (BN-METRICS §1, "empirical floor"): for stationary
/// batches E[(μ_B,t - μ_B,t-1)²] = 2σ²/n_eff, so mean_c (Δμ_c)²/(2(v_R,c + ε)) estimates 1/n_eff
/// without knowing the correlation inside a batch. Averaged over many steps it gives D₀ through
/// [`noise_floor_sq`]; learning also moves μ_B, so it errs on the high side.
pub fn inverse_n_eff_from_successive_means(
    previous_mean: &[f32],
    mean: &[f32],
    running_var: &[f32],
    eps: f64,
) -> f64 {
    let channels = mean.len().min(previous_mean.len()).min(running_var.len());
    if channels == 0 {
        return f64::NAN;
    }
    let total: f64 = (0..channels)
        .map(|c| {
            let delta = f64::from(mean[c]) - f64::from(previous_mean[c]);
            delta * delta / (2.0 * (f64::from(running_var[c]) + eps))
        })
        .sum();
    total / channels as f64
}

/// Ξ = D²/D₀², drift relative to the noise floor; healthy ≈ 1-2.
pub fn xi(big_d_sq: f64, floor_sq: f64) -> f64 {
    big_d_sq / floor_sq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_batch_means_estimate_one_over_n_eff() {
        // i.i.d. N(2, 9) values, batches of n = 32: the estimate averages to 1/32.
        let mut g = Gaussian::new(11);
        let (n, sigma2, steps) = (32usize, 9.0f64, 10_000usize);
        let mut batch_mean = || {
            let m: f64 = (0..n).map(|_| 2.0 + 3.0 * g.sample()).sum::<f64>() / n as f64;
            vec![m as f32]
        };
        let mut previous = batch_mean();
        let mut sum = 0.0;
        for _ in 0..steps {
            let current = batch_mean();
            sum += inverse_n_eff_from_successive_means(&previous, &current, &[sigma2 as f32], 0.0);
            previous = current;
        }
        assert_close(sum / steps as f64, 1.0 / n as f64, 0.06 / n as f64);
        assert!(inverse_n_eff_from_successive_means(&[], &[], &[], 1e-5).is_nan());
    }
    use crate::metrics::moments::moments;
    use crate::metrics::test_util::{assert_close, Gaussian};
    use crate::metrics::BN_EPSILON;

    #[test]
    fn matching_statistics_give_no_drift() {
        let dr = drift(0.3, 2.0, 0.3, 2.0, BN_EPSILON);
        assert_eq!((dr.r, dr.d, dr.big_d), (1.0, 0.0, 0.0));
        assert_eq!(kl_batch_running(dr.r, dr.d), 0.0);
    }

    #[test]
    fn known_drift_values() {
        // σ̃_B = 2, σ_R = 4 (ε = 0): r = 0.5; d = (3 - 1)/4 = 0.5; D = sqrt(0.5).
        let dr = drift(3.0, 4.0, 1.0, 16.0, 0.0);
        assert_close(dr.r, 0.5, 1e-15);
        assert_close(dr.d, 0.5, 1e-15);
        assert_close(dr.big_d, 0.5_f64.sqrt(), 1e-15);
        assert_close(kl_batch_running(0.5, 0.5), 2.0_f64.ln() - 0.5 / 2.0, 1e-15);
        // D stays finite as r -> 0.
        assert_close(drift(0.0, 0.0, 0.0, 1.0, 0.0).big_d, 1.0, 0.0);
    }

    #[test]
    fn eval_normalisation_is_affine_in_train_normalisation() {
        let mut gauss = Gaussian::new(7);
        let xs: Vec<f32> = (0..512)
            .map(|_| (1.5 + 2.0 * gauss.sample()) as f32)
            .collect();
        let batch = moments(&xs);
        let (running_mean, running_var) = (0.9, 5.5);
        let dr = drift(batch.mean, batch.var, running_mean, running_var, BN_EPSILON);
        let sigma_b = (batch.var + BN_EPSILON).sqrt();
        let sigma_r = (running_var + BN_EPSILON).sqrt();
        let mut sum_sq_change = 0.0;
        for &x in &xs {
            let x = f64::from(x);
            let train = (x - batch.mean) / sigma_b;
            let eval = (x - running_mean) / sigma_r;
            assert_close(eval, dr.r * train + dr.d, 1e-13);
            sum_sq_change += (eval - train) * (eval - train);
        }
        // The RMS change is D but for the factor σ²_B/(σ²_B + ε) on the (r - 1)² term.
        let rms_change = (sum_sq_change / xs.len() as f64).sqrt();
        let shrink = batch.var / (batch.var + BN_EPSILON);
        let exact = (dr.d * dr.d + (dr.r - 1.0) * (dr.r - 1.0) * shrink).sqrt();
        assert_close(rms_change, exact, 1e-12 * exact);
        assert_close(rms_change, dr.big_d, 1e-5 * dr.big_d);
    }

    #[test]
    fn rms_aggregate() {
        assert_close(rms([3.0, 4.0]), (12.5_f64).sqrt(), 1e-15);
        assert!(rms([0.0; 0]).is_nan());
    }

    #[test]
    fn noise_floor_matches_the_documented_check() {
        let floor = noise_floor_sq(0.1, 32.0);
        assert_close(floor, 0.0493, 5e-5);
        assert_close(xi(2.0 * floor, floor), 2.0, 1e-15);
    }
}
