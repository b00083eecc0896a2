//! The running mean as an EMA, measured over a window of successive steps (BN-METRICS §2): the
//! window a stream of steps keeps, and its reading averaged over channels. The producer runs it
//! on every step and publishes the reading (format 1.5); a viewer runs it on what it receives,
//! for streams that do not carry one.
use std::collections::VecDeque;

use super::ema::{fit_lag_noise, lag_steps, noise_var_correlated, optimal_momentum};

/// Successive steps kept per layer: a few times 1/m at the default m = 0.1.
pub const EMA_WINDOW: usize = 400;
/// Steps the window needs before it is read.
pub const EMA_MIN_STEPS: usize = 50;
/// A step or two missing (snapshots coalesced while a consumer was busy) barely moves a fit
/// over hundreds of steps; a longer gap starts the window over.
const MAX_EMA_GAP: u64 = 3;

/// `n` of `channels` channels, evenly spaced from channel 0 (all of them when n >= channels):
/// the channels a window follows, and the dashboard charts.
pub fn spread(channels: usize, n: usize) -> impl Iterator<Item = usize> {
    let n = n.min(channels);
    (0..n).map(move |k| k * channels / n)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64) -> EmaStep {
        EmaStep {
            step,
            batch_mean: vec![step as f32],
            running_mean_post: vec![0.0],
        }
    }

    #[test]
    fn the_window_is_bounded_and_starts_over_after_a_gap() {
        let mut window = VecDeque::new();
        for s in 1..=(EMA_WINDOW as u64 + 10) {
            push_step(&mut window, step(s));
        }
        assert_eq!(window.len(), EMA_WINDOW);
        assert_eq!(window.front().map(|s| s.step), Some(11));
        push_step(&mut window, step(EMA_WINDOW as u64 + 13));
        assert_eq!(window.len(), EMA_WINDOW, "a gap of 3 steps is bridged");
        push_step(&mut window, step(EMA_WINDOW as u64 + 17));
        assert_eq!(window.len(), 1, "a gap of 4 starts over");
        assert_eq!(read_window(&window, 0.1), None, "too few steps");
    }
}
