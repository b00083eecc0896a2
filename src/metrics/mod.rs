//! Pure BatchNorm math on plain slices and numbers (formulas: `shared/docs/BN-METRICS.md`).
//!
//! Conventions shared by every submodule:
//! - momentum `m` follows PyTorch/dfdx: `running <- (1 - m) * running + m * batch`;
//! - batch variances are BIASED (divide by n, what BN normalises with), running variances are
//!   UNBIASED (dfdx and PyTorch feed `batch_var * n/(n-1)` into the running average);
//! - drift metrics use the running statistics from BEFORE the step's update;
//! - arithmetic is f64 throughout, inputs are often `&[f32]`;
//! - non-finite data never panics: NaN in gives NaN out. Shape mismatches (slices whose lengths
//!   disagree, a length not divisible by the channel count) are caller bugs and panic, as
//!   documented per function.

pub mod bias;
pub mod correlated;
pub mod dead;
pub mod drift;
pub mod ema;
pub mod ema_window;
pub mod lanes;
pub mod moments;
pub mod noise_floor;
pub mod phantom;
pub mod relu;
pub mod weights;

/// BatchNorm's ε, added to the variances before the square root (dfdx and PyTorch default).
pub const BN_EPSILON: f64 = 1e-5;

/// Splits `xs` into `parts` equal contiguous chunks (channel-major activations, row-major weights).
///
/// # Panics
/// If `parts` is 0 or does not divide `xs.len()`.
pub(crate) fn split_equal<T>(xs: &[T], parts: usize) -> impl Iterator<Item = &[T]> {
    assert!(
        parts > 0 && xs.len().is_multiple_of(parts),
        "cannot split {} values into {parts} equal parts",
        xs.len()
    );
    let len = xs.len() / parts;
    (0..parts).map(move |p| &xs[p * len..(p + 1) * len])
}

/// Returns 0 for negative `x`, keeps NaN (unlike `f64::max`, which would turn NaN into 0).
pub(crate) fn clamp_non_negative(x: f64) -> f64 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Seeded standard-normal generator (Box-Muller), reproducible across platforms.
    pub struct Gaussian {
        rng: ChaCha8Rng,
        spare: Option<f64>,
    }

    impl Gaussian {
        pub fn new(seed: u64) -> Self {
            Gaussian {
                rng: ChaCha8Rng::seed_from_u64(seed),
                spare: None,
            }
        }

        /// One draw from N(0, 1).
        pub fn sample(&mut self) -> f64 {
            if let Some(z) = self.spare.take() {
                return z;
            }
            // 1 - u is in (0, 1], so the logarithm is finite.
            let u1: f64 = 1.0 - self.rng.gen::<f64>();
            let u2: f64 = self.rng.gen();
            let radius = (-2.0 * u1.ln()).sqrt();
            let angle = 2.0 * std::f64::consts::PI * u2;
            self.spare = Some(radius * angle.sin());
            radius * angle.cos()
        }
    }

    /// Asserts |actual - expected| <= tol, with a readable message.
    #[track_caller]
    pub fn assert_close(actual: f64, expected: f64, tol: f64) {
        assert!(
            (actual - expected).abs() <= tol,
            "actual {actual:e}, expected {expected:e}, difference {:e} > tolerance {tol:e}",
            (actual - expected).abs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_equal_gives_contiguous_chunks() {
        let xs = [1, 2, 3, 4, 5, 6];
        let chunks: Vec<&[i32]> = split_equal(&xs, 3).collect();
        assert_eq!(chunks, [&[1, 2][..], &[3, 4], &[5, 6]]);
        assert_eq!(split_equal::<i32>(&[], 2).count(), 2);
    }

    #[test]
    #[should_panic(expected = "equal parts")]
    fn split_equal_rejects_ragged_layout() {
        let _ = split_equal(&[1.0_f32; 5], 2).count();
    }

    #[test]
    fn clamp_non_negative_keeps_nan() {
        assert_eq!(clamp_non_negative(-1e-18), 0.0);
        assert_eq!(clamp_non_negative(2.0), 2.0);
        assert!(clamp_non_negative(f64::NAN).is_nan());
    }
}
