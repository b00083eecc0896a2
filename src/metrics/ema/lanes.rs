//! [`fit_lag_noise`](super::fit_lag_noise) of several windows at once, one per lane. A window's
//! sums are chains of dependent f64 adds (latency bound); the lanes' chains are independent, so
//! the CPU overlaps them and LLVM puts them side by side in vector registers.
use super::LagNoise;

/// [`fit_lag_noise`](super::fit_lag_noise) of `L` windows at once: `batch_means[t][l]` and
/// `running_means[t][l]` are lane l's values at step t, `f64`, or `f32` widened to f64 as they
/// are read (exact, so the same as widening them first). Each lane takes exactly the f64
/// operations, in the same order, that the one-window fit takes for its window alone (that fit
/// is the one-lane case), so the results are the same to the bit. (Rust never fuses a multiply
/// and an add, whatever the target features, so neither do the AVX paths.)
///
/// Returns None for fewer than 2 steps.
///
/// # Panics
/// If the two slices have different lengths.
pub fn fit_lag_noise_lanes<T: Copy + Into<f64>, const L: usize>(
    batch_means: &[[T; L]],
    running_means: &[[T; L]],
) -> Option<[LagNoise; L]> {
    assert_eq!(
        batch_means.len(),
        running_means.len(),
        "batch_means and running_means must cover the same steps"
    );
    // Wider registers only pay with several lanes.
    #[cfg(target_arch = "x86_64")]
    if L >= 4 {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { fit_avx512(batch_means, running_means) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { fit_avx2(batch_means, running_means) };
        }
    }
    fit(batch_means, running_means)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fit_avx512<T: Copy + Into<f64>, const L: usize>(
    batch_means: &[[T; L]],
    running_means: &[[T; L]],
) -> Option<[LagNoise; L]> {
    fit(batch_means, running_means)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fit_avx2<T: Copy + Into<f64>, const L: usize>(
    batch_means: &[[T; L]],
    running_means: &[[T; L]],
) -> Option<[LagNoise; L]> {
    fit(batch_means, running_means)
}

/// The fit, inlined into each target's function so that it is compiled for that target (with
/// plain loops: closures would stay out of line, compiled for the baseline target).
#[inline(always)]
fn fit<T: Copy + Into<f64>, const L: usize>(
    batch_means: &[[T; L]],
    running_means: &[[T; L]],
) -> Option<[LagNoise; L]> {
    let len = batch_means.len().min(running_means.len());
    let (batch_means, running_means) = (&batch_means[..len], &running_means[..len]);
    if len < 2 {
        return None;
    }
    let n = len as f64;
    let t_mean = (len - 1) as f64 / 2.0;
    let mut y_mean = [0.0; L];
    for row in batch_means {
        for l in 0..L {
            y_mean[l] += row[l].into();
        }
    }
    for y in &mut y_mean {
        *y /= n;
    }
    let (mut sxy, mut sxx) = ([0.0; L], 0.0);
    for (t, row) in batch_means.iter().enumerate() {
        let dt = t as f64 - t_mean;
        for l in 0..L {
            sxy[l] += dt * (row[l].into() - y_mean[l]);
        }
        sxx += dt * dt;
    }
    let mut slope = [0.0; L];
    for l in 0..L {
        slope[l] = sxy[l] / sxx;
    }
    let line = Line {
        t_mean,
        y_mean,
        slope,
    };
    // The residuals of both series from the line are recomputed in each pass rather than
    // stored, and each series has its own loop: each sum is the one a separate pass over stored
    // residuals would take, in the same order. (In one loop LLVM would pair the two series in
    // registers rather than the lanes.)
    let running_mean = line.residual_mean(running_means);
    let batch_mean = line.residual_mean(batch_means);
    let mut running_sq = [0.0; L];
    for (t, row) in running_means.iter().enumerate() {
        let residual = line.residuals(t, row);
        for l in 0..L {
            running_sq[l] += (residual[l] - running_mean[l]) * (residual[l] - running_mean[l]);
        }
    }
    let (mut batch_sq, mut batch_lag1) = ([0.0; L], [0.0; L]);
    // The first step has no predecessor: no product of it is added (not even 0).
    let mut previous = line.deviations(0, &batch_means[0], &batch_mean);
    for l in 0..L {
        batch_sq[l] += previous[l] * previous[l];
    }
    for (t, row) in batch_means.iter().enumerate().skip(1) {
        let dev = line.deviations(t, row, &batch_mean);
        for l in 0..L {
            batch_sq[l] += dev[l] * dev[l];
            batch_lag1[l] += previous[l] * dev[l];
        }
        previous = dev;
    }
    let mut fits = [LagNoise {
        slope: 0.0,
        lag_steps: 0.0,
        noise_std: 0.0,
        batch_noise_std: 0.0,
        batch_noise_lag1: 0.0,
    }; L];
    for (l, fit) in fits.iter_mut().enumerate() {
        let batch_var = batch_sq[l] / n;
        *fit = LagNoise {
            slope: slope[l],
            lag_steps: -running_mean[l] / slope[l],
            noise_std: (running_sq[l] / n).sqrt(),
            batch_noise_std: batch_var.sqrt(),
            batch_noise_lag1: lag1_autocorrelation(len, batch_lag1[l], batch_var),
        };
    }
    Some(fits)
}

/// The least-squares line f(t) = y_mean + slope·(t - t_mean) of each lane.
struct Line<const L: usize> {
    t_mean: f64,
    y_mean: [f64; L],
    slope: [f64; L],
}

impl<const L: usize> Line<L> {
    /// The residuals x - f(t) of a step's values.
    #[inline(always)]
    fn residuals<T: Copy + Into<f64>>(&self, t: usize, x: &[T; L]) -> [f64; L] {
        let dt = t as f64 - self.t_mean;
        let mut residual = [0.0; L];
        for l in 0..L {
            residual[l] = x[l].into() - (self.y_mean[l] + self.slope[l] * dt);
        }
        residual
    }

    /// The mean residual of a series.
    #[inline(always)]
    fn residual_mean<T: Copy + Into<f64>>(&self, series: &[[T; L]]) -> [f64; L] {
        let mut sum = [0.0; L];
        for (t, row) in series.iter().enumerate() {
            let residual = self.residuals(t, row);
            for l in 0..L {
                sum[l] += residual[l];
            }
        }
        let n = series.len() as f64;
        for s in &mut sum {
            *s /= n;
        }
        sum
    }

    /// The deviations of a step's residuals from their mean.
    #[inline(always)]
    fn deviations<T: Copy + Into<f64>>(&self, t: usize, x: &[T; L], mean: &[f64; L]) -> [f64; L] {
        let residual = self.residuals(t, x);
        let mut dev = [0.0; L];
        for l in 0..L {
            dev[l] = residual[l] - mean[l];
        }
        dev
    }
}

/// cov / ((n - 1)·var), cov = Σ (x_t - mean)(x_{t+1} - mean): the sample lag-1 autocorrelation
/// of n values (var biased).
fn lag1_autocorrelation(n: usize, cov: f64, var: f64) -> f64 {
    if n < 3 || var <= 0.0 {
        return f64::NAN;
    }
    cov / ((n - 1) as f64 * var)
}
