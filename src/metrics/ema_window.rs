//! The running mean as an EMA, measured over a window of successive steps (BN-METRICS §2): the
//! window a stream of steps keeps, and its reading averaged over channels. The producer runs it
//! on every step and publishes the reading (format 1.5); a viewer runs it on what it receives,
//! for streams that do not carry one.
use super::ema::{
    fit_lag_noise_lanes, lag_steps, noise_var_correlated, optimal_momentum, LagNoise,
};

/// Successive steps kept per layer: a few times 1/m at the default m = 0.1.
pub const EMA_WINDOW: usize = 400;
/// Steps the window needs before it is read.
pub const EMA_MIN_STEPS: usize = 50;
/// A step or two missing (snapshots coalesced while a consumer was busy) barely moves a fit
/// over hundreds of steps; a longer gap starts the window over.
const MAX_EMA_GAP: u64 = 3;

/// `n` of `channels` channels, evenly spaced from channel 0 (all of them when n >= channels):
/// the channels a window follows, and the dashboard charts.
pub fn spread(channels: usize, n: usize) -> impl ExactSizeIterator<Item = usize> {
    let n = n.min(channels);
    (0..n).map(move |k| k * channels / n)
}

/// Channels fitted side by side ([`fit_lag_noise_lanes`]): the lanes make the fit's sums
/// independent chains, and LLVM packs them into vector registers. Sixteen f64 lanes are two
/// AVX-512 registers, whose chains of adds overlap: a 64-channel window reads in about a
/// fifth less time than with eight lanes.
const LANES: usize = 16;

/// The last successive steps of a stream, with the batch means and post-update running means
/// of the channels followed: a ring of at most [`EMA_WINDOW`] steps, time-major (a step's
/// channels side by side), allocated once per channel count.
///
/// Steps start over after a gap of more than a few steps, at a step that does not follow the
/// last one, and at a step with another channel count than the window's (its channels are not
/// the same ones). The caller clears the window when the momentum or the mode changes: the
/// theory holds for one momentum, while the running statistics update.
#[derive(Clone, Debug, Default)]
pub struct EmaWindow {
    channels: usize,
    /// The slot of the oldest step.
    head: usize,
    len: usize,
    /// [`EMA_WINDOW`] slots once a step was pushed.
    steps: Vec<u64>,
    /// `channels` values per slot.
    batch_mean: Vec<f32>,
    running_mean_post: Vec<f32>,
}

impl EmaWindow {
    /// Steps held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Channels per step (those of the last step pushed).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Forget every step (the ring stays allocated).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The slots of the steps held, oldest first.
    fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).map(|i| (self.head + i) % EMA_WINDOW)
    }

    /// The steps held, oldest first.
    pub fn steps(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots().map(|s| self.steps[s])
    }

    pub fn last_step(&self) -> Option<u64> {
        self.len
            .checked_sub(1)
            .map(|i| self.steps[(self.head + i) % EMA_WINDOW])
    }

    /// Forget the steps after `step` (a rewind).
    pub fn truncate_after(&mut self, step: u64) {
        // Steps increase along the window: the ones kept are a prefix.
        self.len = self.steps().take_while(|&s| s <= step).count();
    }

    /// Heap bytes of the ring.
    pub fn heap_bytes(&self) -> usize {
        self.steps.capacity() * std::mem::size_of::<u64>()
            + (self.batch_mean.capacity() + self.running_mean_post.capacity())
                * std::mem::size_of::<f32>()
    }

    /// Append `step`, whose channels are all of `batch_mean`; a running mean missing for a
    /// channel (`running_mean_post` shorter) is NaN.
    pub fn push(&mut self, step: u64, batch_mean: &[f32], running_mean_post: &[f32]) {
        self.push_followed(step, 0..batch_mean.len(), batch_mean, running_mean_post);
    }

    /// Append `step`, following the channels `followed` of `batch_mean` and
    /// `running_mean_post`: the window's channel k is channel `followed[k]`, NaN where it is
    /// missing. Allocates only at the first step, or at a new channel count.
    pub fn push_followed(
        &mut self,
        step: u64,
        followed: impl ExactSizeIterator<Item = usize>,
        batch_mean: &[f32],
        running_mean_post: &[f32],
    ) {
        let channels = followed.len();
        let successive = channels == self.channels
            && self
                .last_step()
                .is_some_and(|last| step > last && step - last <= MAX_EMA_GAP);
        if !successive {
            self.clear();
        }
        if channels != self.channels || self.steps.is_empty() {
            self.channels = channels;
            self.steps.resize(EMA_WINDOW, 0);
            self.batch_mean.clear();
            self.batch_mean.resize(EMA_WINDOW * channels, f32::NAN);
            self.running_mean_post.clear();
            self.running_mean_post
                .resize(EMA_WINDOW * channels, f32::NAN);
        }
        if self.len == EMA_WINDOW {
            self.head = (self.head + 1) % EMA_WINDOW;
            self.len -= 1;
        }
        let slot = (self.head + self.len) % EMA_WINDOW;
        self.len += 1;
        self.steps[slot] = step;
        let values = slot * channels..(slot + 1) * channels;
        let batch = &mut self.batch_mean[values.clone()];
        let running = &mut self.running_mean_post[values];
        for ((c, b), r) in followed.zip(batch).zip(running) {
            *b = batch_mean.get(c).copied().unwrap_or(f32::NAN);
            *r = running_mean_post.get(c).copied().unwrap_or(f32::NAN);
        }
    }

    /// Channels `first..first + LANES` of every step into `batch` and `running`, one row per
    /// step; lanes past the last channel repeat it (their fits are dropped).
    fn gather(&self, first: usize, batch: &mut Vec<[f32; LANES]>, running: &mut Vec<[f32; LANES]>) {
        let width = (self.channels - first).min(LANES);
        // The ring's two runs of successive slots: from the oldest step to the end of the
        // ring, then from its start.
        let end = self.head + self.len;
        let runs = [
            self.head..end.min(EMA_WINDOW),
            0..end.saturating_sub(EMA_WINDOW),
        ];
        let lanes = |step: &[f32]| -> [f32; LANES] {
            let values = &step[first..first + width];
            match <[f32; LANES]>::try_from(values) {
                Ok(full) => full,
                Err(_) => std::array::from_fn(|l| values[l.min(width - 1)]),
            }
        };
        batch.clear();
        running.clear();
        for run in runs {
            let values = run.start * self.channels..run.end * self.channels;
            for (ring, rows) in [
                (&self.batch_mean, &mut *batch),
                (&self.running_mean_post, &mut *running),
            ] {
                rows.extend(ring[values.clone()].chunks_exact(self.channels).map(lanes));
            }
        }
    }

    /// The reading at momentum `m` (0 < m < 1), from [`EMA_MIN_STEPS`] steps on.
    pub fn read(&self, m: f64) -> Option<EmaReading> {
        if self.len < EMA_MIN_STEPS || !(m > 0.0 && m < 1.0) {
            return None;
        }
        let channels = self.channels;
        let mut sums = ChannelSums::default();
        let (mut batch, mut running) = (Vec::with_capacity(self.len), Vec::with_capacity(self.len));
        for first in (0..channels).step_by(LANES) {
            self.gather(first, &mut batch, &mut running);
            let fits = fit_lag_noise_lanes(&batch, &running)?;
            for fit in &fits[..(channels - first).min(LANES)] {
                sums.add(fit, m, channels, self.len);
            }
        }
        Some(sums.reading(self.len, m))
    }
}

