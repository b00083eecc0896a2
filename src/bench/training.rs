//! `bntop bench`: steps per second of the network with per-layer metrics off, on, and on
//! with the lab (PreciseBN, three-way evaluation and probe) at the dashboard's default cadence.
//!
//! Each measurement is a real engine run on the data set given (the embedded digits by default, or
//! random images of a chosen shape); the rate is taken from the
//! snapshots' timestamps after a warm-up, so start-up does not count, and there is no plain
//! held-out evaluation in the timed window. The three runs of a round go in a rotating order, so
//! machine noise hits all alike; the rates are the medians over rounds, and the lab cost the
//! median of each round's own ratio (the runs of a round are seconds apart, while a shared
//! machine's speed drifts over minutes).
//!
//! The metric overhead is too small beside the spread between runs to read from separate runs,
//! so each round adds one [`interleaved`] run, metrics on and off in alternate stretches; the
//! column gives the slowdown over all its stretches of all rounds, with its 95% confidence interval.
use std::io::Write;

use super::{flops, interleaved};
use crate::engine::{data::DataSet, model::Widths, TrainConfig};

pub struct Plan {
    pub steps: u64,
    pub warmup: u64,
    pub rounds: usize,
    pub batches: Vec<usize>,
    /// The network's widths; `None`: the default for the data's image size, as in training.
    pub widths: Option<Widths>,
}

/// One run: steps per second between the warm-up step and the last step, and the fraction of
/// timed snapshots that carried layer metrics (every one should: the training thread waits for a
/// publisher that falls far behind rather than publish a step without them; the column checks it).
fn measure(
    data: &DataSet,
    batch: usize,
    setting: Setting,
    plan: &Plan,
) -> Result<(f64, f64), String> {
    let cfg = TrainConfig {
        batch_size: batch,
        max_steps: Some(plan.warmup + plan.steps),
        layer_metrics: setting.metrics,
        eval_every: u64::MAX,
        lab_every: setting.lab_every,
        widths: plan.widths.clone(),
        ..TrainConfig::default()
    };
    let (mut start, mut end) = (None, None);
    let (mut timed, mut with_layers) = (0u64, 0u64);
    super::each_snapshot(cfg, data, |s| {
        if s.step == plan.warmup.max(1) {
            start = Some((s.step, s.time_s));
            return;
        }
        if s.step > plan.warmup {
            timed += 1;
            with_layers += u64::from(!s.layers.is_empty());
        }
        end = Some((s.step, s.time_s));
    })?;
    match (start, end) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => Ok((
            (s1 - s0) as f64 / (t1 - t0),
            with_layers as f64 / timed.max(1) as f64,
        )),
        _ => Err("the benchmark run produced too few snapshots".into()),
    }
}

#[derive(Clone, Copy)]
struct Setting {
    metrics: bool,
    /// 0: no lab work.
    lab_every: u64,
}

/// Off, on, and on with the lab at the dashboard's cadence.
const SETTINGS: [Setting; 3] = [
    Setting {
        metrics: false,
        lab_every: 0,
    },
    Setting {
        metrics: true,
        lab_every: 0,
    },
    Setting {
        metrics: true,
        lab_every: LAB_EVERY,
    },
];
const LAB_EVERY: u64 = 200;

/// How the GFLOP/s column counts (see [`flops`]).
const GFLOPS_CONVENTION: &str = "GFLOP/s: metrics-off steps/s x conv + linear FLOPs per step \
(multiply-add = 2, forward + backward = 3x forward; BN, ReLU, pooling, loss and optimizer not counted)";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    super::percentile(&xs, 0.5)
}

/// Timed steps per stretch of the interleaved run. The machine's speed wanders slowly, so longer
/// stretches average out little more of it; short ones give more pairs a second
/// ([`interleaved`]). The run has one pair per `STRETCH_STEPS` of `--steps`.
const STRETCH_STEPS: u64 = 40;

/// Fewer pairs than this give no confidence interval: its normal approximation needs a few
/// dozen (a run of 6 pairs printed [-13.3, -3.0] for no real difference).
const MIN_PAIRS_FOR_INTERVAL: usize = 20;

/// The overhead's interval as the table prints it, in percent.
fn interval_text(pairs: usize, low: f64, high: f64) -> String {
    if pairs >= MIN_PAIRS_FOR_INTERVAL {
        format!("[{:.1}, {:.1}]", 100.0 * low, 100.0 * high)
    } else {
        format!("[< {MIN_PAIRS_FOR_INTERVAL} pairs]")
    }
}

