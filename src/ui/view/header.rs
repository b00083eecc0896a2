//! The header: who produces the stream (the built-in dfdx engine or e.g. bntop-torch, with its
//! framework, model, device and ranks), where the run is (step, epoch, loss, accuracy, held-out accuracy with BN in train
//! and in eval mode, speed), how it is set up (optimizer, lr, data order) and what state the
//! dashboard is in (running, paused, frozen, finished, recording). Items wrap whole, never cut.
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::protocol::{EndReason, LinkStatus, RecordingStatus, ReplayStatus, RunHeader};
use crate::ui::app::App;
use crate::ui::format::{num, pct};
use crate::ui::health::{self, Health};
use crate::ui::state::RunState;
use crate::ui::theme::{Role, Theme};

const MAX_LINES: usize = 3;

type Item = Vec<Span<'static>>;

fn labelled(theme: &Theme, label: &str, value: String, health: Health) -> Item {
    vec![
        Span::styled(format!("{label} "), theme.dim()),
        Span::styled(value, theme.health(health)),
    ]
}

/// An accuracy is a fraction of images, never NaN even in a diverged run: NaN is an external
/// producer's "not measured" (a held-out pass without batch statistics, a step without `log`).
fn accuracy(a: f32) -> String {
    if a.is_nan() {
        "-".into()
    } else {
        pct(f64::from(a))
    }
}

fn items(app: &App, theme: &Theme) -> Vec<Item> {
    let s = app.view();
    let mut items: Vec<Item> = vec![vec![Span::styled("bntop", theme.title())]];
    items.extend(producer_items(s.header.as_ref(), theme));
    if let Some(d) = s.header.as_ref().and_then(|h| h.data.as_ref()) {
        items.push(vec![Span::raw(format!(
            "{} {}/{}",
            d.name, d.train_images, d.heldout_images
        ))]);
    }
    items.extend(compare_items(app, theme));
    items.push(labelled(theme, "step", s.step.to_string(), Health::Ok));
    items.push(labelled(theme, "epoch", s.epoch.to_string(), Health::Ok));
    let loss = f64::from(s.loss);
    items.push(labelled(theme, "loss", num(loss, 3), health::finite(loss)));
    items.push(labelled(
        theme,
        "acc",
        accuracy(s.batch_accuracy),
        Health::Ok,
    ));
    items.extend(heldout_item(s, theme));
    items.push(rate_item(app, s, theme));
    if let Some(h) = &s.header {
        items.extend(setup_items(h, s, theme));
    }
    items.extend(state_items(app, s, theme));
    items
}

/// The last held-out accuracies: with batch statistics, with the running (EMA) ones, and with
/// precise ones when a three-way evaluation measured them.
fn heldout_item(s: &RunState, theme: &Theme) -> Option<Item> {
    let e = s.last_evaluation.as_ref()?;
    let train = accuracy(e.batch_stats.accuracy);
    let eval = accuracy(e.running_stats.accuracy);
    let mut item = vec![
        Span::styled("held-out ", theme.dim()),
        Span::styled("batch ", theme.dim()),
        Span::raw(train),
        Span::styled(" EMA ", theme.dim()),
        Span::raw(eval),
    ];
    if let Some(p) = s.last_three_way.as_ref().and_then(|t| t.precise_stats) {
        item.push(Span::styled(" Precise ", theme.dim()));
        item.push(Span::raw(accuracy(p.accuracy)));
    }
    Some(item)
}

/// Steps per second, or that the link to a remote run is lost.
fn rate_item(app: &App, s: &RunState, theme: &Theme) -> Item {
    match &app.link_lost {
        // The rate of a stream that stopped would be stale: say that it stopped instead.
        Some(LinkStatus::Lost { attempts, .. }) => vec![Span::styled(
            format!(" DISCONNECTED, retry {} ", attempts + 1),
            theme.banner(),
        )],
        _ => {
            let rate = match s.rate.per_second() {
                Some(r) if !s.paused && s.end.is_none() => format!("{r:.0}"),
                _ => "-".into(),
            };
            labelled(theme, "steps/s", rate, Health::Ok)
        }
    }
}

/// How the run is set up: optimizer, learning rate, batch size and data order.
fn setup_items(h: &RunHeader, s: &RunState, theme: &Theme) -> Vec<Item> {
    let o = &h.config.optimizer;
    let kind = o.display_name();
    let mut items = vec![
        vec![Span::raw(kind.to_string())],
        labelled(theme, "lr", num(f64::from(s.lr), 3), Health::Ok),
    ];
    // An external producer may not know these (0 and "": not known).
    if h.config.batch_size > 0 {
        let batch = h.config.batch_size.to_string();
        items.push(labelled(theme, "batch", batch, Health::Ok));
    }
    if !s.data_order.is_empty() {
        items.push(labelled(theme, "order", s.data_order.clone(), Health::Ok));
    }
    items
}

/// What state the run and the dashboard are in: finished, paused, frozen, replaying, recording.
fn state_items(app: &App, s: &RunState, theme: &Theme) -> Vec<Item> {
    let mut items = Vec::new();
    let run_state = match s.finished() {
        Some(EndReason::Completed) => Some("FINISHED"),
        Some(EndReason::Quit) => Some("STOPPED"),
        Some(EndReason::Diverged) => Some("DIVERGED"),
        Some(EndReason::Error) => Some("FAILED"),
        None if app.live.paused => Some("PAUSED"),
        None => None,
    };
    if let Some(label) = run_state {
        items.push(vec![Span::styled(format!(" {label} "), theme.banner())]);
    }
    if app.frozen.is_some() {
        items.push(vec![Span::styled(
            format!(" FROZEN @{} (live {}) ", s.step, app.live.step),
            theme.banner(),
        )]);
    }
    if let Some(replay) = &app.replay {
        items.push(replay_item(replay, theme));
    }
    if app.replay.is_none() {
        items.push(recording_item(app.recording.as_ref(), theme));
    }
    items
}

