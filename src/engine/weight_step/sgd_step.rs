//! SGD's update of a block's filters and their readings in one pass: each weight is read once
//! with its gradient and velocity, updated as dfdx's SGD kernel updates it (operation for
//! operation, so the new weights are the same bits), and its terms of every [`StepSums`] are
//! added while it is in a register. The two-pass reading ([`super::WeightsBefore`]) reads the
//! weights three more times and copies them once more.
use dfdx::optim::{Momentum, SgdConfig, WeightDecay};
use dfdx::prelude::*;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::sgd_vector::{sgd_rows_avx2, sgd_rows_avx512};
use super::{row_len, RowStep};
use crate::engine::host::{to_pooled, BufferPool};
use crate::engine::parallel::chunks_per_task;
use crate::metrics::lanes::{add_terms, runs, widest_lanes, LaneSums, LaneWork, STEP_LANES};
use crate::metrics::weights::{grad_terms, move_terms, GradSums, MoveSums, StepSums};

/// dfdx 0.13's SGD update of one f32 (`SgdKernel` for the CPU), its constants converted as it
/// converts them. Each choice is a flag, so that it compiles to a choice between two computed
/// values: a branch per element (a `match` on the momentum) kept the loop scalar.
#[derive(Clone, Copy)]
pub(super) struct SgdRule {
    pub lr: f32,
    /// μ as f32 (0 without momentum).
    pub mu: f32,
    /// With momentum (classic or Nesterov): the velocity is updated.
    pub momentum: bool,
    pub nesterov: bool,
    /// (on, λ) for L2 decay, added to the gradient times the weight.
    pub l2: (bool, f32),
    /// (on, λ·η) for decoupled decay, added to the step times the weight.
    pub decoupled: (bool, f32),
}

impl SgdRule {
    pub fn new(cfg: &SgdConfig) -> SgdRule {
        let mu = match cfg.momentum {
            Some(Momentum::Classic(u) | Momentum::Nesterov(u)) => u as f32,
            None => 0.0,
        };
        let (l2, decoupled) = match cfg.weight_decay {
            Some(WeightDecay::L2(wd)) => ((true, wd as f32), (false, 0.0)),
            Some(WeightDecay::Decoupled(wd)) => ((false, 0.0), (true, (wd * cfg.lr) as f32)),
            None => ((false, 0.0), (false, 0.0)),
        };
        SgdRule {
            lr: cfg.lr as f32,
            mu,
            momentum: cfg.momentum.is_some(),
            nesterov: matches!(cfg.momentum, Some(Momentum::Nesterov(_))),
            l2,
            decoupled,
        }
    }

    /// The weight after the step from weight `p`, gradient `g` and velocity `v` (updated with
    /// momentum, written back unchanged without), as dfdx computes it.
    #[inline(always)]
    pub fn step(&self, p: f32, g: f32, v: &mut f32) -> f32 {
        let g = if self.l2.0 { g + self.l2.1 * p } else { g };
        let velocity = g + self.mu * *v;
        let step = if self.nesterov {
            (g + self.mu * velocity) * self.lr
        } else if self.momentum {
            velocity * self.lr
        } else {
            g * self.lr
        };
        *v = if self.momentum { velocity } else { *v };
        let step = if self.decoupled.0 {
            step + self.decoupled.1 * p
        } else {
            step
        };
        p - step
    }
}

/// One SGD update of `weight` (`rows` filters) with its gradient and velocity (updated), and
/// each row's step: the same weights, velocity and readings as dfdx's update between
/// [`super::WeightsBefore::measure`] and [`super::WeightsBefore::after`]. `before`, if given,
/// must hold the weights as they are (the step's forward copied them); else they are copied.
pub fn measured_sgd_step<S: Shape>(
    cfg: &SgdConfig,
    weight: &mut Tensor<S, f32, Cpu>,
    before: Option<&[f32]>,
    grad: &[f32],
    velocity: &mut [f32],
    rows: usize,
    pool: &BufferPool,
) -> Vec<RowStep> {
    let rule = SgdRule::new(cfg);
    let len = weight.shape().num_elements();
    let copied;
    let before = match before {
        Some(before) if before.len() == len => before,
        _ => {
            copied = to_pooled(weight, pool);
            &copied[..]
        }
    };
    assert!(
        grad.len() == len && velocity.len() == len,
        "a gradient or velocity of another shape than its weights"
    );
    let fan_in = row_len(before, rows);
    let mut after = pool.take(len);
    let task = fan_in * chunks_per_task(fan_in);
    let step_rows = |before: &[f32], grad, velocity, after: &mut [f32]| {
        let rows = FilterRows {
            fan_in,
            before,
            grad,
            velocity,
            after: &mut *after,
        };
        let sums = sgd_rows(&rule, rows);
        let rows = before.chunks_exact(fan_in).zip(after.chunks_exact(fan_in));
        (sums.into_iter().zip(rows))
            .map(|(sums, (b, a))| RowStep::new(sums, b, a))
            .collect::<Vec<_>>()
    };
    // One task's worth (every layer of the digits' network) is stepped here: through rayon it
    // took about 0.4 us more a step.
    let steps = if task >= len {
        step_rows(before, grad, velocity, &mut after)
    } else {
        (before.par_chunks(task))
            .zip(grad.par_chunks(task))
            .zip(velocity.par_chunks_mut(task))
            .zip(after.par_chunks_mut(task))
            .flat_map_iter(|(((b, g), v), a)| step_rows(b, g, v, a))
            .collect()
    };
    weight.copy_from(&after);
    steps
}

