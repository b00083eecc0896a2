//! Benchmarks behind `bntop bench` (training speed, metrics on vs off) and `bntop bench-dashboard`
//! (render time, terminal bandwidth, memory of the dashboard). Release builds only give numbers
//! worth reporting.
pub mod dashboard;
pub mod flops;
pub mod interleaved;
pub mod session;
pub mod training;

use crate::engine::{self, data::DataSet, TrainConfig};
use crate::protocol::{Event, Snapshot};

/// Runs the engine on `data` to its end, handing each snapshot to `see`.
fn each_snapshot(
    cfg: TrainConfig,
    data: &DataSet,
    mut see: impl FnMut(&Snapshot),
) -> Result<(), String> {
    let engine = engine::spawn(cfg, data.clone()).map_err(|e| e.to_string())?;
    for event in engine.events.iter() {
        match event {
            Event::Snapshot(s) => see(&s),
            Event::End(_) => break,
            _ => {}
        }
    }
    engine
        .thread
        .join()
        .map_err(|_| "the training thread panicked".to_string())
}

/// The value at fraction `p` (0 = min, 0.5 = median, 1 = max) of an ascending slice; NaN if empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