/// What a reading sums over channels, in channel order.
#[derive(Default)]
struct ChannelSums {
    lags: Vec<f64>,
    best: Vec<f64>,
    noise: f64,
    noise_pred: f64,
    correlation: f64,
}

impl ChannelSums {
    /// Add one channel's fit, of `channels` over `steps` steps.
    fn add(&mut self, fit: &LagNoise, m: f64, channels: usize, steps: usize) {
        let v = fit.batch_noise_std * fit.batch_noise_std;
        // A constant channel has no batch noise and so no correlation: count it as independent.
        let phi = if fit.batch_noise_lag1.is_finite() {
            fit.batch_noise_lag1
        } else {
            0.0
        };
        self.noise += fit.noise_std / channels as f64;
        self.noise_pred += noise_var_correlated(m, v, phi).sqrt() / channels as f64;
        self.correlation += phi / channels as f64;
        // A trend is measurable when it moves the mean by more than the noise over the window.
        if fit.slope.abs() * steps as f64 > 4.0 * fit.batch_noise_std {
            self.lags.push(fit.lag_steps);
            self.best.push(optimal_momentum(fit.slope, v));
        }
    }

    fn reading(self, steps: usize, m: f64) -> EmaReading {
        let median = |mut xs: Vec<f64>| -> Option<f64> {
            xs.retain(|x| x.is_finite());
            xs.sort_by(f64::total_cmp);
            xs.get(xs.len() / 2).copied()
        };
        EmaReading {
            steps,
            lag: median(self.lags),
            lag_predicted: lag_steps(m),
            noise: self.noise,
            noise_predicted: self.noise_pred,
            batch_correlation: self.correlation,
            best_momentum: median(self.best),
        }
    }
}

/// The running mean as an EMA, averaged over the channels of a window: (measured lag,
/// predicted lag (1-m)/m, measured noise, predicted noise √(m/(2-m)·v·(1+(1-m)φ)/(1-(1-m)φ))
/// with φ the batch means' lag-1 correlation, suggested m*). The lag is `None` when the batch
/// means show no trend to lag behind (a stationary layer: only the noise is measurable).
#[derive(Clone, Debug, PartialEq)]
pub struct EmaReading {
    /// Steps the reading was measured over.
    pub steps: usize,
    pub lag: Option<f64>,
    pub lag_predicted: f64,
    pub noise: f64,
    pub noise_predicted: f64,
    /// Channel mean of φ: about 0 for independent batches.
    pub batch_correlation: f64,
    pub best_momentum: Option<f64>,
}

#[cfg(test)]
mod tests;
