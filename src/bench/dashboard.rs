//! `bntop bench-dashboard`: what the dashboard costs.
//!
//! 1. Render time per frame at 160x48 with a long history: the synthetic stream is replayed to
//!    `history` steps, then each frame takes the next 15 steps (150 steps/s at 10 fps) and is drawn
//!    through the real crossterm backend into a byte-counting sink (layout, diff and escape codes).
//! 2. Bytes per second written to the terminal at the default frame rate, 120x40, in steady state,
//!    with the real engine training in real time (after a warm-up, so the axes have settled).
//! 3. History memory after `history` steps and after 20x as many: it must not grow.
use super::percentile;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::engine::{self, data::DataSet, TrainConfig};
use crate::protocol::Event;
use crate::ui::app::App;
use crate::ui::options::{ColorMode, UiOptions};
use crate::ui::terminal::{draw_synchronized, CountingWriter};
use crate::ui::theme::Theme;
use crate::ui::{synthetic, view};

pub struct Plan {
    pub history: u64,
    pub frames: usize,
    pub warmup_s: f64,
    pub seconds: f64,
}

type CountingTerminal = Terminal<CrosstermBackend<CountingWriter<io::Sink>>>;

fn terminal(
    width: u16,
    height: u16,
) -> Result<
    (
        CountingTerminal,
        std::sync::Arc<std::sync::atomic::AtomicU64>,
    ),
    String,
> {
    let (writer, bytes) = CountingWriter::new(io::sink());
    let backend = CrosstermBackend::new(writer);
    let viewport = ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, width, height));
    let terminal = Terminal::with_options(backend, ratatui::TerminalOptions { viewport })
        .map_err(|e| format!("cannot make a terminal: {e}"))?;
    Ok((terminal, bytes))
}

fn render_time(plan: &Plan, out: &mut dyn Write) -> Result<(), String> {
    const STEPS_PER_FRAME: usize = 15;
    let options = UiOptions {
        color: ColorMode::Ansi256,
        ..UiOptions::default()
    };
    let theme = Theme::new(&options);
    let events = synthetic::run(plan.history + (plan.frames * STEPS_PER_FRAME) as u64, 3);
    let split = events
        .iter()
        .position(|e| e.step().is_some_and(|s| s > plan.history))
        .unwrap_or(events.len());
    let mut app = App::new();
    let now = Instant::now();
    let started = Instant::now();
    for event in &events[..split] {
        app.on_event(event, now);
    }
    let apply_us = started.elapsed().as_secs_f64() * 1e6 / split.max(1) as f64;
    let (mut terminal, bytes) = terminal(160, 48)?;
    let mut times = Vec::with_capacity(plan.frames);
    let mut rest = events[split..].iter();
    for _ in 0..plan.frames {
        for event in rest.by_ref().take(STEPS_PER_FRAME) {
            app.on_event(event, now);
        }
        let t = Instant::now();
        draw_synchronized(&mut terminal, |f| view::draw(f, &app, &theme))
            .map_err(|e| format!("draw failed: {e}"))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let bytes = bytes.load(Ordering::Relaxed) as f64 / plan.frames.max(1) as f64;
    writeln!(
        out,
        "render 160x48, {} steps of history, {} frames: median {:.3} ms, p90 {:.3} ms, max {:.3} ms per frame (target < 2 ms); {:.0} bytes/frame; applying one step's events: {:.1} us",
        plan.history,
        plan.frames,
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 1.0),
        bytes,
        apply_us
    )
    .map_err(|e| e.to_string())
}

fn memory(plan: &Plan, out: &mut dyn Write) -> Result<(), String> {
    let mut app = App::new();
    let now = Instant::now();
    let mut at = Vec::new();
    for steps in [plan.history, plan.history * 20] {
        app = App::new();
        for event in synthetic::run(steps, 5) {
            app.on_event(&event, now);
        }
        at.push((steps, app.live.history_bytes()));
    }
    let _ = app;
    for (steps, bytes) in at {
        writeln!(
            out,
            "history memory after {steps} steps: {:.2} MB",
            bytes as f64 / 1e6
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The real engine, drawn the way the dashboard's loop draws: a frame when something changed, at
/// most `fps` per second.
fn bandwidth(plan: &Plan, data: &DataSet, out: &mut dyn Write) -> Result<(), String> {
    let options = UiOptions::default();
    let theme = Theme::new(&UiOptions {
        color: ColorMode::Ansi256,
        ..options
    });
    let engine = engine::spawn(TrainConfig::default(), data.clone()).map_err(|e| e.to_string())?;
    let (mut terminal, bytes) = terminal(120, 40)?;
    let mut app = App::new();
    let interval = options.frame_interval();
    let started = Instant::now();
    let warm = started + Duration::from_secs_f64(plan.warmup_s);
    let end = warm + Duration::from_secs_f64(plan.seconds);
    let (mut measured_from, mut frames) = (None, 0u64);
    let mut next_frame = started;
    let mut dirty = false;
    while Instant::now() < end {
        match engine.events.recv_deadline(next_frame) {
            Ok(event) => {
                let ended = matches!(event, Event::End(_));
                app.on_event(&event, Instant::now());
                dirty = true;
                if ended {
                    return Err("the run ended during the benchmark".into());
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(e) => return Err(format!("engine stopped: {e}")),
        }
        let now = Instant::now();
        if now >= next_frame && dirty {
            app.expire_status(now);
            draw_synchronized(&mut terminal, |f| view::draw(f, &app, &theme))
                .map_err(|e| format!("draw failed: {e}"))?;
            dirty = false;
            next_frame = now + interval;
            if now >= warm {
                frames += 1;
                measured_from.get_or_insert((now, bytes.load(Ordering::Relaxed)));
            }
        }
    }
    let _ = engine.controls.send(crate::protocol::Control::Quit);
    let (t0, b0) = measured_from.ok_or("no frame drawn")?;
    let seconds = t0.elapsed().as_secs_f64();
    let total = bytes.load(Ordering::Relaxed) - b0;
    writeln!(
        out,
        "bandwidth 120x40 at {} fps, live training (step {} at the end), {:.0} s after a {:.0} s warm-up: {:.1} KB/s ({:.0} bytes/frame, {} frames; target <= 20 KB/s)",
        options.fps,
        app.live.step,
        seconds,
        plan.warmup_s,
        total as f64 / seconds / 1e3,
        total as f64 / frames.max(1) as f64,
        frames
    )
    .map_err(|e| e.to_string())
}

pub fn run(plan: &Plan, data: &DataSet, out: &mut dyn Write) -> Result<(), String> {
    render_time(plan, out)?;
    memory(plan, out)?;
    bandwidth(plan, data, out)
}