/// Whole rows of `fan_in` filter weights with their gradient and velocity (updated), and where
/// their new values go.
pub(super) struct FilterRows<'a> {
    pub fan_in: usize,
    pub before: &'a [f32],
    pub grad: &'a [f32],
    pub velocity: &'a mut [f32],
    pub after: &'a mut [f32],
}

/// One row's weights, gradient, velocity and new weights.
pub(super) type FilterRow<'a> = (&'a [f32], &'a [f32], &'a mut [f32], &'a mut [f32]);

impl<'a> FilterRows<'a> {
    /// Row by row.
    pub fn rows(self) -> impl Iterator<Item = FilterRow<'a>> {
        let n = self.fan_in;
        let len = self.before.len();
        assert!(
            [self.grad.len(), self.velocity.len(), self.after.len()] == [len; 3],
            "filter rows of different lengths"
        );
        (self.before.chunks_exact(n))
            .zip(self.grad.chunks_exact(n))
            .zip(self.velocity.chunks_exact_mut(n))
            .zip(self.after.chunks_exact_mut(n))
            .map(|(((b, g), v), a)| (b, g, v, a))
    }
}

/// [`SgdRule::step`] of each element of the rows, writing the new rows, and each row's sums:
/// those [`super::WeightsBefore`]'s two passes take, term for term, in the same lanes. With
/// AVX-512 or AVX2, written out and in one call for all the rows (a call per row cost about as
/// much as the arithmetic on the digits' short rows).
fn sgd_rows(rule: &SgdRule, rows: FilterRows) -> Vec<StepSums> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { sgd_rows_avx512(rule, rows) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { sgd_rows_avx2(rule, rows) };
        }
    }
    sgd_rows_portable(rule, rows)
}

/// [`sgd_rows`] a row at a time, as vectorised by the compiler.
fn sgd_rows_portable(rule: &SgdRule, rows: FilterRows) -> Vec<StepSums> {
    (rows.rows())
        .map(|(before, grad, velocity, after)| {
            row_sums(widest_lanes(SgdRow {
                rule: *rule,
                before,
                grad,
                velocity,
                after,
            }))
        })
        .collect()
}

/// A row's [`StepSums`] from the six totals in [`step_terms`] order.
pub(super) fn row_sums([bb, gg, bg, aa, dd, bd]: [f64; 6]) -> StepSums {
    StepSums::new(GradSums::from([bb, gg, bg]), MoveSums::from([aa, dd, bd]))
}

/// One element's step, and its terms of the six sums: [`grad_terms`], then [`move_terms`].
#[inline(always)]
pub(super) fn step_terms(rule: &SgdRule, b: f32, g: f32, v: &mut f32, a: &mut f32) -> [f32; 6] {
    *a = rule.step(b, g, v);
    let ([bb, gg, bg], [aa, dd, bd]) = (grad_terms(b, g), move_terms(b, *a));
    [bb, gg, bg, aa, dd, bd]
}

struct SgdRow<'a> {
    rule: SgdRule,
    before: &'a [f32],
    grad: &'a [f32],
    velocity: &'a mut [f32],
    after: &'a mut [f32],
}

