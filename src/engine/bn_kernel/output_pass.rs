//! The BN output pass over one channel: y = a(x), with or without the ReLU, written to the
//! output in one pass and, when measuring, summed in that same pass for the ReLU moments.
//!
//! The loops are written lane by lane over fixed-size arrays so they vectorise, and compiled
//! three times (AVX-512, AVX2, the baseline x86-64's SSE2), picked at run time. Each lane does
//! the same f32 operations on every path, so the output and the sums are the same bits.
use super::Affine;
use crate::metrics::clamp_non_negative;
use crate::metrics::moments::ReluMoments;

/// Writes one channel's output: ReLU(y) with `RELU`, else y.
pub(super) fn apply<const RELU: bool>(xs: &[f32], a: &Affine, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { apply_avx512::<RELU>(xs, a, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { apply_avx2::<RELU>(xs, a, out) };
        }
    }
    apply_portable::<RELU>(xs, a, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn apply_avx512<const RELU: bool>(xs: &[f32], a: &Affine, out: &mut [f32]) {
    apply_portable::<RELU>(xs, a, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_avx2<const RELU: bool>(xs: &[f32], a: &Affine, out: &mut [f32]) {
    apply_portable::<RELU>(xs, a, out);
}

#[inline(always)]
fn apply_portable<const RELU: bool>(xs: &[f32], a: &Affine, out: &mut [f32]) {
    for (y, &x) in out.iter_mut().zip(xs) {
        *y = output::<RELU>(a.apply(x));
    }
}

/// What the pass stores of y. f32::max turns NaN into 0, as dfdx's ReLU does; the backward's
/// mask is `y > 0`, as its.
#[inline(always)]
fn output<const RELU: bool>(y: f32) -> f32 {
    if RELU {
        y.max(0.0)
    } else {
        y
    }
}

/// max(0, y) - k, keeping NaN (as the metrics measure the ReLU output).
#[inline(always)]
fn relu_minus(y: f32, k: f32) -> f32 {
    (if y < 0.0 { 0.0 } else { y }) - k
}

/// 1 where y counts as active (y > 0), else 0.
#[inline(always)]
fn active(y: f32) -> f32 {
    if y > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Writes one channel's output (as [`apply`]) and returns the moments of max(0, y) and
/// P(y > 0), as [`relu_moments`](crate::metrics::moments::relu_moments) measures them. The
/// sums are of y - `shift`, so a channel far above zero does not lose its variance to
/// cancellation.
pub(super) fn apply_measuring<const RELU: bool>(
    xs: &[f32],
    a: &Affine,
    shift: f64,
    out: &mut [f32],
) -> ReluMoments {
    let k = shift as f32;
    let mut sums = ReluSums::default();
    sums.apply::<RELU>(xs, a, k, out);
    sums.moments(k, xs.len())
}

/// Σ d, Σ d² and the count of y > 0, for d = max(0, y) - k with NaN kept: f32 sums in
/// [`Self::LANES`] lanes over blocks of [`Self::BLOCK`] values (eight per lane: a few f32
/// roundings, vectorised), each block's added into f64 lanes (so the error does not grow with
/// the batch).
#[derive(Default)]
pub(super) struct ReluSums {
    pub(super) sum: [f64; Self::LANES],
    pub(super) sum_sq: [f64; Self::LANES],
    pub(super) active: [f64; Self::LANES],
}

impl ReluSums {
    /// One AVX-512 register of f32.
    pub(super) const LANES: usize = 16;
    pub(super) const BLOCK: usize = 8 * Self::LANES;

    /// y = a(x) into `out` (ReLU'd with `RELU`), summed on the way.
    pub(super) fn apply<const RELU: bool>(
        &mut self,
        xs: &[f32],
        a: &Affine,
        k: f32,
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                return unsafe { self.apply_avx512::<RELU>(xs, a, k, out) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { self.apply_avx2::<RELU>(xs, a, k, out) };
            }
        }
        self.apply_portable::<RELU>(xs, a, k, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn apply_avx512<const RELU: bool>(
        &mut self,
        xs: &[f32],
        a: &Affine,
        k: f32,
        out: &mut [f32],
    ) {
        self.apply_portable::<RELU>(xs, a, k, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn apply_avx2<const RELU: bool>(
        &mut self,
        xs: &[f32],
        a: &Affine,
        k: f32,
        out: &mut [f32],
    ) {
        self.apply_portable::<RELU>(xs, a, k, out);
    }

    #[inline(always)]
    pub(super) fn apply_portable<const RELU: bool>(
        &mut self,
        xs: &[f32],
        a: &Affine,
        k: f32,
        out: &mut [f32],
    ) {
        assert_eq!(xs.len(), out.len());
        for (ob, xb) in out.chunks_mut(Self::BLOCK).zip(xs.chunks(Self::BLOCK)) {
            let (o_lanes, o_tail) = ob.as_chunks_mut::<{ Self::LANES }>();
            let (x_lanes, x_tail) = xb.as_chunks::<{ Self::LANES }>();
            let mut s = [0.0f32; Self::LANES];
            let mut q = [0.0f32; Self::LANES];
            let mut c = [0.0f32; Self::LANES];
            for (o, x) in o_lanes.iter_mut().zip(x_lanes) {
                for l in 0..Self::LANES {
                    let y = a.apply(x[l]);
                    let d = relu_minus(y, k);
                    s[l] += d;
                    q[l] += d * d;
                    c[l] += active(y);
                    o[l] = output::<RELU>(y);
                }
            }
            for l in 0..Self::LANES {
                self.sum[l] += f64::from(s[l]);
                self.sum_sq[l] += f64::from(q[l]);
                self.active[l] += f64::from(c[l]);
            }
            // Fewer than LANES values left, in the last block only: summed in f64.
            for (o, &x) in o_tail.iter_mut().zip(x_tail) {
                let y = a.apply(x);
                let d = f64::from(relu_minus(y, k));
                self.sum[0] += d;
                self.sum_sq[0] += d * d;
                self.active[0] += f64::from(active(y));
                *o = output::<RELU>(y);
            }
        }
    }

    fn moments(&self, k: f32, n: usize) -> ReluMoments {
        let n = n as f64;
        let mean_d = self.sum.iter().sum::<f64>() / n;
        ReluMoments {
            mean: f64::from(k) + mean_d,
            var: clamp_non_negative(self.sum_sq.iter().sum::<f64>() / n - mean_d * mean_d),
            active_fraction: self.active.iter().sum::<f64>() / n,
        }
    }
}
