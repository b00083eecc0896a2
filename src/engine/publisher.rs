//! The engine's publishing thread: turns each step's raw observations into its snapshot and hands
//! every event to the [`Outbox`], in order.
//!
//! Every step's snapshot carries its layer metrics (FORMAT.md: "the complete state at one
//! step"). Their raw material is small: per-channel moments the fused BN op measured and per-row
//! sums over each block's weights (taken on the training thread, `weight_step`), so finishing
//! them (drift, weight norms, angles, cosines) is O(channels) per step, done here. Here too, seeing
//! every step, each layer's noise floor D0 and EMA fit are estimated and published
//! (`layer_estimates`), since a thinned recording or a remote viewer cannot rebuild them. The queue to
//! this thread is bounded: should it fall [`MAX_PENDING`] records behind, the training thread
//! waits for it rather than piling up steps or publishing one incomplete.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::layer_estimates::LayerEstimates;
use super::layer_snapshot::BlockStep;
use super::outbox::Outbox;
use super::EngineError;
use crate::protocol::{Event, Snapshot};

/// Records waiting for this thread beyond which the training thread waits.
const MAX_PENDING: usize = 64;
/// How often an idle publisher retries sending to a consumer whose channel was full.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// One training step as the training thread hands it over: the snapshot's scalars, and the raw
/// material for its layers (empty when layer metrics are off).
pub struct StepRecord {
    pub snapshot: Snapshot,
    pub blocks: Vec<BlockStep>,
    /// The step as the layer estimates count steps: the number of steps with layer metrics so
    /// far. The same as the snapshot's step but in a bench run that leaves metrics out of
    /// alternate stretches, where it lets each "on" stretch carry on the estimates' window as
    /// an uninterrupted run does, at the same cost (`bench::interleaved`).
    pub estimates_step: u64,
}

enum Work {
    Event(Event),
    Step(Box<StepRecord>),
}

pub struct Publisher {
    tx: Sender<Work>,
    disconnected: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Publisher {
    pub fn spawn(outbox: Outbox) -> Result<Publisher, EngineError> {
        let (tx, rx) = crossbeam_channel::bounded(MAX_PENDING);
        let disconnected = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&disconnected);
        let thread = std::thread::Builder::new()
            .name("bntop-publisher".into())
            .spawn(move || publish(rx, outbox, &flag))
            .map_err(|source| EngineError::Thread {
                what: "publishing",
                source,
            })?;
        Ok(Publisher {
            tx,
            disconnected,
            thread,
        })
    }

    pub fn send(&self, event: Event) {
        // A send error means the publishing thread is gone; `is_disconnected` reports it.
        let _ = self.tx.send(Work::Event(event));
    }

    pub fn send_step(&self, step: StepRecord) {
        let _ = self.tx.send(Work::Step(Box::new(step)));
    }

    /// The consumer has gone away (or the publishing thread has).
    pub fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Relaxed) || self.thread.is_finished()
    }

    /// Publishes everything still queued, waiting for the consumer if need be.
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn publish(rx: Receiver<Work>, mut outbox: Outbox, disconnected: &AtomicBool) {
    let mut estimates: Vec<LayerEstimates> = Vec::new();
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(Work::Event(event)) => outbox.send(event),
            Ok(Work::Step(step)) => {
                let StepRecord {
                    mut snapshot,
                    blocks,
                    estimates_step,
                } = *step;
                // A step without layer metrics (a bench's "off" stretch) leaves them as they are.
                if !blocks.is_empty() {
                    estimates.resize_with(blocks.len(), LayerEstimates::default);
                }
                snapshot.layers = (blocks.into_iter().zip(&mut estimates))
                    .map(|(block, estimate)| {
                        let epsilon = block.epsilon;
                        let mut layer = block.into_snapshot();
                        estimate.annotate(estimates_step, &mut layer, epsilon);
                        layer
                    })
                    .collect();
                outbox.send(Event::Snapshot(snapshot));
            }
            Err(RecvTimeoutError::Timeout) => outbox.flush(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if outbox.is_disconnected() {
            disconnected.store(true, Ordering::Relaxed);
        }
    }
    outbox.finish();
}
