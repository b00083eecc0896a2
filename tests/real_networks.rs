//! The dashboard on real networks' shapes: ResNet-18 (20 BN layers) and ResNet-50 (53 layers,
//! 26,560 channels, up to 2048 per layer) from an external producer (format 1.4), drawn into
//! ratatui's TestBackend; and the format's limits for them.
use std::time::Instant;

use bntop::protocol::{limits, BnKind, Event, LayerInfo, RunHeader, MAX_LINE};
use bntop::ui::app::App;
use bntop::ui::keys::Key;
use bntop::ui::options::{ColorMode, UiOptions};
use bntop::ui::synthetic::{self, NetworkRun};
use bntop::ui::theme::Theme;
use bntop::ui::view;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// An app that has seen `steps` steps of the synthetic stream for `header`.
fn app_for(header: RunHeader, steps: u64) -> App {
    let mut app = App::new();
    let now = Instant::now();
    for event in NetworkRun::new(header, steps, 11) {
        app.on_event(&event, now);
    }
    app
}

fn resnet18(steps: u64) -> App {
    app_for(synthetic::producer_header(synthetic::resnet18_layers(), 1), steps)
}

fn resnet50(steps: u64, world_size: u32) -> App {
    app_for(
        synthetic::producer_header(synthetic::resnet50_layers(), world_size),
        steps,
    )
}

fn press(app: &mut App, keys: &[Key]) {
    for k in keys {
        app.on_key(&k.press(), Instant::now());
    }
}

fn render(app: &App, width: u16, height: u16, options: UiOptions) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    let theme = Theme::new(&options);
    terminal.draw(|f| view::draw(f, app, &theme)).expect("draw");
    terminal
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let width = buffer.area.width as usize;
    let symbols: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
    symbols
        .chunks(width)
        .map(|row| row.concat().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn unicode() -> UiOptions {
    UiOptions {
        color: ColorMode::Ansi256,
        ..UiOptions::default()
    }
}

fn text(app: &App, width: u16, height: u16) -> String {
    screen(&render(app, width, height, unicode()))
}

#[test]
fn look() {
    let mut app = resnet50(300, 4);
    println!("{}", text(&app, 160, 48));
    println!("{}", text(&app, 80, 24));
    press(&mut app, &[Key::Char('S'), Key::Char('v')]);
    println!("{}", text(&app, 160, 48));
    println!("{}", text(&app, 80, 24));
}

/// A ResNet-50 snapshot with every per-channel array and 8 ranks passes the limits and fits in a
/// line with room to spare; one rank drift too many does not pass.
#[test]
fn a_resnet50_snapshot_fits_the_limits() {
    let header = synthetic::producer_header(synthetic::resnet50_layers(), 8);
    limits::check_header(&header).expect("ResNet-50 fits");
    let mut run = NetworkRun::new(header.clone(), 3, 1);
    let snapshot = run
        .find(|e| matches!(e, Event::Snapshot(_)))
        .expect("a snapshot");
    limits::check(&snapshot, Some(&header)).expect("within the limits");
    let line = serde_json::to_string(&snapshot).expect("json");
    eprintln!("a ResNet-50 snapshot: {} bytes", line.len());
    assert!(line.len() < MAX_LINE / 2, "{} bytes", line.len());
    let Event::Snapshot(mut s) = snapshot else {
        unreachable!()
    };
    s.layers[0].rank_drift = vec![0.1; limits::MAX_RANKS + 1];
    assert!(limits::check(&Event::Snapshot(s), Some(&header)).is_err());
}
