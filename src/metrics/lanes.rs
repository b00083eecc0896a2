//! Sums of f32 terms taken in vector lanes with f64 totals, and the dispatch that compiles a
//! loop for the widest vector unit the CPU has. The weight readings run these over every conv
//! weight every step ([`super::weights`]), so they are worth a vector register.

/// f32 lanes of a [`LaneSums`]: one AVX-512 register.
pub const STEP_LANES: usize = 16;
/// Chunks of [`STEP_LANES`] terms a lane adds in f32 before its f64 total takes the sum.
pub const F32_RUN: usize = 8;

/// N sums of f32 terms in [`STEP_LANES`] lanes with f64 totals. The caller adds the terms of
/// each of [`runs`] in f32, lane by lane (at most [`F32_RUN`] terms a lane), and hands the run
/// over to each lane's f64 total; the terms of a tail too short for a chunk go straight into
/// f64, one element at a time. Each total is within about (F32_RUN + 1)·2⁻²⁴ ≈ 5e-7 of the sum
/// of |terms| of the exact sum, f32-level accuracy, at about a third less cost than f64 sums.
/// The same terms in the same order give the same bits.
pub struct LaneSums<const N: usize> {
    lanes: [[f64; STEP_LANES]; N],
    tail: [f64; N],
}

/// The runs of chunk indices, at most [`F32_RUN`] chunks each, of `chunks` chunks.
#[inline(always)]
pub fn runs(chunks: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..chunks)
        .step_by(F32_RUN)
        .map(move |first| first..chunks.min(first + F32_RUN))
}

impl<const N: usize> LaneSums<N> {
    #[inline(always)]
    pub fn new() -> Self {
        LaneSums {
            lanes: [[0.0; STEP_LANES]; N],
            tail: [0.0; N],
        }
    }

    /// One run's f32 sums, as `[sum][lane]`.
    #[inline(always)]
    pub fn add_run(&mut self, run: &[[f32; STEP_LANES]; N]) {
        for (lanes, run) in self.lanes.iter_mut().zip(run) {
            for (l, r) in lanes.iter_mut().zip(run) {
                *l += f64::from(*r);
            }
        }
    }

    /// One tail element's terms.
    #[inline(always)]
    pub fn add_element(&mut self, terms: [f32; N]) {
        for (total, term) in self.tail.iter_mut().zip(terms) {
            *total += f64::from(term);
        }
    }

    /// The N totals, the sums starting again from 0: the tail's plus the lanes', these added
    /// pairwise (lane l and l + 8, then l + 4, ...: no chain of sixteen dependent adds).
    #[inline(always)]
    pub fn take_totals(&mut self) -> [f64; N] {
        let mut totals = self.tail;
        for (total, lanes) in totals.iter_mut().zip(&self.lanes) {
            let s8: [f64; 8] = std::array::from_fn(|l| lanes[l] + lanes[l + 8]);
            let s4: [f64; 4] = std::array::from_fn(|l| s8[l] + s8[l + 4]);
            *total += (s4[0] + s4[2]) + (s4[1] + s4[3]);
        }
        *self = LaneSums::new();
        totals
    }
}

/// Adds one element's `terms` to lane `lane` of a run.
#[inline(always)]
pub fn add_terms<const N: usize>(run: &mut [[f32; STEP_LANES]; N], lane: usize, terms: [f32; N]) {
    for (sum, term) in run.iter_mut().zip(terms) {
        sum[lane] += term;
    }
}

impl<const N: usize> Default for LaneSums<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A loop over N sums worth compiling for each vector unit: [`widest_lanes`] runs it. Mark
/// `run` `#[inline(always)]`, with everything it calls, so that it is compiled inside the
/// target-feature function (closures are not inlined there reliably).
pub trait LaneWork<const N: usize> {
    type Output;
    /// Adds the terms to `sums`, taking totals as it goes ([`LaneSums::take_totals`]).
    fn run(self, sums: &mut LaneSums<N>) -> Self::Output;
}

