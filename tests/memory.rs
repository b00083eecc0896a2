//! Memory stays bounded over a run: the engine's resident size must not grow with the step count.
//! (A regression test: tensors built from host Vecs once fed dfdx's allocation cache one batch per
//! step, about 19 KB/step.) And the dashboard's state stays bounded on the widest input the
//! format's limits let through. Alone in their own test binary, so no other test's memory is
//! counted; the tests take turns (a lock), so neither counts the other's.
use std::sync::Mutex;
use std::time::Instant;

use bntop::engine::{self, data, TrainConfig};
use bntop::protocol::{limits, BnKind, Event};
use bntop::ui::app::App;
use bntop::ui::keys::Key;
use bntop::ui::synthetic::{self, NetworkRun};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// What the dashboard may keep, from its budgets: per-channel and layer-level history, the run's
/// own series, the EMA windows of the charted channels, and the latest arrays (23 per channel,
/// and the rank drifts) with the noise floor's previous means.
fn dashboard_bound_bytes() -> usize {
    use bntop::ui::state::*;
    let bucket = 16;
    let history = (CHANNEL_HISTORY_BUDGET + LAYER_HISTORY_BUDGET + 4 * SERIES_CAPACITY) * bucket;
    let ema = EMA_WINDOW * 2 * CHARTED_TOTAL * 4;
    let latest = (limits::MAX_TOTAL_CHANNELS * 23 + limits::MAX_LAYERS * limits::MAX_RANKS) * 4;
    history + ema + latest
}

/// The two worst shapes of the limits: the most layers sharing every channel (the most series),
/// and the widest layers (4096 channels each). Every per-channel array in every snapshot, 450
/// steps (past the EMA window and each series' compaction), the view frozen halfway (a second
/// copy). The state's own count stays within the budgets, and so does the process's growth.
#[test]
fn the_dashboard_stays_bounded_at_the_limits() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bound = dashboard_bound_bytes();
    eprintln!(
        "dashboard bound: {:.1} MB per copy of the state",
        bound as f64 / 1e6
    );
    assert!(bound < 52_000_000, "the budgets add up to {bound} bytes");
    let many = limits::MAX_TOTAL_CHANNELS / limits::MAX_LAYERS;
    let wide = limits::MAX_TOTAL_CHANNELS / limits::MAX_CHANNELS;
    let shapes = [
        ("256 layers x 128 channels", vec![many; limits::MAX_LAYERS]),
        ("8 layers x 4096 channels", vec![limits::MAX_CHANNELS; wide]),
    ];
    for (what, widths) in shapes {
        let layers = widths
            .iter()
            .enumerate()
            .map(|(i, &c)| synthetic::bn(&format!("layer{i}.bn"), c, BnKind::Bn2d))
            .collect();
        let header = synthetic::producer_header(layers, 8);
        limits::check_header(&header).expect("a header at the limits");
        let before = resident_kb();
        let mut app = App::new();
        let now = Instant::now();
        let steps = 450;
        for event in NetworkRun::new(header, steps, 3) {
            if let Event::Snapshot(s) = &event {
                if s.step == steps / 2 {
                    app.on_key(&Key::Char('f').press(), now);
                }
            }
            app.on_event(&event, now);
        }
        let live = app.live.retained_bytes();
        let frozen = app.frozen.as_ref().map_or(0, |f| f.retained_bytes());
        let grown = resident_kb().saturating_sub(before);
        eprintln!(
            "{what}: state {:.1} MB live + {:.1} MB frozen; resident grew {:.1} MB",
            live as f64 / 1e6,
            frozen as f64 / 1e6,
            grown as f64 / 1e3
        );
        assert!(frozen > 0, "{what}: the view was frozen");
        assert!(
            live <= bound && frozen <= bound,
            "{what}: {live} / {frozen} bytes"
        );
        // Both copies, plus the allocator's slack and the last records in flight.
        let allowed_kb = (2 * bound / 1000 + 30_000) as u64;
        assert!(
            grown < allowed_kb,
            "{what}: resident size grew {grown} kB, more than {allowed_kb} kB"
        );
        drop(app);
    }
}
