use std::collections::VecDeque;

use super::*;
use crate::metrics::ema::fit_lag_noise;
use crate::metrics::test_util::Gaussian;

/// The window as it was before the ring: a deque of steps, each with its own vectors, and the
/// one-channel fit it read them with. Kept verbatim (but for the imports) as the reference the
/// ring's reading must equal to the bit.
mod reference {
    use std::collections::VecDeque;

    use super::super::{EmaReading, EMA_MIN_STEPS, EMA_WINDOW, MAX_EMA_GAP};
    use crate::metrics::ema::{lag_steps, noise_var_correlated, optimal_momentum, LagNoise};

    pub fn fit_lag_noise(batch_means: &[f64], running_means: &[f64]) -> Option<LagNoise> {
        assert_eq!(
            batch_means.len(),
            running_means.len(),
            "batch_means and running_means must cover the same steps"
        );
        let len = batch_means.len();
        if len < 2 {
            return None;
        }
        let n = len as f64;
        let t_mean = (len - 1) as f64 / 2.0;
        let y_mean = batch_means.iter().fold(0.0, |sum, &y| sum + y) / n;
        let (sxy, sxx) = batch_means
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(sxy, sxx), (t, &y)| {
                let dt = t as f64 - t_mean;
                (sxy + dt * (y - y_mean), sxx + dt * dt)
            });
        let slope = sxy / sxx;
        // The residuals of both series from the line, recomputed in each pass rather than stored:
        // the publisher fits every layer's window every few steps. Each sum is the one a separate
        // pass over stored residuals would take, in the same order.
        let residuals = || {
            let fit = move |t: usize| y_mean + slope * (t as f64 - t_mean);
            (running_means.iter().zip(batch_means).enumerate())
                .map(move |(t, (&r, &y))| (r - fit(t), y - fit(t)))
        };
        let (running_sum, batch_sum) =
            residuals().fold((0.0, 0.0), |(rs, bs), (r, b)| (rs + r, bs + b));
        let (running_mean, batch_mean) = (running_sum / n, batch_sum / n);
        let (mut running_sq, mut batch_sq, mut batch_lag1) = (0.0, 0.0, 0.0);
        let mut previous: Option<f64> = None;
        for (r, b) in residuals() {
            running_sq += (r - running_mean) * (r - running_mean);
            let dev = b - batch_mean;
            batch_sq += dev * dev;
            if let Some(previous) = previous {
                batch_lag1 += previous * dev;
            }
            previous = Some(dev);
        }
        let batch_var = batch_sq / n;
        Some(LagNoise {
            slope,
            lag_steps: -running_mean / slope,
            noise_std: (running_sq / n).sqrt(),
            batch_noise_std: batch_var.sqrt(),
            batch_noise_lag1: lag1_autocorrelation(len, batch_lag1, batch_var),
        })
    }

    fn lag1_autocorrelation(n: usize, cov: f64, var: f64) -> f64 {
        if n < 3 || var <= 0.0 {
            return f64::NAN;
        }
        cov / ((n - 1) as f64 * var)
    }

    /// One step's batch means and post-update running means, of the channels followed.
    #[derive(Clone, Debug)]
    pub struct EmaStep {
        pub step: u64,
        pub batch_mean: Vec<f32>,
        pub running_mean_post: Vec<f32>,
    }

    /// Append `entry` to `window`, starting the window over after a gap, and keeping at most
    /// [`EMA_WINDOW`] steps. The caller clears the window when the momentum or the mode changes:
    /// the theory holds for one momentum, while the running statistics update.
    pub fn push_step(window: &mut VecDeque<EmaStep>, entry: EmaStep) {
        let successive = window
            .back()
            .is_some_and(|last| entry.step > last.step && entry.step - last.step <= MAX_EMA_GAP);
        if !successive {
            window.clear();
        }
        if window.len() == EMA_WINDOW {
            window.pop_front();
        }
        window.push_back(entry);
    }

    /// The reading of `window` at momentum `m` (0 < m < 1), from [`EMA_MIN_STEPS`] steps on.
    pub fn read_window(window: &VecDeque<EmaStep>, m: f64) -> Option<EmaReading> {
        if window.len() < EMA_MIN_STEPS || !(m > 0.0 && m < 1.0) {
            return None;
        }
        let channels = window.iter().map(|s| s.batch_mean.len()).min()?;
        let (mut lags, mut noise, mut noise_pred, mut best) = (Vec::new(), 0.0, 0.0, Vec::new());
        let mut correlation = 0.0;
        let (mut batch, mut running) = (Vec::new(), Vec::new());
        for c in 0..channels {
            batch.clear();
            batch.extend(window.iter().map(|s| f64::from(s.batch_mean[c])));
            running.clear();
            running.extend(
                window
                    .iter()
                    .map(|s| f64::from(s.running_mean_post.get(c).copied().unwrap_or(f32::NAN))),
            );
            let fit = fit_lag_noise(&batch, &running)?;
            let v = fit.batch_noise_std * fit.batch_noise_std;
            // A constant channel has no batch noise and so no correlation: count it as independent.
            let phi = if fit.batch_noise_lag1.is_finite() {
                fit.batch_noise_lag1
            } else {
                0.0
            };
            noise += fit.noise_std / channels as f64;
            noise_pred += noise_var_correlated(m, v, phi).sqrt() / channels as f64;
            correlation += phi / channels as f64;
            // A trend is measurable when it moves the mean by more than the noise over the window.
            if fit.slope.abs() * window.len() as f64 > 4.0 * fit.batch_noise_std {
                lags.push(fit.lag_steps);
                best.push(optimal_momentum(fit.slope, v));
            }
        }
        let median = |mut xs: Vec<f64>| -> Option<f64> {
            xs.retain(|x| x.is_finite());
            xs.sort_by(f64::total_cmp);
            xs.get(xs.len() / 2).copied()
        };
        Some(EmaReading {
            steps: window.len(),
            lag: median(lags),
            lag_predicted: lag_steps(m),
            noise,
            noise_predicted: noise_pred,
            batch_correlation: correlation,
            best_momentum: median(best),
        })
    }
}

