//! [`super::sgd_step`]'s rows in AVX-512, written out: the compiler's own vectorisation of the
//! six sums kept its f64 lanes poorly and paid about as much per row as for the arithmetic.
//! Lane for lane the same operations in the same order as the portable code (no fused
//! multiply-add; f32 runs of [`F32_RUN`] chunks, then f64 lanes added pairwise), so the same
//! bits: the tests compare the two.
use std::arch::x86_64::*;

use super::sgd_step::{row_sums, step_terms, FilterRows, SgdRule};
use crate::metrics::lanes::{F32_RUN, STEP_LANES};
use crate::metrics::weights::StepSums;

/// Every row updated and summed; see `sgd_step::sgd_rows`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgd_rows(rule: &SgdRule, rows: FilterRows) -> Vec<StepSums> {
    let k = Constants::new(rule);
    let fan_in = rows.fan_in;
    let mut out = Vec::with_capacity(rows.before.len() / fan_in);
    for (b, g, v, a) in rows.rows() {
        let chunks = fan_in / STEP_LANES;
        // f64 lanes 0-7 and 8-15 of each of the six sums.
        let mut lanes = [[_mm512_setzero_pd(); 2]; 6];
        for first in (0..chunks).step_by(F32_RUN) {
            let mut run = [_mm512_setzero_ps(); 6];
            for c in first..chunks.min(first + F32_RUN) {
                let at = c * STEP_LANES;
                // SAFETY: chunk c of a row of `fan_in` lies within each row slice.
                let terms = unsafe {
                    step_chunk(
                        &k,
                        b.as_ptr().add(at),
                        g.as_ptr().add(at),
                        v.as_mut_ptr().add(at),
                        a.as_mut_ptr().add(at),
                    )
                };
                for (sum, term) in run.iter_mut().zip(terms) {
                    *sum = _mm512_add_ps(*sum, term);
                }
            }
            for (lanes, run) in lanes.iter_mut().zip(run) {
                let low = _mm512_cvtps_pd(_mm512_castps512_ps256(run));
                let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                    _mm512_castps_pd(run),
                )));
                lanes[0] = _mm512_add_pd(lanes[0], low);
                lanes[1] = _mm512_add_pd(lanes[1], high);
            }
        }
        let whole = chunks * STEP_LANES;
        // The tail's terms straight into f64, as `LaneSums::add_element` takes them.
        let mut totals = [0.0f64; 6];
        for (((&b, &g), v), a) in (b[whole..].iter().zip(&g[whole..]))
            .zip(v[whole..].iter_mut())
            .zip(a[whole..].iter_mut())
        {
            for (total, term) in totals.iter_mut().zip(step_terms(rule, b, g, v, a)) {
                *total += f64::from(term);
            }
        }
        for (total, [low, high]) in totals.iter_mut().zip(lanes) {
            *total += pairwise(low, high);
        }
        out.push(row_sums(totals));
    }
    out
}

/// The rule's values in every lane.
struct Constants {
    rule: SgdRule,
    lr: __m512,
    mu: __m512,
    l2: __m512,
    decoupled: __m512,
}

impl Constants {
    #[target_feature(enable = "avx512f")]
    fn new(rule: &SgdRule) -> Constants {
        Constants {
            rule: *rule,
            lr: _mm512_set1_ps(rule.lr),
            mu: _mm512_set1_ps(rule.mu),
            l2: _mm512_set1_ps(rule.l2.1),
            decoupled: _mm512_set1_ps(rule.decoupled.1),
        }
    }
}

/// One chunk's step ([`SgdRule::step`] in each lane), stored, and its six terms
/// ([`step_terms`]).
///
/// # Safety
/// Each pointer must have [`STEP_LANES`] elements; AVX-512F.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn step_chunk(
    k: &Constants,
    b: *const f32,
    g: *const f32,
    v: *mut f32,
    a: *mut f32,
) -> [__m512; 6] {
    // SAFETY: the caller's pointers each have STEP_LANES elements.
    let (bv, gv, vv) = unsafe { (_mm512_loadu_ps(b), _mm512_loadu_ps(g), _mm512_loadu_ps(v)) };
    let rule = &k.rule;
    let g1 = if rule.l2.0 {
        _mm512_add_ps(gv, _mm512_mul_ps(k.l2, bv))
    } else {
        gv
    };
    let velocity = _mm512_add_ps(g1, _mm512_mul_ps(k.mu, vv));
    let step = if rule.nesterov {
        _mm512_mul_ps(_mm512_add_ps(g1, _mm512_mul_ps(k.mu, velocity)), k.lr)
    } else if rule.momentum {
        _mm512_mul_ps(velocity, k.lr)
    } else {
        _mm512_mul_ps(g1, k.lr)
    };
    let step = if rule.decoupled.0 {
        _mm512_add_ps(step, _mm512_mul_ps(k.decoupled, bv))
    } else {
        step
    };
    let av = _mm512_sub_ps(bv, step);
    // SAFETY: as above.
    unsafe {
        _mm512_storeu_ps(a, av);
        if rule.momentum {
            _mm512_storeu_ps(v, velocity);
        }
    }
    let d = _mm512_sub_ps(av, bv);
    [
        _mm512_mul_ps(bv, bv),
        _mm512_mul_ps(gv, gv),
        _mm512_mul_ps(bv, gv),
        _mm512_mul_ps(av, av),
        _mm512_mul_ps(d, d),
        _mm512_mul_ps(bv, d),
    ]
}

/// Lanes 0-7 (`low`) and 8-15 (`high`) of one sum added as `LaneSums::take_totals` adds them:
/// l and l + 8, then l and l + 4, then (0 + 2) + (1 + 3).
#[inline]
#[target_feature(enable = "avx512f")]
fn pairwise(low: __m512d, high: __m512d) -> f64 {
    let s8 = _mm512_add_pd(low, high);
    let s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd::<1>(s8));
    let s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd::<1>(s4));
    _mm_cvtsd_f64(s2) + _mm_cvtsd_f64(_mm_unpackhi_pd(s2, s2))
}
