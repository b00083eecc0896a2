//! [`super::sgd_step`]'s rows in AVX2, written out as [`super::sgd_avx512`] is: sixteen lanes as
//! two registers of eight, each half of a run summed over its chunks in turn (six sums of eight
//! lanes fit AVX2's sixteen registers; twelve would not), then handed to the portable
//! [`LaneSums`], so the f64 totals are added as on every other path and the bits are the same.
use std::arch::x86_64::*;

use super::sgd_step::{row_sums, step_terms, FilterRows, SgdRule};
use crate::metrics::lanes::{LaneSums, F32_RUN, STEP_LANES};
use crate::metrics::weights::StepSums;

/// Lanes of one AVX2 register.
const HALF: usize = STEP_LANES / 2;

/// Every row updated and summed; see `sgd_step::sgd_rows`.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn sgd_rows(rule: &SgdRule, rows: FilterRows) -> Vec<StepSums> {
    let k = Constants::new(rule);
    let fan_in = rows.fan_in;
    let mut out = Vec::with_capacity(rows.before.len() / fan_in);
    for (b, g, v, a) in rows.rows() {
        let chunks = fan_in / STEP_LANES;
        let mut sums = LaneSums::<6>::new();
        for first in (0..chunks).step_by(F32_RUN) {
            let mut run = [[0.0f32; STEP_LANES]; 6];
            for half in [0, HALF] {
                let mut acc = [_mm256_setzero_ps(); 6];
                for c in first..chunks.min(first + F32_RUN) {
                    let at = c * STEP_LANES + half;
                    // SAFETY: lanes `half..half + HALF` of chunk c lie within each row slice.
                    let terms = unsafe {
                        step_half(
                            &k,
                            b.as_ptr().add(at),
                            g.as_ptr().add(at),
                            v.as_mut_ptr().add(at),
                            a.as_mut_ptr().add(at),
                        )
                    };
                    for (sum, term) in acc.iter_mut().zip(terms) {
                        *sum = _mm256_add_ps(*sum, term);
                    }
                }
                for (run, acc) in run.iter_mut().zip(acc) {
                    // SAFETY: `half + HALF` lanes fit in a run's row of STEP_LANES.
                    unsafe { _mm256_storeu_ps(run[half..].as_mut_ptr(), acc) };
                }
            }
            sums.add_run(&run);
        }
        let whole = chunks * STEP_LANES;
        for (((&b, &g), v), a) in (b[whole..].iter().zip(&g[whole..]))
            .zip(v[whole..].iter_mut())
            .zip(a[whole..].iter_mut())
        {
            sums.add_element(step_terms(rule, b, g, v, a));
        }
        out.push(row_sums(sums.take_totals()));
    }
    out
}

/// The rule's values in every lane.
struct Constants {
    rule: SgdRule,
    lr: __m256,
    mu: __m256,
    l2: __m256,
    decoupled: __m256,
}

impl Constants {
    #[target_feature(enable = "avx2")]
    fn new(rule: &SgdRule) -> Constants {
        Constants {
            rule: *rule,
            lr: _mm256_set1_ps(rule.lr),
            mu: _mm256_set1_ps(rule.mu),
            l2: _mm256_set1_ps(rule.l2.1),
            decoupled: _mm256_set1_ps(rule.decoupled.1),
        }
    }
}

/// Eight lanes' step ([`SgdRule::step`] in each), stored, and their six terms ([`step_terms`]).
///
/// # Safety
/// Each pointer must have [`HALF`] elements; AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn step_half(
    k: &Constants,
    b: *const f32,
    g: *const f32,
    v: *mut f32,
    a: *mut f32,
) -> [__m256; 6] {
    // SAFETY: the caller's pointers each have HALF elements.
    let (bv, gv, vv) = unsafe { (_mm256_loadu_ps(b), _mm256_loadu_ps(g), _mm256_loadu_ps(v)) };
    let rule = &k.rule;
    let g1 = if rule.l2.0 {
        _mm256_add_ps(gv, _mm256_mul_ps(k.l2, bv))
    } else {
        gv
    };
    let velocity = _mm256_add_ps(g1, _mm256_mul_ps(k.mu, vv));
    let step = if rule.nesterov {
        _mm256_mul_ps(_mm256_add_ps(g1, _mm256_mul_ps(k.mu, velocity)), k.lr)
    } else if rule.momentum {
        _mm256_mul_ps(velocity, k.lr)
    } else {
        _mm256_mul_ps(g1, k.lr)
    };
    let step = if rule.decoupled.0 {
        _mm256_add_ps(step, _mm256_mul_ps(k.decoupled, bv))
    } else {
        step
    };
    let av = _mm256_sub_ps(bv, step);
    // SAFETY: as above.
    unsafe {
        _mm256_storeu_ps(a, av);
        if rule.momentum {
            _mm256_storeu_ps(v, velocity);
        }
    }
    let d = _mm256_sub_ps(av, bv);
    [
        _mm256_mul_ps(bv, bv),
        _mm256_mul_ps(gv, gv),
        _mm256_mul_ps(bv, gv),
        _mm256_mul_ps(av, av),
        _mm256_mul_ps(d, d),
        _mm256_mul_ps(bv, d),
    ]
}
