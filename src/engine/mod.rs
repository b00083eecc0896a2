//! The training engine: everything that touches dfdx lives here. It runs on its own thread,
//! emits the protocol's events and takes its controls.
pub mod architecture;
mod batches;
pub mod batchnorm;
mod block_chain;
mod bn_infer;
pub mod bn_kernel;
mod checkpoint;
mod config;
pub mod conv;
pub mod data;
mod error;
mod evaluate;
pub mod folding;
pub mod forward;
mod host;
pub mod layer_estimates;
mod layer_snapshot;
pub mod model;
mod optimizer;
mod outbox;
mod parallel;
pub mod params;
mod population;
mod probe;
mod publisher;
mod trainer;
mod weight_step;

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

pub use config::{Interleave, TrainConfig};
pub use error::EngineError;
use outbox::Outbox;
use publisher::Publisher;
use trainer::Trainer;

use crate::protocol::{Control, Event};

/// Events waiting in the channel before the engine starts coalescing snapshots.
const EVENT_CHANNEL_CAP: usize = 256;

/// A running training thread: its events, its control input, and the thread itself.
pub struct EngineHandle {
    pub events: Receiver<Event>,
    pub controls: Sender<Control>,
    pub thread: JoinHandle<()>,
}

/// Checks the configuration and the data, standardises the data and starts training.
pub fn spawn(cfg: TrainConfig, mut data: data::DataSet) -> Result<EngineHandle, EngineError> {
    cfg.validate().map_err(EngineError::Config)?;
    if data.train.len() < cfg.batch_size {
        return Err(EngineError::Config(format!(
            "--batch {} is larger than the {} training images of {}",
            cfg.batch_size,
            data.train.len(),
            data.source
        )));
    }
    data.standardise();
    let (event_tx, events) = crossbeam_channel::bounded(EVENT_CHANNEL_CAP);
    let (controls, control_rx) = crossbeam_channel::unbounded();
    let outbox = Publisher::spawn(Outbox::new(event_tx))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("bntop-engine-{i}"))
        .build()
        .map_err(|e| EngineError::Thread {
            what: "training",
            source: std::io::Error::other(e),
        })?;
    let thread = std::thread::Builder::new()
        .name("bntop-engine".into())
        // The training loop runs on one of its own pool's threads, so the kernels' parallel
        // sections split work with the other core instead of waking a pool from outside (and
        // keeping a third thread runnable on two cores) several times per layer.
        .spawn(move || pool.install(|| Trainer::new(cfg, data, outbox, control_rx).run()))
        .map_err(|source| EngineError::Thread {
            what: "training",
            source,
        })?;
    Ok(EngineHandle {
        events,
        controls,
        thread,
    })
}

#[cfg(test)]
mod tests;