use reference::{push_step, read_window, EmaStep};

/// A reading's bits: `assert_eq!` on the reading itself fails on identical NaNs.
fn bits(reading: &Option<EmaReading>) -> Option<(usize, [Option<u64>; 6])> {
    reading.as_ref().map(|r| {
        let b = |x: f64| Some(x.to_bits());
        (
            r.steps,
            [
                r.lag.map(f64::to_bits),
                b(r.lag_predicted),
                b(r.noise),
                b(r.noise_predicted),
                b(r.batch_correlation),
                r.best_momentum.map(f64::to_bits),
            ],
        )
    })
}

/// A layer's batch means, drifting with noise, and its running means as an EMA of them (f32,
/// as a layer holds them); channel `nan_channel` has NaN batch means at a few steps.
struct Layer {
    gauss: Gaussian,
    running: Vec<f32>,
    trend: Vec<f64>,
    nan_channel: usize,
}

impl Layer {
    fn new(channels: usize, seed: u64) -> Layer {
        let mut gauss = Gaussian::new(seed);
        let trend = (0..channels).map(|_| 2e-3 * gauss.sample()).collect();
        Layer {
            gauss,
            running: vec![0.0; channels],
            trend,
            nan_channel: channels / 2,
        }
    }

    fn step(&mut self, step: u64) -> (Vec<f32>, Vec<f32>) {
        let batch: Vec<f32> = (self.trend.iter().enumerate())
            .map(|(c, &b)| {
                if c == self.nan_channel && step % 97 < 3 {
                    f32::NAN
                } else {
                    (0.1 * c as f64 + b * step as f64 + 0.05 * self.gauss.sample()) as f32
                }
            })
            .collect();
        for (r, &b) in self.running.iter_mut().zip(&batch) {
            *r = 0.9 * *r + 0.1 * b;
        }
        (batch, self.running.clone())
    }
}

/// Both windows fed the same steps, read at a few momenta after every push.
struct Both {
    old: VecDeque<EmaStep>,
    new: EmaWindow,
    reads: usize,
}

impl Both {
    fn push(&mut self, step: u64, batch: &[f32], running: &[f32]) {
        push_step(
            &mut self.old,
            EmaStep {
                step,
                batch_mean: batch.to_vec(),
                running_mean_post: running.to_vec(),
            },
        );
        self.new.push(step, batch, running);
        self.check();
    }

    fn check(&mut self) {
        let old_steps: Vec<u64> = self.old.iter().map(|s| s.step).collect();
        assert_eq!(self.new.steps().collect::<Vec<_>>(), old_steps);
        assert_eq!(self.new.len(), self.old.len());
        for m in [0.1, 0.03] {
            let old = read_window(&self.old, m);
            let new = self.new.read(m);
            assert_eq!(bits(&new), bits(&old), "{new:?} vs {old:?}");
            self.reads += usize::from(new.is_some());
        }
    }
}

/// The ring reads what the deque read, bit for bit: channel counts around the lane width, a
/// channel with NaN batch means, a stream longer than the window (the ring wraps), a gap that
/// starts over, a bridged gap, a repeated step, a rewind, and running means missing.
#[test]
fn the_ring_reads_what_the_deque_read() {
    for channels in [1, 7, 8, 9, 64] {
        let mut layer = Layer::new(channels, channels as u64);
        let mut both = Both {
            old: VecDeque::new(),
            new: EmaWindow::default(),
            reads: 0,
        };
        let mut feed = |both: &mut Both, steps: std::ops::RangeInclusive<u64>| {
            for s in steps {
                let (batch, running) = layer.step(s);
                both.push(s, &batch, &running);
            }
        };
        feed(&mut both, 1..=2 * EMA_WINDOW as u64 + 37);
        assert_eq!(both.new.len(), EMA_WINDOW);
        // A gap of 5 starts over; one of 3 is bridged.
        feed(&mut both, 2 * EMA_WINDOW as u64 + 42..=900);
        assert_eq!(both.new.len(), 900 - 2 * EMA_WINDOW - 41);
        feed(&mut both, 903..=1000);
        // A rewind, then on from there.
        both.old.retain(|e| e.step <= 960);
        both.new.truncate_after(960);
        both.check();
        assert_eq!(both.new.last_step(), Some(960));
        feed(&mut both, 961..=1500);
        // A step that does not follow starts over.
        feed(&mut both, 1500..=1560);
        assert_eq!(both.new.len(), 61);
        // Running means missing past the first channel (NaN).
        for s in 1561..=1620 {
            let (batch, running) = layer.step(s);
            both.push(s, &batch, &running[..1]);
        }
        assert!(both.reads > 1000, "{} readings compared", both.reads);
    }
}

