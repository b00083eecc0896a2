//! What the integration tests share: a real training run on the embedded digits, with controls
//! sent at given steps.
use std::time::Duration;

use bntop::engine::{self, data, TrainConfig};
use bntop::protocol::{Control, Event};

/// Trains with `cfg` until its end record; each control is sent once a snapshot at or after its
/// step arrives (so it lands a step or a few later). Every event, in order.
pub fn run(cfg: TrainConfig, controls_at: &[(u64, Control)]) -> Vec<Event> {
    let engine = engine::spawn(cfg, data::embedded_digits().expect("digits")).expect("spawn");
    let mut events = Vec::new();
    let mut pending = controls_at.to_vec();
    while let Ok(event) = engine.events.recv_timeout(Duration::from_secs(120)) {
        if let Event::Snapshot(s) = &event {
            pending.retain(|(at, control)| {
                let due = s.step >= *at;
                if due {
                    engine.controls.send(control.clone()).expect("send control");
                }
                !due
            });
        }
        let end = matches!(event, Event::End(_));
        events.push(event);
        if end {
            break;
        }
    }
    engine.thread.join().expect("engine thread");
    events
}
