//! The cost of per-layer metrics measured inside one run: the engine leaves them out of
//! alternate stretches ([`Interleave`]), and each "on" stretch's time per step is compared with
//! the "off" stretches either side of it.
//!
//! Separate runs of one engine differ by several percent among themselves on a shared machine
//! (where their buffers landed, what ran beside them), and within a run the machine's speed
//! wanders too: on this 2-core VM, neighbouring blocks of 100 steps differ by about 8% (sd),
//! blocks of 25 by about 11%, so the wander is slow and longer stretches average little of it out.
//! Short stretches, a few hundredths of a second apart, with many pairs, measure most per second.
//!
//! Each stretch starts with [`SETTLE`] untimed steps: an "off" stretch lets the publisher finish
//! the records of the "on" stretch before it, which would otherwise be charged to "off". The layer
//! estimates count only steps with metrics (`StepRecord::estimates_step`), so each "on" stretch
//! carries on their window where the last one left it and fits a full window, as every step of
//! an uninterrupted run does; the first stretches, while the window fills, are not timed.
use crate::engine::{data::DataSet, model::Widths, Interleave, TrainConfig};
use crate::metrics::ema_window::EMA_WINDOW;

/// Untimed steps at the start of every stretch (the first one's also cover the engine's start-up).
/// The publisher is rarely more than a few steps behind: on the digits, 99% of snapshots reached
/// the consumer within 3 ms of their step's end (5 steps), the slowest within 7 ms.
const SETTLE: u64 = 10;

/// One interleaved run: `pairs` timed "on" stretches, each between two "off" stretches, with
/// `timed` timed steps in every stretch.
pub struct Plan {
    pub batch: usize,
    pub widths: Option<Widths>,
    pub pairs: u64,
    pub timed: u64,
}

/// Each timed "on" stretch's seconds per step with the mean of its two neighbours' ("off").
/// Also checks that every snapshot of an "on" stretch carried its layer metrics and no "off"
/// one did.
pub fn pairs(data: &DataSet, plan: &Plan) -> Result<Vec<Pair>, String> {
    let stretch = SETTLE + plan.timed;
    let interleave = Interleave {
        off: stretch,
        on: stretch,
    };
    // "On" stretches before the estimates' window is full run untimed.
    let filling = (EMA_WINDOW as u64).div_ceil(stretch);
    let periods = filling + plan.pairs;
    let cfg = TrainConfig {
        batch_size: plan.batch,
        max_steps: Some(periods * 2 * stretch + stretch),
        metrics_interleave: Some(interleave),
        eval_every: u64::MAX,
        lab_every: 0,
        widths: plan.widths.clone(),
        ..TrainConfig::default()
    };
    // Stretch 2k is the k-th "off" one, 2k + 1 the k-th "on" one.
    let mut windows = vec![Window::default(); 2 * periods as usize + 1];
    let mut mislabelled = 0u64;
    super::each_snapshot(cfg, data, |s| {
        let Some(step) = s.step.checked_sub(1) else {
            return;
        };
        let on = interleave.metrics_on(s.step);
        mislabelled += u64::from(on == s.layers.is_empty());
        // The step that closes the last untimed one starts the clock.
        if step % stretch + 1 >= SETTLE {
            if let Some(window) = windows.get_mut((step / stretch) as usize) {
                window.see(s.step, s.time_s);
            }
        }
    })?;
    if mislabelled > 0 {
        return Err(format!(
            "{mislabelled} snapshots of the interleaved run had layer metrics in the wrong stretch"
        ));
    }
    let timed = &windows[2 * filling as usize..];
    let per_step = (timed.iter().map(Window::seconds_per_step))
        .collect::<Option<Vec<f64>>>()
        .ok_or("the interleaved run produced too few snapshots")?;
    Ok(neighbour_pairs(&per_step))
}

/// First and last (step, time) seen in one stretch's timed part.
#[derive(Clone, Copy, Default)]
struct Window {
    first: Option<(u64, f64)>,
    last: Option<(u64, f64)>,
}

impl Window {
    fn see(&mut self, step: u64, time_s: f64) {
        self.first.get_or_insert((step, time_s));
        self.last = Some((step, time_s));
    }

    fn seconds_per_step(&self) -> Option<f64> {
        let ((s0, t0), (s1, t1)) = (self.first?, self.last?);
        (s1 > s0 && t1 > t0).then(|| (t1 - t0) / (s1 - s0) as f64)
    }
}

/// One "on" stretch's seconds per step, and the mean of its two "off" neighbours'.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub on: f64,
    pub off: f64,
}

/// Stretches alternate off, on, off, ..., off: each "on" one against the mean of its neighbours,
/// so a machine that speeds up or slows down steadily favours neither.
fn neighbour_pairs(seconds_per_step: &[f64]) -> Vec<Pair> {
    (seconds_per_step.windows(3).step_by(2))
        .map(|w| Pair {
            on: w[1],
            off: (w[0] + w[2]) / 2.0,
        })
        .collect()
}