/// `work` run as compiled for AVX-512 or AVX2 when this CPU has it, else as plain code. The
/// arithmetic is the same lane by lane on every path (Rust never fuses a multiply and an add
/// on its own), so are the results. The sums live out here, behind a pointer: kept in
/// registers inside the loop, they broke its vectorisation (three times slower, measured).
#[inline(always)]
pub fn widest_lanes<const N: usize, W: LaneWork<N>>(work: W) -> W::Output {
    dispatch(work, &mut LaneSums::new())
}

#[inline(never)]
fn dispatch<const N: usize, W: LaneWork<N>>(work: W, sums: &mut LaneSums<N>) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { run_avx512(work, sums) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { run_avx2(work, sums) };
        }
    }
    work.run(sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512<const N: usize, W: LaneWork<N>>(work: W, sums: &mut LaneSums<N>) -> W::Output {
    work.run(sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2<const N: usize, W: LaneWork<N>>(work: W, sums: &mut LaneSums<N>) -> W::Output {
    work.run(sums)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums of x², x·y and y over two rows of `len`, as a [`LaneWork`].
    struct Sums<'a>(&'a [f32], &'a [f32]);

    impl LaneWork<3> for Sums<'_> {
        type Output = [f64; 3];
        #[inline(always)]
        fn run(self, sums: &mut LaneSums<3>) -> [f64; 3] {
            let terms = |x: f32, y: f32| [x * x, x * y, y];
            let (xs, x_tail) = self.0.as_chunks::<STEP_LANES>();
            let (ys, y_tail) = self.1.as_chunks::<STEP_LANES>();
            for run in runs(xs.len()) {
                let mut acc = [[0.0; STEP_LANES]; 3];
                for c in run {
                    for l in 0..STEP_LANES {
                        add_terms(&mut acc, l, terms(xs[c][l], ys[c][l]));
                    }
                }
                sums.add_run(&acc);
            }
            for (&x, &y) in x_tail.iter().zip(y_tail) {
                sums.add_element(terms(x, y));
            }
            sums.take_totals()
        }
    }

    fn noise(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(13);
                h as f32 / u32::MAX as f32 - 0.5
            })
            .collect()
    }

    /// The vector paths (whichever this CPU has) add exactly what the plain loop adds, over
    /// several runs, a partial last run and a tail.
    #[test]
    fn every_path_adds_the_same_bits() {
        let len = STEP_LANES * (2 * F32_RUN + 3) + 5;
        let (x, y) = (noise(len, 1), noise(len, 2));
        let dispatched = widest_lanes(Sums(&x, &y));
        assert_eq!(dispatched, Sums(&x, &y).run(&mut LaneSums::new()));
        assert!(dispatched.iter().all(|s| s.is_finite() && *s != 0.0));
    }

    /// Each total is the exact sum to within (F32_RUN + 1)·2⁻²⁴ of the sum of |terms|, over
    /// lengths with whole runs, a partial run, a tail only, and nothing.
    #[test]
    fn totals_are_within_their_f32_bound() {
        let bound = (F32_RUN + 1) as f64 * f64::from(f32::EPSILON) / 2.0;
        for len in [0, 5, 16, 27, 144, 16 * F32_RUN * 3 + 7] {
            let (x, y) = (noise(len, 3), noise(len, 4));
            let got = widest_lanes(Sums(&x, &y));
            let exact = |f: fn(f64, f64) -> f64| {
                let terms = x.iter().zip(&y).map(|(&a, &b)| f(a.into(), b.into()));
                let (sum, magnitude) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
                (sum, magnitude)
            };
            let want = [exact(|a, _| a * a), exact(|a, b| a * b), exact(|_, b| b)];
            for (k, (got, (exact, magnitude))) in got.into_iter().zip(want).enumerate() {
                assert!(
                    (got - exact).abs() <= bound * magnitude,
                    "len {len}, sum {k}: {got} against {exact}"
                );
            }
        }
    }
}
