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
const SETTLE: u64 = 10;

/// One interleaved run: `pairs` timed "on" stretches, each between two "off" stretches, with
/// `timed` timed steps in every stretch.
pub struct Plan {
    pub batch: usize,
    pub widths: Option<Widths>,
    pub pairs: u64,
    pub timed: u64,
}

/// Each timed "on" stretch's slowdown: its seconds per step over the mean of its two neighbours'
/// ("off") seconds per step, minus one. Also checks that every snapshot of an "on" stretch
/// carried its layer metrics and no "off" one did.
pub fn slowdowns(data: &DataSet, plan: &Plan) -> Result<Vec<f64>, String> {
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
    Ok(neighbour_slowdowns(&per_step))
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

/// Stretches alternate off, on, off, ..., off: each "on" one against the mean of its neighbours,
/// so a machine that speeds up or slows down steadily favours neither.
fn neighbour_slowdowns(seconds_per_step: &[f64]) -> Vec<f64> {
    (seconds_per_step.windows(3).step_by(2))
        .map(|w| w[1] / ((w[0] + w[2]) / 2.0) - 1.0)
        .collect()
}

/// The median of `xs` with a distribution-free 95% confidence interval: the order statistics
/// whose ranks a binomial(n, 1/2) count falls between with 95% probability (normal
/// approximation; exact enough from about 20 values on). NaNs when `xs` is empty.
pub fn median_with_ci(mut xs: Vec<f64>) -> [f64; 3] {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return [f64::NAN; 3];
    }
    let half_width = 1.96 * (n as f64).sqrt() / 2.0;
    let half = n as f64 / 2.0;
    // 1-based ranks, as the textbook gives them, turned into indices.
    let low = ((half - half_width).floor() as usize).clamp(1, n) - 1;
    let high = ((half + 1.0 + half_width).ceil() as usize).clamp(1, n) - 1;
    [xs[low], super::percentile(&xs, 0.5), xs[high]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine slowing down steadily, with "on" stretches 3% slower than "off" at each moment:
    /// the neighbours' mean cancels the trend (to second order), so each pair reads 3%.
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
        let slowdowns = neighbour_slowdowns(&seconds);
        assert_eq!(slowdowns.len(), 4);
        for s in slowdowns {
            assert!((s - 0.03).abs() < 1e-12, "{s}");
        }
    }

    /// The interval covers the true median about 95% of the time: 2,000 samples of 60 draws
    /// from a skewed distribution (exponential, median ln 2), from a fixed seed.
    #[test]
    fn the_median_interval_covers_the_median_about_95_percent_of_the_time() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let trials = 2000;
        let covered = (0..trials)
            .filter(|_| {
                let xs: Vec<f64> = (0..60).map(|_| -(1.0 - rng.gen::<f64>()).ln()).collect();
                let [low, _, high] = median_with_ci(xs);
                low <= std::f64::consts::LN_2 && std::f64::consts::LN_2 <= high
            })
            .count();
        let rate = covered as f64 / trials as f64;
        assert!((0.93..=0.985).contains(&rate), "{rate}");
    }

    #[test]
    fn the_median_interval_of_few_values_spans_them() {
        assert_eq!(median_with_ci(vec![3.0, 1.0, 2.0]), [1.0, 2.0, 3.0]);
        assert!(median_with_ci(Vec::new()).iter().all(|x| x.is_nan()));
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
        let slowdowns = slowdowns(&data, &plan).expect("interleaved run");
        assert_eq!(slowdowns.len(), 2);
        assert!(slowdowns.iter().all(|s| s.is_finite() && *s > -1.0));
    }
}