/// Which run is A and which B (`--compare`), as the charts draw them ("A ━ x.jsonl B ┄
/// y.jsonl"), and how many layers B shares when the models differ.
fn compare_items(app: &App, theme: &Theme) -> Vec<Item> {
    let Some(b) = &app.compare else {
        return Vec::new();
    };
    let s = app.view();
    let a = match (&app.replay, &app.recording) {
        (Some(r), _) => r.file.clone(),
        (None, Some(RecordingStatus { path: Some(p), .. })) => file_name(p),
        _ => "this run".into(),
    };
    let item = vec![
        Span::styled(format!("A {} ", theme.glyph("━", "-")), theme.title()),
        Span::raw(a),
        Span::styled(
            format!(" B {} ", theme.glyph("┄", ":")),
            theme.ghost(Role::Primary),
        ),
        Span::raw(b.name.clone()),
    ];
    let mut items = vec![item];
    let mut notices: Vec<String> = b.sharing(s).notice().into_iter().collect();
    if b.skipped_lines > 0 {
        notices.push(format!("B: {} bad lines skipped", b.skipped_lines));
    }
    for notice in notices {
        items.push(vec![Span::styled(notice, theme.health(Health::Warn))]);
    }
    items
}

/// The last component of a path as the header shows it.
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Who produces the stream: bntop's own dfdx engine, or an external producer (format 1.4) with
/// its framework, model, device and world size, as far as it said.
fn producer_items(header: Option<&RunHeader>, theme: &Theme) -> Vec<Item> {
    let Some(h) = header else {
        return Vec::new();
    };
    let Some(p) = &h.producer else {
        return vec![vec![Span::styled("dfdx built-in", theme.dim())]];
    };
    let name = format!("{} {}", p.name, p.version);
    let mut items = vec![vec![Span::raw(name.trim().to_string())]];
    if !p.framework.is_empty() {
        items.push(vec![Span::raw(p.framework.clone())]);
    }
    if !p.model.is_empty() {
        items.push(labelled(theme, "model", p.model.clone(), Health::Ok));
    }
    if !p.device.is_empty() {
        items.push(labelled(theme, "on", p.device.clone(), Health::Ok));
    }
    if p.world_size > 1 {
        let world = p.world_size.to_string();
        items.push(labelled(theme, "ranks", world, Health::Ok));
    }
    items
}

/// "REPLAY ▶ 4x step 1200/56000 run.jsonl" with indexing, following and skipped lines.
fn replay_item(r: &ReplayStatus, theme: &Theme) -> Item {
    let state = if r.playing {
        theme.glyph("▶", ">")
    } else {
        theme.glyph("⏸", "||")
    };
    let mut item = vec![
        Span::styled(
            format!(" REPLAY {state} {}x ", num(r.speed, 3)),
            theme.banner(),
        ),
        Span::raw(format!(" step {}/{} {}", r.step, r.last_step, r.file)),
    ];
    if !r.indexed {
        item.push(Span::styled(" indexing", theme.dim()));
    }
    if r.following {
        item.push(Span::styled(" following", theme.status()));
    }
    if r.skipped_lines > 0 {
        let text = format!(" skipped {} bad lines", r.skipped_lines);
        item.push(Span::styled(text, theme.health(Health::Warn)));
    }
    item
}

/// "● REC sessions/x.jsonl 1.2 MB", "REC paused (w)" or "not recording".
fn recording_item(recording: Option<&RecordingStatus>, theme: &Theme) -> Item {
    match recording {
        Some(RecordingStatus {
            path: Some(path),
            active,
            bytes,
            error,
        }) => {
            let size = format!("{:.1} MB", *bytes as f64 / 1e6);
            if error.is_some() {
                vec![Span::styled(
                    format!("REC FAILED {path}"),
                    theme.health(Health::Bad),
                )]
            } else if *active {
                let dot = theme.glyph("●", "*");
                vec![Span::styled(
                    format!("{dot} REC {path} {size}"),
                    theme.health(Health::Bad),
                )]
            } else {
                vec![Span::styled(
                    format!("REC paused (w) {path} {size}"),
                    theme.dim(),
                )]
            }
        }
        _ => vec![Span::styled("not recording", theme.dim())],
    }
}

/// The header's lines for this width (at most three).
pub fn lines(app: &App, theme: &Theme, width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut current: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for item in items(app, theme) {
        let len: usize = item.iter().map(|s| s.width()).sum();
        if used > 0 && used + 2 + len > width {
            lines.push(Line::from(std::mem::take(&mut current)));
            used = 0;
        }
        if used > 0 {
            current.push(Span::raw("  "));
            used += 2;
        }
        current.extend(item);
        used += len;
    }
    if !current.is_empty() {
        lines.push(Line::from(current));
    }
    lines.truncate(MAX_LINES);
    lines
}

pub fn draw(frame: &mut Frame, area: Rect, lines: Vec<Line<'static>>) {
    frame.render_widget(Paragraph::new(lines), area);
}
