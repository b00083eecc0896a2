//! The cost of per-layer metrics measured inside one run: the engine leaves them out of
//! alternate stretches ([`Interleave`]), and each "on" stretch's time per step is compared with
//! the "off" stretches either side of it. Separate runs of one engine differ by several percent
//! among themselves on a shared machine (where their buffers landed, what ran beside them);
//! stretches of one run share all that, and are a fraction of a second apart.
//!
//! Each stretch starts with untimed steps. An "off" stretch first lets the publisher finish the
//! records of the "on" stretch before it, which would otherwise be charged to "off". An "on"
//! stretch first refills the layer estimates' EMA window, which the gap emptied, so its timed
//! steps fit a full window, as every step of a long run does.
use crate::engine::{data::DataSet, model::Widths, Interleave, TrainConfig};
use crate::metrics::ema_window::EMA_WINDOW;

/// Untimed steps at the start of an "off" stretch (the first one's also cover the engine's
/// start-up).
const SETTLE: u64 = 30;
/// Untimed steps at the start of an "on" stretch: a full EMA window, then [`SETTLE`].
const REFILL: u64 = EMA_WINDOW as u64 + SETTLE;

/// One interleaved run: `pairs` "on" stretches, each between two "off" stretches, with `timed`
/// timed steps in every stretch.
pub struct Plan {
    pub batch: usize,
    pub widths: Option<Widths>,
    pub pairs: u64,
    pub timed: u64,
}

/// Each "on" stretch's slowdown: its seconds per step over the mean of its two neighbours'
/// ("off") seconds per step, minus one. Also checks that every snapshot of an "on" stretch
/// carried its layer metrics and no "off" one did.
pub fn slowdowns(data: &DataSet, plan: &Plan) -> Result<Vec<f64>, String> {
    let interleave = Interleave {
        off: SETTLE + plan.timed,
        on: REFILL + plan.timed,
    };
    let period = interleave.off + interleave.on;
    let cfg = TrainConfig {
        batch_size: plan.batch,
        max_steps: Some(plan.pairs * period + interleave.off),
        metrics_interleave: Some(interleave),
        eval_every: u64::MAX,
        lab_every: 0,
        widths: plan.widths.clone(),
        ..TrainConfig::default()
    };
    let stretches = 2 * plan.pairs as usize + 1;
    let mut windows = vec![Window::default(); stretches];
    let mut mislabelled = 0u64;
    super::each_snapshot(cfg, data, |s| {
        let Some(step) = s.step.checked_sub(1) else {
            return;
        };
        let (pair, within) = (step / period, step % period);
        let on = interleave.metrics_on(s.step);
        mislabelled += u64::from(on == s.layers.is_empty());
        let (stretch, untimed, offset) = match on {
            false => (2 * pair, SETTLE, within),
            true => (2 * pair + 1, REFILL, within - interleave.off),
        };
        // The step that closes the last untimed one starts the clock.
        if offset + 1 >= untimed {
            if let Some(window) = windows.get_mut(stretch as usize) {
                window.see(s.step, s.time_s);
            }
        }
    })?;
    if mislabelled > 0 {
        return Err(format!(
            "{mislabelled} snapshots of the interleaved run had layer metrics in the wrong stretch"
        ));
    }
    let per_step = (windows.iter().map(Window::seconds_per_step))
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
