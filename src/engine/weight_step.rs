//! One block's conv weights measured across an optimizer step, on the training thread. SGD
//! reads them in the pass that updates them ([`measured_sgd_step`]). Any other optimizer in two
//! passes: before the update, the weights are copied once (into a pooled buffer) and summed
//! with their gradient where it lies; after it, the new weights are summed with the copy
//! ([`WeightsBefore`]). What goes to the publisher is a few sums per filter row, not three
//! copies of every weight.
use dfdx::prelude::*;
use rayon::prelude::*;

use super::host::{to_pooled, BufferPool, PooledBuffer};
use super::parallel::chunks_per_task;
use crate::metrics::weights::{angle, grad_sums, move_sums, GradSums, StepSums};

mod sgd_step;
#[cfg(target_arch = "x86_64")]
mod sgd_vector;
#[cfg(test)]
pub(crate) use sgd_step::every_sgd_config;
pub use sgd_step::measured_sgd_step;

/// The weights before the step and their rows' sums with the gradient.
pub struct WeightsBefore {
    weights: PooledBuffer,
    grad_sums: Vec<GradSums>,
}

/// One filter row's step: its sums, and for a step too nearly radial for them, the angle it
/// turned by as read from the rows themselves.
#[derive(Clone, Copy, Debug)]
pub struct RowStep {
    pub sums: StepSums,
    radial_angle: Option<f64>,
}

impl RowStep {
    /// A row's step from its sums, reading the angle from the rows `before` and `after` the step
    /// only when the sums cannot ([`StepSums::reads_angle`]).
    fn new(sums: StepSums, before: &[f32], after: &[f32]) -> RowStep {
        let radial_angle = (!sums.reads_angle()).then(|| angle(before, after));
        RowStep { sums, radial_angle }
    }

    /// The angle the row turned by ([`StepSums::row_angle`]). Read from the sums here, on the
    /// publisher, so the training thread takes no atan2.
    pub fn angle(&self) -> f64 {
        (self.radial_angle.or_else(|| self.sums.angle())).unwrap_or(f64::NAN)
    }
}

impl WeightsBefore {
    /// Before the update: `weight`'s `rows` filters and their gradient `grad` (same layout).
    pub fn measure<S: Shape, T>(
        weight: &Tensor<S, f32, Cpu, T>,
        grad: &[f32],
        rows: usize,
        pool: &BufferPool,
    ) -> WeightsBefore {
        let weights = to_pooled(weight, pool);
        let fan_in = row_len(&weights, rows);
        let grad_sums = (weights.par_chunks_exact(fan_in))
            .zip(grad.par_chunks_exact(fan_in))
            .with_min_len(chunks_per_task(fan_in))
            .map(|(b, g)| grad_sums(b, g))
            .collect();
        WeightsBefore { weights, grad_sums }
    }

    /// After the update: each row's step, with `weight` now holding the new weights.
    pub fn after<S: Shape, T>(
        self,
        weight: &Tensor<S, f32, Cpu, T>,
        pool: &BufferPool,
    ) -> Vec<RowStep> {
        let after = to_pooled(weight, pool);
        assert_eq!(after.len(), self.weights.len(), "the weights changed shape");
        let fan_in = row_len(&after, self.grad_sums.len());
        (self.weights.par_chunks_exact(fan_in))
            .zip(after.par_chunks_exact(fan_in))
            .zip(self.grad_sums.par_iter())
            .with_min_len(chunks_per_task(fan_in))
            .map(|((b, a), &grad)| RowStep::new(StepSums::new(grad, move_sums(b, a)), b, a))
            .collect()
    }
}

/// Elements per row of `rows` equal rows.
fn row_len(weights: &[f32], rows: usize) -> usize {
    assert!(
        rows > 0 && weights.len().is_multiple_of(rows),
        "{rows} rows do not divide {} weights",
        weights.len()
    );
    weights.len() / rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::weights::row_step_sums;

    /// The two passes give what the fused reading of three copies gives, bit for bit: every
    /// sum and every angle, including a row with no gradient whose step is all radial.
    #[test]
    fn two_passes_read_what_the_copies_read() {
        let dev = Cpu::seed_from_u64(3);
        let (rows, fan_in) = (6, 27);
        let mut weight: Tensor<(usize, usize), f32, Cpu> = dev.sample_normal_like(&(rows, fan_in));
        let mut grad = dev.sample_normal_like(&(rows, fan_in)).as_vec();
        grad[..fan_in].fill(0.0);
        let before = weight.as_vec();
        let pool = BufferPool::default();
        let measured = WeightsBefore::measure(&weight, &grad, rows, &pool);
        // An SGD step with weight decay: row 0 only shrinks.
        let after: Vec<f32> = (before.iter().zip(&grad))
            .map(|(w, g)| w - 0.1 * (g + 5e-4 * w))
            .collect();
        weight.copy_from(&after);
        let steps = measured.after(&weight, &pool);
        let want: Vec<_> = row_step_sums(&before, &after, &grad, rows).collect();
        assert_eq!(steps.len(), rows);
        for (got, (sums, angle)) in steps.iter().zip(want) {
            assert_eq!(got.sums, sums);
            assert_eq!(got.angle().to_bits(), angle.to_bits());
        }
        assert_eq!(steps[0].sums.angle(), None, "row 0's step is radial");
    }
}
