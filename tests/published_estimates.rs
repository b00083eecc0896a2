//! Format 1.5: the producer publishes what a thinned stream cannot rebuild (each layer's drift
//! noise floor D0 and the EMA fit of its running mean), so a replay of a thinned recording, or a
//! remote viewer, shows the D0 column and the lab's EMA rows as the live dashboard does; and
//! `--record-detail` keeps per-channel arrays in every recorded snapshot, or every step.
use std::time::Instant;

use bntop::engine::layer_estimates::LayerEstimates;
use bntop::engine::TrainConfig;
use bntop::protocol::Event;
use bntop::session::decimator::Decimator;
use bntop::session::reader::Reader;
use bntop::session::{RecordDetail, SessionWriter};
use bntop::ui::app::App;
use bntop::ui::keys::Context;
use bntop::ui::state::RunState;
use bntop::ui::synthetic;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod common;
use common::snapshots;
mod ui_support;
use ui_support::{render, screen, unicode};

/// The synthetic run, with D0 and the EMA fit written into every snapshot as the engine's
/// publisher does.
fn published(steps: u64) -> Vec<Event> {
    let mut estimates: Vec<LayerEstimates> = Vec::new();
    let mut events = synthetic::run(steps, 7);
    for event in &mut events {
        if let Event::Snapshot(s) = event {
            estimates.resize_with(s.layers.len(), LayerEstimates::default);
            for (layer, estimate) in s.layers.iter_mut().zip(&mut estimates) {
                estimate.annotate(s.step, layer, 1e-5);
            }
        }
    }
    events
}

/// What a recording of `events` keeps at the default (thin) detail.
fn thinned(events: &[Event]) -> Vec<Event> {
    let mut decimator = Decimator::new(RecordDetail::Thin.policy());
    events.iter().flat_map(|e| decimator.filter(e)).collect()
}

fn replay_app(events: &[Event]) -> App {
    let mut app = App::for_context(Context::Replay);
    let now = Instant::now();
    for event in events {
        app.on_event(event, now);
    }
    app
}

/// The layers table of a 120x40 screen: its column titles and one row per layer.
fn layers_table(app: &App) -> String {
    let text = screen(&render(app, 120, 40, unicode()));
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("D (D0)"))
        .unwrap_or_else(|| panic!("no table header\n{text}"));
    lines[first..=first + 3].join("\n")
}

/// A replay of a thinned recording shows D0 beside D for every layer, and the lab's EMA rows.
/// Without the published values (a 1.4 recording) it shows neither: only 44 of its 1800
/// snapshots carry arrays, and never two successive ones.
#[test]
fn a_thinned_replay_shows_d0_and_the_ema_rows() {
    let events = published(1800);
    let thin = thinned(&events);
    let whole = snapshots(&thin)
        .iter()
        .filter(|s| !s.layers[0].batch_mean.is_empty())
        .count();
    assert!(whole < 50, "{whole} whole snapshots");
    let mut app = replay_app(&thin);
    for layer in &app.live.layers {
        assert!(layer.noise_floor().is_some(), "{}: no D0", layer.name);
    }
    let table = layers_table(&app);
    insta::assert_snapshot!(table);
    app.on_key(
        &KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE),
        Instant::now(),
    );
    let lab = screen(&render(&app, 160, 48, unicode()));
    for row in ["running-mean noise", "running-mean lag", "Ξ = (D/D0)²"] {
        assert!(lab.contains(row), "{row} missing\n{lab}");
    }

    // The same recording as 1.4 wrote it: no D0, no EMA rows.
    let mut old = thinned(&synthetic::run(1800, 7));
    for event in &mut old {
        if let Event::Snapshot(s) = event {
            assert!(s.layers.iter().all(|l| l.summary.noise_floor.is_nan()));
        }
    }
    let mut app = replay_app(&old);
    assert!(app.live.layers.iter().all(|l| l.noise_floor().is_none()));
    app.on_key(
        &KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE),
        Instant::now(),
    );
    let lab = screen(&render(&app, 160, 48, unicode()));
    assert!(!lab.contains("running-mean lag"), "{lab}");
    old.clear();
}

