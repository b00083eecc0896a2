//! The drift's empirical noise floor D0 (BN-METRICS §1, "empirical floor"), estimated from a
//! stream of successive steps. The producer runs it on every step and publishes D0 (format 1.5);
//! a viewer runs it on what it receives, for streams that do not carry D0.
use super::drift::{inverse_n_eff_from_successive_means, noise_floor_sq};

/// Smoothing of the estimate of 1/n_eff (per step): long enough to average the χ² noise.
const FLOOR_SMOOTHING: f64 = 0.02;
/// Successive pairs of steps seen before a floor is given.
const FLOOR_MIN_SAMPLES: u32 = 20;

/// Running estimate of 1/n_eff from successive batch means.
#[derive(Clone, Debug, Default)]
pub struct FloorEstimate {
    previous: Option<(u64, Vec<f32>)>,
    inverse_n_eff: f64,
    samples: u32,
}

impl FloorEstimate {
    /// Take one step's batch means and pre-update running variances (one per channel).
    pub fn observe(&mut self, step: u64, batch_mean: &[f32], running_var_pre: &[f32], eps: f64) {
        if let Some((previous_step, previous_mean)) = &self.previous {
            // Only successive steps: a gap (coalesced or thinned snapshots) would overstate
            // the change.
            if previous_step.checked_add(1) == Some(step) {
                let x = inverse_n_eff_from_successive_means(
                    previous_mean,
                    batch_mean,
                    running_var_pre,
                    eps,
                );
                if x.is_finite() {
                    let w = if self.samples == 0 {
                        1.0
                    } else {
                        FLOOR_SMOOTHING
                    };
                    self.inverse_n_eff += w * (x - self.inverse_n_eff);
                    self.samples += 1;
                }
            }
        }
        match &mut self.previous {
            Some((s, mean)) => {
                *s = step;
                mean.clear();
                mean.extend_from_slice(batch_mean);
            }
            None => self.previous = Some((step, batch_mean.to_vec())),
        }
    }

    /// D0 at momentum `momentum`, once enough successive steps were seen.
    pub fn floor(&self, momentum: f32) -> Option<f64> {
        (self.samples >= FLOOR_MIN_SAMPLES && self.inverse_n_eff > 0.0)
            .then(|| noise_floor_sq(f64::from(momentum), 1.0 / self.inverse_n_eff).sqrt())
    }

    /// Forget the previous step: the next one does not follow it (the run went back).
    pub fn break_succession(&mut self) {
        self.previous = None;
    }

    /// Heap bytes held (the previous step's means).
    pub fn heap_bytes(&self) -> usize {
        self.previous
            .as_ref()
            .map_or(0, |(_, v)| v.capacity() * std::mem::size_of::<f32>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_util::Gaussian;

    /// i.i.d. batches of 32 values of variance 9 in 8 channels: D0 comes out at √(1.5·(2/1.9)/32); a gap in
    /// the steps adds nothing.
    #[test]
    fn successive_steps_give_the_floor_and_gaps_are_skipped() {
        let mut g = Gaussian::new(5);
        let mut estimate = FloorEstimate::default();
        let mean = |g: &mut Gaussian| -> Vec<f32> {
            (0..8)
                .map(|_| ((0..32).map(|_| 3.0 * g.sample()).sum::<f64>() / 32.0) as f32)
                .collect()
        };
        let var = [9.0f32; 8];
        assert_eq!(estimate.floor(0.1), None);
        for step in 1..=4000 {
            estimate.observe(step, &mean(&mut g), &var, 0.0);
        }
        let expected = (1.5 * (2.0 / 1.9) / 32.0f64).sqrt();
        let floor = estimate.floor(0.1).expect("enough steps");
        assert!(
            (floor / expected - 1.0).abs() < 0.15,
            "{floor} vs {expected}"
        );
        let samples = estimate.samples;
        estimate.observe(4002, &[100.0; 8], &var, 0.0);
        assert_eq!(estimate.samples, samples, "a gap is not a pair of steps");
    }
}