impl LaneWork<6> for SgdRow<'_> {
    type Output = [f64; 6];

    #[inline(always)]
    fn run(self, sums: &mut LaneSums<6>) -> [f64; 6] {
        let rule = self.rule;
        let (bs, b_tail) = self.before.as_chunks::<STEP_LANES>();
        let (gs, g_tail) = self.grad.as_chunks::<STEP_LANES>();
        let (vs, v_tail) = self.velocity.as_chunks_mut::<STEP_LANES>();
        let (as_, a_tail) = self.after.as_chunks_mut::<STEP_LANES>();
        for run in runs(bs.len()) {
            let mut acc = [[0.0; STEP_LANES]; 6];
            let chunks = (bs[run.clone()].iter().zip(&gs[run.clone()]))
                .zip(vs[run.clone()].iter_mut().zip(&mut as_[run]));
            for ((b, g), (v, a)) in chunks {
                for l in 0..STEP_LANES {
                    let terms = step_terms(&rule, b[l], g[l], &mut v[l], &mut a[l]);
                    add_terms(&mut acc, l, terms);
                }
            }
            sums.add_run(&acc);
        }
        for (((&b, &g), v), a) in b_tail.iter().zip(g_tail).zip(v_tail).zip(a_tail) {
            sums.add_element(step_terms(&rule, b, g, v, a));
        }
        sums.take_totals()
    }
}

/// SGD with every momentum (none, classic, Nesterov) and every weight decay (none, L2,
/// decoupled), for the tests that check the measured update against dfdx's.
#[cfg(test)]
pub(crate) fn every_sgd_config() -> Vec<SgdConfig> {
    let decays = [
        None,
        Some(WeightDecay::L2(5e-3)),
        Some(WeightDecay::Decoupled(5e-2)),
    ];
    let momenta = [
        None,
        Some(Momentum::Classic(0.9)),
        Some(Momentum::Nesterov(0.8)),
    ];
    (decays.into_iter())
        .flat_map(|weight_decay| {
            momenta.map(|momentum| SgdConfig {
                lr: 0.1,
                momentum,
                weight_decay,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_util::Gaussian;

    type RowsFn = fn(&SgdRule, FilterRows) -> Vec<StepSums>;

    /// The dispatched rows, and each written-out path this CPU can run.
    fn vector_paths() -> Vec<(&'static str, RowsFn)> {
        let mut paths: Vec<(&'static str, RowsFn)> = vec![("dispatched", sgd_rows)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                paths.push(("avx512", |r, rows| unsafe { sgd_rows_avx512(r, rows) }));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                paths.push(("avx2", |r, rows| unsafe { sgd_rows_avx2(r, rows) }));
            }
        }
        paths
    }

    fn noise(source: &mut Gaussian, len: usize, scale: f64) -> Vec<f32> {
        (0..len).map(|_| (scale * source.sample()) as f32).collect()
    }

    /// Every SGD rule (each momentum, each decay) on rows with only a tail, a tail after whole
    /// chunks, and several f32 runs: the dispatched rows, and the AVX-512 and AVX2 ones where
    /// the CPU has them, give the same new weights, velocity and sums as the portable rows, bit
    /// for bit.
    #[test]
    fn every_path_steps_and_sums_the_same_bits() {
        let mut source = Gaussian::new(11);
        for cfg in every_sgd_config() {
            let rule = SgdRule::new(&cfg);
            for fan_in in [9, 27, 144, STEP_LANES * (2 * 8 + 1) + 5] {
                let len = 3 * fan_in;
                let before = noise(&mut source, len, 1.0);
                let grad = noise(&mut source, len, 0.1);
                let velocity = noise(&mut source, len, 0.1);
                let run = |rows: RowsFn| {
                    let (mut v, mut a) = (velocity.clone(), vec![0.0; len]);
                    let filters = FilterRows {
                        fan_in,
                        before: &before,
                        grad: &grad,
                        velocity: &mut v,
                        after: &mut a,
                    };
                    let sums = rows(&rule, filters);
                    let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    (sums, bits(&v), bits(&a))
                };
                let portable = run(sgd_rows_portable);
                let name = format!(
                    "{:?} {:?}, rows of {fan_in}",
                    cfg.momentum, cfg.weight_decay
                );
                for (path, rows) in vector_paths() {
                    let got = run(rows);
                    assert_eq!(got.0, portable.0, "{path} sums: {name}");
                    assert_eq!(got.1, portable.1, "{path} velocity: {name}");
                    assert_eq!(got.2, portable.2, "{path} weights: {name}");
                }
                assert!(portable.0.iter().all(|s| s.step_sq > 0.0), "{name}");
            }
        }
    }
}