/// The published values are the ones the dashboard computes itself from every step: D0 the
/// same number, the EMA fit the same reading (the publisher refits every 8 steps; the run
/// stops at a step it refitted). On the real engine, every step published whole.
#[test]
fn the_engine_publishes_what_the_dashboard_would_rebuild_from_every_step() {
    let cfg = TrainConfig {
        max_steps: Some(402),
        eval_every: 1000,
        lab_every: 0,
        ..TrainConfig::default()
    };
    let events = common::run_whole_from(cfg, 1, &[]);
    let steps = snapshots(&events);
    assert_eq!(steps.len(), 402, "every step");
    for s in &steps {
        for layer in &s.layers {
            // 20 pairs of successive steps for D0, 50 steps for the fit.
            assert_eq!(
                layer.summary.noise_floor.is_finite(),
                s.step > 20,
                "{}",
                s.step
            );
            assert_eq!(layer.ema.is_some(), s.step >= 50, "{}", s.step);
        }
    }
    let mut stripped = events.clone();
    for event in &mut stripped {
        if let Event::Snapshot(s) = event {
            for layer in &mut s.layers {
                layer.summary.noise_floor = f32::NAN;
                layer.ema = None;
            }
        }
    }
    let (mut with, mut without) = (RunState::new(), RunState::new());
    events.iter().for_each(|e| drop(with.apply(e)));
    stripped.iter().for_each(|e| drop(without.apply(e)));
    for (p, r) in with.layers.iter().zip(&without.layers) {
        let (published, rebuilt) = (p.noise_floor(), r.noise_floor());
        assert_eq!(published.map(|f| f as f32), rebuilt.map(|f| f as f32));
        let (published, rebuilt) = (p.ema_reading().expect("fit"), r.ema_reading().expect("fit"));
        assert_eq!(published.steps, 400);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * b.abs().max(1e-3);
        assert!(
            close(published.noise, rebuilt.noise)
                && close(published.noise_predicted, rebuilt.noise_predicted)
                && close(published.batch_correlation, rebuilt.batch_correlation),
            "{published:?} vs {rebuilt:?}"
        );
        assert_eq!(published.lag.is_some(), rebuilt.lag.is_some());
    }
}

/// `full` keeps as many snapshots as a thin recording, every one with its arrays; `every-step` keeps
/// every step whole. Both files read back as written, D0 and the EMA fit included.
#[test]
fn full_detail_recordings_carry_arrays_in_every_snapshot() {
    let events = published(1500);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut counts = Vec::new();
    for detail in [
        RecordDetail::Thin,
        RecordDetail::Full,
        RecordDetail::EveryStep,
    ] {
        let path = dir.path().join(format!("{detail:?}.jsonl"));
        let mut writer = SessionWriter::create(&path, detail.policy()).expect("create");
        for e in &events {
            writer.record(e).expect("record");
        }
        let mut reader = Reader::open(&path).expect("open");
        while !reader.poll(usize::MAX).expect("poll").at_end {}
        let read: Vec<Event> = reader
            .entries()
            .to_vec()
            .iter()
            .map(|e| reader.read(e).expect("read"))
            .collect();
        assert_eq!(reader.skipped().lines, 0);
        let kept = snapshots(&read);
        let whole = kept
            .iter()
            .filter(|s| s.layers.iter().all(|l| !l.batch_mean.is_empty()))
            .count();
        let fitted = kept.iter().filter(|s| s.layers[0].ema.is_some()).count();
        assert!(kept
            .iter()
            .all(|s| s.layers[0].summary.noise_floor.is_finite() || s.step <= 20));
        counts.push((kept.len(), whole, fitted, writer.bytes_written()));
    }
    let [(thin, thin_whole, thin_fits, thin_bytes), (full, full_whole, _, full_bytes), (every, every_whole, every_fits, _)] =
        counts[..]
    else {
        panic!("{counts:?}")
    };
    // The same rate (thin also keeps a snapshot off the beat when its arrays are due).
    assert!(full.abs_diff(thin) <= thin / 20, "{counts:?}");
    assert_eq!(full_whole, full, "every one whole");
    assert!(thin_whole < 10 && thin_fits <= thin_whole, "{counts:?}");
    assert_eq!((every, every_whole), (1500, 1500));
    assert_eq!(every_fits, 1500 - 49, "a fit from step 50 on");
    assert!(full_bytes > 5 * thin_bytes, "{counts:?}");
}
