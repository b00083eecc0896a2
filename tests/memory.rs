//! Memory stays bounded over a run: the engine's resident size must not grow with the step count.
//! (A regression test: tensors built from host Vecs once fed dfdx's allocation cache one batch per
//! step, about 19 KB/step.) Alone in its own test binary, so no other test's memory is counted.
use bntop::engine::{self, data, TrainConfig};
use bntop::protocol::Event;

fn resident_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

#[test]
fn resident_memory_does_not_grow_with_steps() {
    let (warm, end) = (300u64, 1800u64);
    let cfg = TrainConfig {
        max_steps: Some(end),
        eval_every: 100,
        // The lab's passes (PreciseBN, three-way evaluation, probe) must not grow memory either.
        lab_every: 100,
        ..TrainConfig::default()
    };
    let data = data::embedded_digits().expect("embedded data");
    let engine = engine::spawn(cfg, data).expect("engine");
    let mut at_warm = None;
    let mut at_end = None;
    for event in engine.events.iter() {
        if let Event::Snapshot(s) = &event {
            // At or just after: a consumer slowed by a loaded machine may get snapshots coalesced.
            if s.step >= warm && at_warm.is_none() {
                at_warm = Some(resident_kb());
            }
            if s.step == end {
                at_end = Some(resident_kb());
            }
        }
    }
    let (a, b) = (at_warm.expect("warm step"), at_end.expect("last step"));
    // 1500 steps at the old leak rate would be ~28 MB.
    assert!(
        b < a + 6_000,
        "resident memory grew from {a} kB to {b} kB over {} steps",
        end - warm
    );
}