/// How much slower `slow` ran than `fast` (rates, one pair per round): the median over rounds
/// of each round's own ratio, so drift from round to round cancels.
fn paired_slowdown(fast: &[f64], slow: &[f64]) -> f64 {
    median(fast.iter().zip(slow).map(|(f, s)| f / s - 1.0).collect())
}

pub fn run(plan: &Plan, data: &DataSet, out: &mut dyn Write) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    if cfg!(debug_assertions) {
        writeln!(
            out,
            "note: this is a debug build; use `cargo run --release -- bench` for real numbers"
        )
        .map_err(io)?;
    }
    let images = &data.train;
    let shape = [images.channels, images.height, images.width];
    let widths =
        (plan.widths.clone()).unwrap_or_else(|| Widths::default_for(images.height, images.width));
    writeln!(
        out,
        "bntop bench: widths {widths} on {} ({}, {}x{}x{} images), {} timed steps after {} warm-up, median of {} rounds",
        data.name, data.source, shape[0], shape[1], shape[2], plan.steps, plan.warmup, plan.rounds
    )
    .map_err(io)?;
    writeln!(out, "{GFLOPS_CONVENTION}").map_err(io)?;
    let pairs = plan.steps.div_ceil(STRETCH_STEPS).max(2);
    writeln!(
        out,
        "overhead: metrics on vs off in alternate stretches of one run per round ({pairs} on \
stretches of {STRETCH_STEPS} timed steps, each against the off ones either side): their total \
time over the off ones' [95% confidence interval], over all rounds"
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:>6} {:>14} {:>8} {:>14} {:>11} {:>9} {:>15} {:>17} {:>14} {:>9}",
        "batch",
        "metrics off",
        "GFLOP/s",
        "metrics on",
        "ms/step on",
        "overhead",
        "[95% CI]",
        "steps w/ metrics",
        "+lab /200",
        "lab cost"
    )
    .map_err(io)?;
    for &batch in &plan.batches {
        let mut rates: [Vec<f64>; 3] = Default::default();
        let mut coverage = Vec::new();
        let mut timed_pairs = Vec::new();
        let interleaved = interleaved::Plan {
            batch,
            widths: plan.widths.clone(),
            pairs,
            timed: STRETCH_STEPS,
        };
        for round in 0..plan.rounds {
            timed_pairs.extend(interleaved::pairs(data, &interleaved)?);
            // Rotate which goes first so drift in machine load does not favour one setting.
            for k in 0..SETTINGS.len() {
                let i = (round + k) % SETTINGS.len();
                let (rate, with_layers) = measure(data, batch, SETTINGS[i], plan)?;
                rates[i].push(rate);
                if i == 1 {
                    coverage.push(with_layers);
                }
            }
        }
        let [low, overhead, high] = interleaved::overhead(&timed_pairs);
        let lab_cost = paired_slowdown(&rates[1], &rates[2]);
        let [off, on, lab] = rates.map(median);
        let gflops = off * flops::per_step(shape, &widths, batch).training() as f64 / 1e9;
        writeln!(
            out,
            "{batch:>6} {off:>9.1} st/s {gflops:>8.2} {on:>9.1} st/s {:>11.2} {:>8.1}% {:>15} {:>16.1}% {lab:>9.1} st/s {:>8.1}%",
            1000.0 / on,
            100.0 * overhead,
            interval_text(timed_pairs.len(), low, high),
            100.0 * median(coverage),
            100.0 * lab_cost
        )
        .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Each round's "on" run is 5% slower than its "off" run while the machine slows down from
    /// round to round: the paired ratio finds the 5%, and pairing the rounds wrongly does not.
    #[test]
    fn the_overhead_is_paired_by_round() {
        let off = [100.0, 90.0, 80.0, 70.0, 60.0];
        let on = off.map(|rate| rate / 1.05);
        assert!((super::paired_slowdown(&off, &on) - 0.05).abs() < 1e-12);
        let shifted = [on[1], on[2], on[3], on[4], on[0]];
        assert!((super::paired_slowdown(&off, &shifted) - 0.05).abs() > 0.1);
    }

    /// The bench measures the lab at the cadence the dashboard uses.
    #[test]
    fn lab_setting_is_the_default_cadence() {
        assert_eq!(
            super::LAB_EVERY,
            crate::engine::TrainConfig::default().lab_every
        );
    }
}
