//! [`super::sgd_step`]'s rows written out with vector intrinsics, for AVX-512 (one register of
//! sixteen lanes) and AVX2 (two of eight): the compiler's own vectorisation of the six sums kept
//! its f64 lanes poorly and paid about as much per row as for the arithmetic. One step, generic
//! over the register ([`Vector`], [`step_lanes`]); two row loops, because they keep the f64
//! totals differently: AVX-512 in registers (through the portable `LaneSums` it took about
//! twice as long, measured), AVX2 in `LaneSums` (its sixteen registers hold the six f32 sums of
//! eight lanes, not sixteen f64 lanes more). Lane for lane the same operations in the same
//! order as the portable code (no fused multiply-add; f64 lanes added pairwise as
//! `LaneSums::take_totals` adds them), so the same bits: the tests compare them.
use std::arch::x86_64::*;

use super::sgd_step::{row_sums, step_terms, FilterRows, SgdRule};
use crate::metrics::lanes::{LaneSums, F32_RUN, STEP_LANES};
use crate::metrics::weights::StepSums;

/// Every row updated and summed with AVX-512; see `sgd_step::sgd_rows`.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgd_rows_avx512(rule: &SgdRule, rows: FilterRows) -> Vec<StepSums> {
    // SAFETY: the CPU has AVX-512F (this function's contract).
    let k = unsafe { Constants::<__m512>::new(rule) };
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
                // SAFETY: chunk c of a row of `fan_in` lies within each row slice; AVX-512F.
                unsafe { add_step_terms(&mut run, &k, at, b, g, v, a) };
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
        // The tail's terms straight into f64, as `LaneSums::add_element` takes them.
        let mut totals = [0.0f64; 6];
        for terms in tail_terms(rule, chunks * STEP_LANES, b, g, v, a) {
            for (total, term) in totals.iter_mut().zip(terms) {
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

/// Every row updated and summed with AVX2; see `sgd_step::sgd_rows`. Sixteen lanes as two
/// registers of eight: each half of a run is summed over its chunks in turn, then the run goes
/// to [`LaneSums`].
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn sgd_rows_avx2(rule: &SgdRule, rows: FilterRows) -> Vec<StepSums> {
    const HALF: usize = STEP_LANES / 2;
    // SAFETY: the CPU has AVX2 (this function's contract).
    let k = unsafe { Constants::<__m256>::new(rule) };
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
                    // SAFETY: lanes `half..half + HALF` of chunk c lie within each row slice;
                    // AVX2.
                    unsafe { add_step_terms(&mut acc, &k, at, b, g, v, a) };
                }
                for (run, acc) in run.iter_mut().zip(acc) {
                    // SAFETY: `half + HALF` lanes fit in a run's row of STEP_LANES.
                    unsafe { _mm256_storeu_ps(run[half..].as_mut_ptr(), acc) };
                }
            }
            sums.add_run(&run);
        }
        for terms in tail_terms(rule, chunks * STEP_LANES, b, g, v, a) {
            sums.add_element(terms);
        }
        out.push(row_sums(sums.take_totals()));
    }
    out
}

/// The step and terms of each element of a row from `whole` on (past its last whole chunk).
#[inline(always)]
fn tail_terms<'r>(
    rule: &'r SgdRule,
    whole: usize,
    b: &'r [f32],
    g: &'r [f32],
    v: &'r mut [f32],
    a: &'r mut [f32],
) -> impl Iterator<Item = [f32; 6]> + 'r {
    (b[whole..].iter().zip(&g[whole..]))
        .zip(v[whole..].iter_mut().zip(a[whole..].iter_mut()))
        .map(|((&b, &g), (v, a))| step_terms(rule, b, g, v, a))
}

/// A register of f32 lanes and the operations the step takes of it. Each is `unsafe`: the
/// CPU must have the register's instruction set.
trait Vector: Copy {
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, other: Self) -> Self;
    unsafe fn sub(self, other: Self) -> Self;
    unsafe fn mul(self, other: Self) -> Self;
}