/// Pushes after the first allocate nothing; a new channel count starts over (its channels are
/// others) and lays the ring out again.
#[test]
fn the_ring_is_allocated_once_per_channel_count() {
    let mut window = EmaWindow::default();
    assert_eq!(window.heap_bytes(), 0);
    window.push(1, &[1.0; 64], &[0.5; 64]);
    let bytes = window.heap_bytes();
    assert_eq!(bytes, EMA_WINDOW * (8 + 2 * 64 * 4));
    for s in 2..=3 * EMA_WINDOW as u64 {
        window.push(s, &[s as f32; 64], &[0.5; 64]);
    }
    assert_eq!(window.heap_bytes(), bytes);
    assert_eq!(window.len(), EMA_WINDOW);
    window.push(3 * EMA_WINDOW as u64 + 1, &[1.0; 8], &[0.5; 8]);
    assert_eq!((window.len(), window.channels()), (1, 8));
    window.clear();
    assert!(window.is_empty());
    assert_eq!(window.read(0.1), None);
}

#[test]
fn push_followed_takes_the_channels_followed() {
    let mut window = EmaWindow::default();
    let batch: Vec<f32> = (0..10).map(|c| c as f32).collect();
    for s in 1..=EMA_MIN_STEPS as u64 {
        window.push_followed(s, [9, 3, 12].into_iter(), &batch, &batch[..5]);
    }
    let mut same = EmaWindow::default();
    for s in 1..=EMA_MIN_STEPS as u64 {
        same.push(s, &[9.0, 3.0, f32::NAN], &[f32::NAN, 3.0]);
    }
    assert_eq!(bits(&window.read(0.1)), bits(&same.read(0.1)));
    assert!(window.read(0.1).is_some_and(|r| r.noise.is_nan()));
}

#[test]
fn the_window_is_bounded_and_starts_over_after_a_gap() {
    let mut window = EmaWindow::default();
    let push = |window: &mut EmaWindow, s: u64| window.push(s, &[s as f32], &[0.0]);
    for s in 1..=(EMA_WINDOW as u64 + 10) {
        push(&mut window, s);
    }
    assert_eq!(window.len(), EMA_WINDOW);
    assert_eq!(window.steps().next(), Some(11));
    push(&mut window, EMA_WINDOW as u64 + 13);
    assert_eq!(window.len(), EMA_WINDOW, "a gap of 3 steps is bridged");
    push(&mut window, EMA_WINDOW as u64 + 17);
    assert_eq!(window.len(), 1, "a gap of 4 starts over");
    assert_eq!(window.read(0.1), None, "too few steps");
}

/// Momenta outside (0, 1) read nothing, as before.
#[test]
fn a_momentum_outside_the_unit_interval_reads_nothing() {
    let mut window = EmaWindow::default();
    for s in 1..=EMA_MIN_STEPS as u64 {
        window.push(s, &[s as f32], &[0.0]);
    }
    assert!(window.read(0.1).is_some());
    for m in [0.0, 1.0, f64::NAN, -0.5] {
        assert_eq!(window.read(m), None);
    }
}

/// The scalar fit is the lane fit of one lane: every lane of an 8-lane fit equals it.
#[test]
fn the_lane_fit_is_the_scalar_fit_per_lane() {
    let mut layer = Layer::new(8, 77);
    let (mut batch, mut running) = (Vec::new(), Vec::new());
    for s in 0..EMA_WINDOW as u64 {
        let (b, r) = layer.step(s);
        batch.push(b.map_f64());
        running.push(r.map_f64());
    }
    let fits = fit_lag_noise_lanes(&batch, &running).expect("a fit");
    for (l, fit) in fits.iter().enumerate() {
        let lane = |rows: &[[f64; 8]]| rows.iter().map(|row| row[l]).collect::<Vec<_>>();
        let scalar = fit_lag_noise(&lane(&batch), &lane(&running)).expect("a fit");
        let bits = |f: &crate::metrics::ema::LagNoise| {
            [
                f.slope,
                f.lag_steps,
                f.noise_std,
                f.batch_noise_std,
                f.batch_noise_lag1,
            ]
            .map(f64::to_bits)
        };
        assert_eq!(bits(fit), bits(&scalar), "lane {l}");
    }
}

trait MapF64 {
    fn map_f64(&self) -> [f64; 8];
}

impl MapF64 for Vec<f32> {
    fn map_f64(&self) -> [f64; 8] {
        std::array::from_fn(|l| f64::from(self[l]))
    }
}
