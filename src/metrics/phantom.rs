//! Phantom gradients (BN-METRICS.md, section 7): what training on statistics that do not match
//! the batch pushes into the parameters.
//!
//! The zero-true-gradient toy: one channel of n values x whose target is the layer's own
//! train-mode output y = γx̂ + β (x̂ = (x - μ_B)/σ̃_B), with loss ½Σ(output - y)² summed over the
//! n values. In train mode the loss and every gradient are 0. In eval mode the output is
//! γ(x + b - μ_R)/σ_R + β = γ(r·x̂ + d) + β for a pre-BN bias b = 0 (r = σ̃_B/σ_R,
//! d = (μ_B - μ_R)/σ_R), so the same loss has gradients wherever r ≠ 1 or d ≠ 0: training in eval
//! mode drives d to 0 and so corrupts the train-mode output.

/// The toy's eval-mode gradients at the train-mode solution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhantomGradients {
    /// ∂L/∂β = nγd.
    pub beta: f64,
    /// ∂L/∂γ = nγ[r(r-1)q + d²].
    pub gamma: f64,
    /// ∂L/∂b = nγ²d/σ_R, for a bias added before BN.
    pub bias: f64,
}

/// The toy's gradients for `n` values, scale `gamma`, BN's r and d, σ_R = sqrt(v_R + ε), and
/// q = mean(x̂²) = σ²_B/(σ²_B + ε) (1 when ε = 0; BN-METRICS §7 writes the formulas with q = 1).
pub fn zero_true_gradient_toy(
    n: f64,
    gamma: f64,
    r: f64,
    d: f64,
    sigma_r: f64,
    q: f64,
) -> PhantomGradients {
    PhantomGradients {
        beta: n * gamma * d,
        gamma: n * gamma * (r * (r - 1.0) * q + d * d),
        bias: n * gamma * gamma * d / sigma_r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::drift::drift;
    use crate::metrics::moments::moments;
    use crate::metrics::test_util::{assert_close, Gaussian};
    use crate::metrics::BN_EPSILON;

    /// The closed forms against central differences of the toy's eval-mode loss (a quadratic,
    /// so the differences are exact up to rounding).
    #[test]
    fn toy_gradients_match_finite_differences() {
        let mut g = Gaussian::new(17);
        let x: Vec<f32> = (0..32).map(|_| (0.7 + 1.3 * g.sample()) as f32).collect();
        let batch = moments(&x);
        let (gamma, beta, running_mean, running_var) = (1.4, -0.3, 0.2, 2.5);
        let sigma_b = (batch.var + BN_EPSILON).sqrt();
        let sigma_r = (running_var + BN_EPSILON).sqrt();
        let target: Vec<f64> = x
            .iter()
            .map(|&v| gamma * (f64::from(v) - batch.mean) / sigma_b + beta)
            .collect();
        let loss = |gamma: f64, beta: f64, bias: f64| -> f64 {
            x.iter()
                .zip(&target)
                .map(|(&v, t)| {
                    let out = gamma * (f64::from(v) + bias - running_mean) / sigma_r + beta;
                    0.5 * (out - t) * (out - t)
                })
                .sum()
        };
        let h = 1e-4;
        let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        let drift = drift(batch.mean, batch.var, running_mean, running_var, BN_EPSILON);
        let q = batch.var / (batch.var + BN_EPSILON);
        let toy = zero_true_gradient_toy(32.0, gamma, drift.r, drift.d, sigma_r, q);
        assert_close(fd(&|e| loss(gamma, beta + e, 0.0)), toy.beta, 1e-7);
        assert_close(fd(&|e| loss(gamma + e, beta, 0.0)), toy.gamma, 1e-7);
        assert_close(fd(&|e| loss(gamma, beta, e)), toy.bias, 1e-7);
        // In train mode (matching statistics: r = 1, d = 0) there is nothing to learn.
        let none = zero_true_gradient_toy(32.0, gamma, 1.0, 0.0, sigma_r, q);
        assert_eq!((none.beta, none.gamma, none.bias), (0.0, 0.0, 0.0));
    }
}
