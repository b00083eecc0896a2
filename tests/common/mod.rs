//! What the integration tests share: a real training run on the embedded digits, free-running
//! (controls sent as a user would) or paused and stepped by the test, so that where controls land
//! and which steps are published whole does not depend on the machine's load.
use std::time::Duration;

use bntop::engine::{self, data, TrainConfig};
use bntop::protocol::{Control, Event};

/// How long a test waits for the engine's next event before giving up on the run.
const QUIET_LIMIT: Duration = Duration::from_secs(120);

/// Trains with `cfg` at full speed until its end record. What a free-running consumer sees
/// depends on the machine's load (a slow consumer gets snapshots coalesced, a busy publisher
/// leaves layers out), so only tests of that behaviour, or of the end result, use it.
#[allow(dead_code)] // not by every test binary
pub fn run(cfg: TrainConfig) -> Vec<Event> {
    drive(cfg, |_| Vec::new())
}

/// Trains with `cfg` at full speed and sends each control of `controls_at` once a snapshot at or
/// after its step arrives, as a user watching would (so it lands a step or a few later, more on a
/// loaded machine). `cfg` has no step limit: the run ends by a quit once every control has been
/// echoed and a step after the last one has been published, so however late the controls land,
/// the run is still going and their effect is on record. Every event, in order, except the
/// quit's echo.
#[allow(dead_code)] // not by every test binary
pub fn run_live(cfg: TrainConfig, controls_at: &[(u64, Control)]) -> Vec<Event> {
    assert_eq!(cfg.max_steps, None, "the test ends a live run");
    let mut pending = controls_at.to_vec();
    let (mut echoed, mut last_echo, mut quit) = (0, 0, false);
    let events = drive(cfg, |event| match event {
        Event::Control(c) => {
            echoed += 1;
            last_echo = c.step;
            Vec::new()
        }
        Event::Snapshot(s) => {
            let mut due = Vec::new();
            pending.retain(|(at, control)| {
                let now = s.step >= *at;
                if now {
                    due.push(control.clone());
                }
                !now
            });
            if !quit && echoed == controls_at.len() && s.step > last_echo {
                quit = true;
                due.push(Control::Quit);
            }
            due
        }
        _ => Vec::new(),
    });
    events
        .into_iter()
        .filter(|e| !matches!(e, Event::Control(c) if c.control == Control::Quit))
        .collect()
}

/// Trains with `cfg` and answers every event with `react`'s controls. Every event, in order,
/// until the end record or two quiet minutes.
fn drive(cfg: TrainConfig, mut react: impl FnMut(&Event) -> Vec<Control>) -> Vec<Event> {
    let engine = engine::spawn(cfg, data::embedded_digits().expect("digits")).expect("spawn");
    let mut events = Vec::new();
    while let Ok(event) = engine.events.recv_timeout(QUIET_LIMIT) {
        for control in react(&event) {
            engine.controls.send(control).expect("send control");
        }
        let end = matches!(event, Event::End(_));
        events.push(event);
        if end {
            break;
        }
    }
    // A paused engine whose controls are gone ends the run.
    drop(engine.controls);
    engine.thread.join().expect("engine thread");
    events
}

/// Trains with `cfg` to its `max_steps` and applies each control of `controls_at` right after its
/// step (step 0: before the first), whatever the machine's load: the engine starts paused and
/// is granted the steps up to the next control in one go, so it trains them at full speed and
/// stops exactly there. Their snapshots are a free run's: some may be coalesced or lack layers.
/// Every event, in order, except the echoes of the stepping itself.
#[allow(dead_code)] // not by every test binary
pub fn run_exact(cfg: TrainConfig, controls_at: &[(u64, Control)]) -> Vec<Event> {
    stepped(cfg, u64::MAX, controls_at)
}

/// As [`run_exact`], and from step `first` on each step is granted alone once the last one's
/// snapshot has arrived, so every one of them is published with its layers (the engine always
/// measures the step after a control).
#[allow(dead_code)] // not by every test binary
pub fn run_whole_from(cfg: TrainConfig, first: u64, controls_at: &[(u64, Control)]) -> Vec<Event> {
    stepped(cfg, first, controls_at)
}

fn stepped(mut cfg: TrainConfig, whole_from: u64, controls_at: &[(u64, Control)]) -> Vec<Event> {
    let last = cfg.max_steps.expect("a stepped run needs max_steps");
    assert!(
        controls_at.iter().all(|(at, _)| *at <= last),
        "a control after the last step"
    );
    cfg.start_paused = true;
    // The step the engine stops after: its snapshot is the last before the stop, so it is never
    // coalesced away.
    let mut stop = 0;
    let events = drive(cfg, |event| {
        match event {
            // The engine sits paused before step 1 once it has sent its header.
            Event::Header(_) => {}
            Event::Snapshot(s) if s.step == stop => {}
            _ => return Vec::new(),
        }
        let mut controls: Vec<Control> = controls_at
            .iter()
            .filter(|(at, _)| *at == stop)
            .map(|(_, control)| control.clone())
            .collect();
        if stop == last {
            // The run completes as a free-running one would.
            controls.push(Control::Resume);
            return controls;
        }
        let next = if stop + 1 >= whole_from {
            stop + 1
        } else {
            let next_control = controls_at
                .iter()
                .map(|(at, _)| *at)
                .filter(|&at| at > stop);
            next_control.fold((whole_from - 1).min(last), u64::min)
        };
        controls.extend((stop..next).map(|_| Control::Step));
        stop = next;
        controls
    });
    events
        .into_iter()
        .filter(|e| match e {
            Event::Control(c) if matches!(c.control, Control::Step | Control::Resume) => {
                assert_eq!(c.rejected, None, "stepping at step {}", c.step);
                false
            }
            _ => true,
        })
        .collect()
}

/// Every snapshot kept, whole: replay positions are then exact steps.
#[allow(dead_code)] // not by every test binary
pub const EVERY_STEP: bntop::protocol::RecordingPolicy = bntop::protocol::RecordingPolicy {
    snapshot_interval_s: 0.0,
    channel_arrays_interval_s: 0.0,
};

/// Writes `events` as a session file at `path`, every snapshot kept.
#[allow(dead_code)] // not by every test binary
pub fn record(path: &std::path::Path, events: &[Event]) {
    let mut writer = bntop::session::SessionWriter::create(path, EVERY_STEP).expect("create");
    for e in events {
        writer.record(e).expect("record");
    }
}

/// The snapshots among `events`, in order.
#[allow(dead_code)] // not by every test binary
pub fn snapshots(events: &[Event]) -> Vec<&bntop::protocol::Snapshot> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(s),
            _ => None,
        })
        .collect()
}
