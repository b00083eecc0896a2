//! The engine's side of the event channel: training never blocks on a slow consumer.
//!
//! Events wait in a local queue and go out with `try_send`. A snapshot still waiting when the next
//! one is ready is replaced by it (coalesced): a slow consumer sees fewer, fresher snapshots. Other
//! records (controls, evaluations, markers) are kept in order; the queue is capped, and when it is
//! full the oldest snapshot, then the oldest record, gives way, so memory stays bounded.
use std::collections::VecDeque;

use crossbeam_channel::{Sender, TrySendError};

use crate::protocol::Event;

/// Queue length at which records start being dropped (a consumer stalled for a long time).
const QUEUE_CAP: usize = 4096;

pub struct Outbox {
    tx: Sender<Event>,
    queue: VecDeque<Event>,
    /// Snapshots replaced before they were sent, and records dropped at the cap.
    pub coalesced: u64,
    pub dropped: u64,
    disconnected: bool,
}

impl Outbox {
    pub fn new(tx: Sender<Event>) -> Self {
        Outbox {
            tx,
            queue: VecDeque::new(),
            coalesced: 0,
            dropped: 0,
            disconnected: false,
        }
    }

    /// The consumer has gone away: nothing more can be delivered.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected
    }

    pub fn send(&mut self, event: Event) {
        if matches!(event, Event::Snapshot(_))
            && matches!(self.queue.back(), Some(Event::Snapshot(_)))
        {
            self.queue.pop_back();
            self.coalesced += 1;
        }
        if self.queue.len() >= QUEUE_CAP {
            let victim = self
                .queue
                .iter()
                .position(|e| matches!(e, Event::Snapshot(_)))
                .unwrap_or(0);
            self.queue.remove(victim);
            self.dropped += 1;
        }
        self.queue.push_back(event);
        self.flush();
    }

    /// Sends what the channel will take now, in order.
    pub fn flush(&mut self) {
        while let Some(event) = self.queue.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.queue.push_front(event);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.disconnected = true;
                    self.queue.clear();
                    return;
                }
            }
        }
    }

    /// At the end of the run, deliver everything, waiting for the consumer if need be.
    pub fn finish(mut self) {
        while let Some(event) = self.queue.pop_front() {
            if self.tx.send(event).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Marker, MarkerKind, Snapshot};

    fn snapshot(step: u64) -> Event {
        Event::Snapshot(Snapshot {
            step,
            epoch: 0,
            time_s: 0.0,
            loss: 1.0,
            batch_accuracy: 0.5,
            lr: 0.1,
            partial: false,
            layers: vec![],
        })
    }

    fn marker(step: u64) -> Event {
        Event::Marker(Marker {
            step,
            kind: MarkerKind::Epoch,
            label: format!("epoch at {step}"),
        })
    }

    fn steps(rx: &crossbeam_channel::Receiver<Event>) -> Vec<(bool, u64)> {
        rx.try_iter()
            .map(|e| (matches!(e, Event::Snapshot(_)), e.step().unwrap_or(0)))
            .collect()
    }

    #[test]
    fn slow_consumer_gets_latest_snapshot_and_every_marker_in_order() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut out = Outbox::new(tx);
        out.send(snapshot(1)); // fills the channel
        out.send(snapshot(2)); // waits
        out.send(snapshot(3)); // replaces 2
        out.send(marker(3));
        out.send(snapshot(4));
        out.send(snapshot(5)); // replaces 4 (the last queued record is a snapshot)
        assert_eq!(out.coalesced, 2);
        let mut got = Vec::new();
        while !out.queue.is_empty() || !rx.is_empty() {
            got.extend(steps(&rx));
            out.flush();
        }
        assert_eq!(got, vec![(true, 1), (true, 3), (false, 3), (true, 5)]);
    }

    #[test]
    fn queue_stays_bounded_when_nobody_reads() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let mut out = Outbox::new(tx);
        for step in 0..(3 * QUEUE_CAP as u64) {
            out.send(marker(step));
            out.send(snapshot(step));
        }
        assert!(out.queue.len() <= QUEUE_CAP);
        assert!(out.dropped > 0);
    }

    #[test]
    fn gone_consumer_is_noticed() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        drop(rx);
        let mut out = Outbox::new(tx);
        out.send(snapshot(1));
        assert!(out.is_disconnected());
    }
}