/// [`Vector`] for one register type, from its instruction set and intrinsics.
macro_rules! vector {
    ($v:ty, $set:literal, $splat:ident, $load:ident, $store:ident,
     $add:ident, $sub:ident, $mul:ident) => {
        impl Vector for $v {
            #[inline]
            #[target_feature(enable = $set)]
            unsafe fn splat(x: f32) -> Self {
                $splat(x)
            }
            #[inline]
            #[target_feature(enable = $set)]
            unsafe fn load(p: *const f32) -> Self {
                // SAFETY: the caller's `p` has an element for each lane.
                unsafe { $load(p) }
            }
            #[inline]
            #[target_feature(enable = $set)]
            unsafe fn store(self, p: *mut f32) {
                // SAFETY: the caller's `p` has an element for each lane.
                unsafe { $store(p, self) }
            }
            #[inline]
            #[target_feature(enable = $set)]
            unsafe fn add(self, other: Self) -> Self {
                $add(self, other)
            }
            #[inline]
            #[target_feature(enable = $set)]
            unsafe fn sub(self, other: Self) -> Self {
                $sub(self, other)
            }
            #[inline]
            #[target_feature(enable = $set)]
            unsafe fn mul(self, other: Self) -> Self {
                $mul(self, other)
            }
        }
    };
}

vector!(
    __m512,
    "avx512f",
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_add_ps,
    _mm512_sub_ps,
    _mm512_mul_ps
);
vector!(
    __m256,
    "avx2",
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_add_ps,
    _mm256_sub_ps,
    _mm256_mul_ps
);

/// The rule's values in every lane.
struct Constants<V> {
    rule: SgdRule,
    lr: V,
    mu: V,
    l2: V,
    decoupled: V,
}

impl<V: Vector> Constants<V> {
    /// # Safety
    /// The CPU must have `V`'s instruction set.
    #[inline(always)]
    unsafe fn new(rule: &SgdRule) -> Constants<V> {
        // SAFETY: this function's contract.
        unsafe {
            Constants {
                rule: *rule,
                lr: V::splat(rule.lr),
                mu: V::splat(rule.mu),
                l2: V::splat(rule.l2.1),
                decoupled: V::splat(rule.decoupled.1),
            }
        }
    }
}

/// [`step_lanes`] at element `at` of one row's slices, its terms added to `sums`.
///
/// # Safety
/// Each slice must have an element at `at` and after it for each of `V`'s lanes; the CPU must
/// have `V`'s instruction set.
#[inline(always)]
unsafe fn add_step_terms<V: Vector>(
    sums: &mut [V; 6],
    k: &Constants<V>,
    at: usize,
    b: &[f32],
    g: &[f32],
    v: &mut [f32],
    a: &mut [f32],
) {
    // SAFETY: this function's contract.
    unsafe {
        let terms = step_lanes(
            k,
            b.as_ptr().add(at),
            g.as_ptr().add(at),
            v.as_mut_ptr().add(at),
            a.as_mut_ptr().add(at),
        );
        for (sum, term) in sums.iter_mut().zip(terms) {
            *sum = sum.add(term);
        }
    }
}

/// [`SgdRule::step`] in each of `V`'s lanes, stored, and their six terms ([`step_terms`]).
///
/// # Safety
/// Each pointer must have as many elements as `V` has lanes; the CPU must have `V`'s
/// instruction set.
#[inline(always)]
unsafe fn step_lanes<V: Vector>(
    k: &Constants<V>,
    b: *const f32,
    g: *const f32,
    v: *mut f32,
    a: *mut f32,
) -> [V; 6] {
    // SAFETY: this function's contract.
    unsafe {
        let (bv, gv, vv) = (V::load(b), V::load(g), V::load(v));
        let rule = &k.rule;
        let g1 = if rule.l2.0 { gv.add(k.l2.mul(bv)) } else { gv };
        let velocity = g1.add(k.mu.mul(vv));
        let step = if rule.nesterov {
            g1.add(k.mu.mul(velocity)).mul(k.lr)
        } else if rule.momentum {
            velocity.mul(k.lr)
        } else {
            g1.mul(k.lr)
        };
        let step = if rule.decoupled.0 {
            step.add(k.decoupled.mul(bv))
        } else {
            step
        };
        let av = bv.sub(step);
        av.store(a);
        if rule.momentum {
            velocity.store(v);
        }
        let d = av.sub(bv);
        [
            bv.mul(bv),
            gv.mul(gv),
            bv.mul(gv),
            av.mul(av),
            d.mul(d),
            bv.mul(d),
        ]
    }
}
