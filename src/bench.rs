//! `bntop bench`: steps per second of the default model with per-layer metrics on and off.
//!
//! Each measurement is a real engine run on the embedded digits; the rate is taken from the
//! snapshots' timestamps after a warm-up, so start-up and evaluations do not count. On and off runs
//! alternate within each round, so machine noise hits both alike; the median round is reported.
use std::io::Write;

use crate::engine::{self, data::DataSet, TrainConfig};
use crate::protocol::Event;

pub struct Plan {
    pub steps: u64,
    pub warmup: u64,
    pub rounds: usize,
    pub batches: Vec<usize>,
}

/// Steps per second of one run, measured between the warm-up step and the last step.
fn steps_per_second(
    data: &DataSet,
    batch: usize,
    metrics: bool,
    plan: &Plan,
) -> Result<f64, String> {
    let cfg = TrainConfig {
        batch_size: batch,
        max_steps: Some(plan.warmup + plan.steps),
        layer_metrics: metrics,
        // No held-out evaluation inside the timed window.
        eval_every: u64::MAX,
        ..TrainConfig::default()
    };
    let engine = engine::spawn(cfg, data.clone())?;
    let (mut start, mut end) = (None, None);
    for event in engine.events.iter() {
        match event {
            Event::Snapshot(s) if s.step == plan.warmup.max(1) => start = Some((s.step, s.time_s)),
            Event::Snapshot(s) => end = Some((s.step, s.time_s)),
            Event::End(_) => break,
            _ => {}
        }
    }
    engine
        .thread
        .join()
        .map_err(|_| "the training thread panicked".to_string())?;
    match (start, end) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => Ok((s1 - s0) as f64 / (t1 - t0)),
        _ => Err("the benchmark run produced too few snapshots".into()),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
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
    writeln!(
        out,
        "bntop bench: default model on the embedded digits, {} timed steps after {} warm-up, median of {} rounds",
        plan.steps, plan.warmup, plan.rounds
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:>6} {:>14} {:>14} {:>14} {:>10}",
        "batch", "metrics off", "metrics on", "ms/step on", "overhead"
    )
    .map_err(io)?;
    for &batch in &plan.batches {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for round in 0..plan.rounds {
            // Alternate which goes first so drift in machine load does not favour one side.
            for metrics in if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            } {
                let rate = steps_per_second(data, batch, metrics, plan)?;
                if metrics {
                    on.push(rate)
                } else {
                    off.push(rate)
                }
            }
        }
        let (off, on) = (median(off), median(on));
        writeln!(
            out,
            "{batch:>6} {:>10.1} st/s {:>10.1} st/s {:>14.2} {:>9.1}%",
            off,
            on,
            1000.0 / on,
            100.0 * (off / on - 1.0)
        )
        .map_err(io)?;
    }
    Ok(())
}
