//! The recordings that ship in sessions/ are what the README says they are: readable without a
//! skipped line, at most 5 MB, with the controls their descriptions mention.
use std::path::Path;

use bntop::protocol::{BnMode, Control, EndReason, Event};
use bntop::session::reader::Reader;

fn read_all(name: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sessions")
        .join(name);
    let size = std::fs::metadata(&path).expect("shipped session").len();
    assert!(size <= 5_000_000, "{name} is {size} bytes");
    let mut reader = Reader::open(&path).expect("open");
    while !reader.poll(usize::MAX).expect("poll").at_end {}
    let entries = reader.entries().to_vec();
    let events: Vec<Event> = entries
        .iter()
        .map(|e| reader.read(e).expect("read"))
        .collect();
    assert_eq!(reader.skipped().lines, 0, "{name}: {:?}", reader.skipped());
    assert!(matches!(events.first(), Some(Event::Header(h)) if h.recording.is_some()));
    events
}

fn controls(events: &[Event]) -> Vec<Control> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Control(c) if c.rejected.is_none() => Some(c.control.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn eval_mode_recording_switches_block2_to_eval() {
    let events = read_all("eval-mode-phantom-gradient.jsonl");
    let eval = Control::SetMode {
        layer: Some(1),
        mode: BnMode::Eval,
    };
    assert!(controls(&events).contains(&eval));
}

#[test]
fn momentum_recording_lowers_then_raises_block3_momentum() {
    let events = read_all("momentum-lag-vs-noise.jsonl");
    let momenta: Vec<f32> = controls(&events)
        .into_iter()
        .filter_map(|c| match c {
            Control::SetMomentum {
                layer: Some(2),
                momentum,
            } => Some(momentum),
            _ => None,
        })
        .collect();
    assert_eq!(momenta, vec![0.01, 0.5, 0.1]);
}

#[test]
fn healthy_recording_runs_to_completion_untouched() {
    let events = read_all("healthy-convergence.jsonl");
    assert!(controls(&events).is_empty());
    assert!(
        matches!(events.last(), Some(Event::End(e)) if e.reason == EndReason::Completed && e.step == 6000)
    );
}