/// The slowdown of "on" against "off" over all `pairs`: the sum of the on times over the sum of
/// the off ones, minus one, with a 95% confidence interval from the spread of the pairs'
/// differences (normal approximation, good from a few dozen pairs; NaN with fewer than two).
///
/// A ratio of sums, not a median or mean of each pair's ratio: stretch times are skewed (a
/// stretch the machine interrupts runs long), and an "on" stretch is one stretch while its "off"
/// side averages two, so the median pair ratio reads low (and the mean high). With the metrics
/// on in every stretch (a scratch build), the median of 600 pair ratios read -1.7%.
pub fn overhead(pairs: &[Pair]) -> [f64; 3] {
    let n = pairs.len() as f64;
    let off = pairs.iter().map(|p| p.off).sum::<f64>() / n;
    let mean = pairs.iter().map(|p| p.on - p.off).sum::<f64>() / n;
    let deviations: Vec<f64> = pairs.iter().map(|p| p.on - p.off - mean).collect();
    let variance = deviations.iter().map(|d| d * d).sum::<f64>() / (n - 1.0);
    // Neighbouring pairs share an "off" stretch, so their differences are correlated: the
    // variance of their mean has twice the lag-1 covariance on top (a third more when the
    // stretches' noise is independent).
    let lag_1 = (deviations.windows(2).map(|w| w[0] * w[1])).sum::<f64>() / (n - 1.0);
    let half_width = 1.96 * ((variance + 2.0 * lag_1).max(0.0) / n).sqrt();
    [mean - half_width, mean, mean + half_width].map(|d| d / off)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine slowing down steadily, with "on" stretches 3% slower than "off" at each moment:
    /// the neighbours' mean cancels the trend (to second order), and the overhead reads 3%.
    #[test]
    fn a_steady_trend_cancels() {
        let seconds: Vec<f64> = (0..9)
            .map(|k| {
                let machine = 1.0 + 0.05 * k as f64;
                if k % 2 == 1 {
                    machine * 1.03
                } else {
                    machine
                }
            })
            .collect();
        let pairs = neighbour_pairs(&seconds);
        assert_eq!(pairs.len(), 4);
        for p in &pairs {
            assert!((p.on / p.off - 1.03).abs() < 1e-12, "{p:?}");
        }
        let [low, mid, high] = overhead(&pairs);
        assert!(
            (mid - 0.03).abs() < 1e-12 && low <= mid && mid <= high,
            "{mid}"
        );
    }

    /// Stretch times as on this machine: 1 plus a skewed interruption (exponential, mean 0.08),
    /// alternating, 300 pairs a run, 400 runs from a fixed seed. Without and with a 2% slowdown,
    /// the estimate is right on average and its interval covers the truth about 95% of the
    /// time, where the median of the pairs' ratios reads low.
    #[test]
    fn the_overhead_is_unbiased_on_skewed_stretch_times() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let runs = 400u32;
        for slowdown in [0.0, 0.02] {
            let (mut covered, mut estimates, mut medians) = (0u32, 0.0, 0.0);
            for _ in 0..runs {
                let seconds: Vec<f64> = (0..601)
                    .map(|k| {
                        let stretch = 1.0 - 0.08 * (1.0 - rng.gen::<f64>()).ln();
                        if k % 2 == 1 {
                            stretch * (1.0 + slowdown)
                        } else {
                            stretch
                        }
                    })
                    .collect();
                let pairs = neighbour_pairs(&seconds);
                let [low, estimate, high] = overhead(&pairs);
                covered += u32::from(low <= slowdown && slowdown <= high);
                estimates += estimate / f64::from(runs);
                let mut ratios: Vec<f64> = pairs.iter().map(|p| p.on / p.off - 1.0).collect();
                ratios.sort_by(f64::total_cmp);
                medians += crate::bench::percentile(&ratios, 0.5) / f64::from(runs);
            }
            let rate = f64::from(covered) / f64::from(runs);
            assert!((0.92..=0.98).contains(&rate), "{slowdown}: {rate}");
            assert!(
                (estimates - slowdown).abs() < 5e-4,
                "{slowdown}: {estimates}"
            );
            assert!(medians < slowdown - 0.005, "{slowdown}: {medians}");
        }
    }

    /// In an interleaved run the estimates count only the steps with metrics, so once their
    /// window has filled, every "on" stretch fits a full window, as an uninterrupted run does:
    /// what the timed stretches pay for.
    #[test]
    fn each_on_stretch_carries_on_the_estimates_window() {
        let data = crate::engine::data::embedded_digits().expect("digits");
        let interleave = Interleave { off: 30, on: 50 };
        let cfg = TrainConfig {
            batch_size: 16,
            widths: Some("4,8".parse().expect("widths")),
            max_steps: Some(12 * 80),
            metrics_interleave: Some(interleave),
            eval_every: u64::MAX,
            lab_every: 0,
            ..TrainConfig::default()
        };
        let mut fitted = Vec::new();
        super::super::each_snapshot(cfg, &data, |s| {
            if let Some(layer) = s.layers.first() {
                let steps = layer.ema.map_or(0, |fit| fit.steps as usize);
                fitted.push((interleave.on_steps_through(s.step), steps));
            }
        })
        .expect("interleaved run");
        assert_eq!(fitted.len(), 12 * 50);
        // From the second "on" stretch (the first fits need a few steps to start).
        for (on_steps, steps) in fitted.into_iter().skip(50) {
            // Fits every EMA_FIT_EVERY steps, over all the steps with metrics so far.
            let want = on_steps.min(EMA_WINDOW as u64) as usize;
            assert!(steps <= want && steps + 8 > want, "{on_steps}: {steps}");
        }
    }

    /// A real interleaved run on the digits: every stretch timed, and a slowdown per pair.
    #[test]
    fn an_interleaved_run_times_every_stretch() {
        let data = crate::engine::data::embedded_digits().expect("digits");
        let plan = Plan {
            batch: 16,
            widths: Some("4,8".parse().expect("widths")),
            pairs: 2,
            timed: 10,
        };
        let pairs = pairs(&data, &plan).expect("interleaved run");
        assert_eq!(pairs.len(), 2);
        assert!(pairs.iter().all(|p| p.on > 0.0 && p.off > 0.0), "{pairs:?}");
    }
}
