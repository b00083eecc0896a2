//! The time charts as a reader uses them: the window (`z`, `Z`), the step cursor (`x`, `<` `>`,
//! `{` `}`, a click with `--mouse`), step ticks, and the labelled control markers (`i`).
use std::time::Instant;

use bntop::protocol::{EndReason, Event, RunEnd};
use bntop::ui::app::{App, StatusKind};
use bntop::ui::synthetic;
use bntop::ui::theme::Theme;
use bntop::ui::time_window::{Span, Window};
use bntop::ui::view;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::Terminal;

mod ui_support;
use ui_support::{render, screen, unicode};

/// An app that has seen `steps` steps of the synthetic run (EVAL at 40%, momentum at 70%), and
/// its end if `finished`.
fn app_after(steps: u64, finished: bool) -> App {
    let mut app = App::new();
    let now = Instant::now();
    for event in synthetic::run(steps, 7) {
        app.on_event(&event, now);
    }
    if finished {
        let end = RunEnd {
            step: steps,
            reason: EndReason::Completed,
            elapsed_s: 10.0,
            message: None,
        };
        app.on_event(&Event::End(end), now);
    }
    app
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        let key = KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert!(
            app.on_key(&key, Instant::now()).is_empty(),
            "{c} sent something"
        );
    }
}

fn enter(app: &mut App) {
    let key = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    app.on_key(&key, Instant::now());
}

fn status(app: &App) -> (String, Option<StatusKind>) {
    let s = app.status.as_ref();
    (
        s.map(|s| s.text.clone()).unwrap_or_default(),
        s.map(|s| s.kind),
    )
}

/// Draw as the run loop does, keeping where the charts went.
fn draw(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    let theme = Theme::new(&unicode());
    let mut graphs = Vec::new();
    terminal
        .draw(|f| graphs = view::draw_measured(f, app, &theme))
        .expect("draw");
    app.chart.graphs = graphs;
    screen(&terminal)
}

/// The step-tick row of the first chart panel: the line above its bottom border.
fn first_tick_row(screen: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let top = lines
        .iter()
        .position(|l| l.starts_with("╭ block1 μ"))
        .expect("the mean chart");
    let bottom = top
        + lines[top..]
            .iter()
            .position(|l| l.starts_with('╰'))
            .expect("its bottom border");
    lines[bottom - 1].to_string()
}

#[test]
fn a_finished_run_is_drawn_to_its_last_step_with_round_ticks() {
    // 1,053 steps: while it runs the axis is 0-2k (it grows in 1-2-5 steps); once it ended, 0-1,053.
    let mut running = app_after(1_053, false);
    let ticks = first_tick_row(&draw(&mut running, 120, 40));
    assert!(ticks.contains("2k") && ticks.contains("500"), "{ticks}");
    let mut finished = app_after(1_053, true);
    assert_eq!(finished.chart_span(), Span { from: 0, to: 1_053 });
    let ticks = first_tick_row(&draw(&mut finished, 120, 40));
    assert!(ticks.contains(" 1k") && !ticks.contains("2k"), "{ticks}");
    // Round steps only, in order: 0 200 400 ... 1k.
    let labels: Vec<&str> = ticks
        .split(|c: char| c == '│' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        labels[..6],
        ["0", "200", "400", "600", "800", "1k"],
        "{ticks}"
    );
}

#[test]
fn z_cycles_the_window_and_z_types_one() {
    let mut app = app_after(3_000, true);
    press(&mut app, "z");
    assert_eq!(app.chart.window, Window::Last(1_000));
    assert_eq!(
        app.chart_span(),
        Span {
            from: 2_000,
            to: 3_000
        }
    );
    assert!(status(&app)
        .0
        .starts_with("time window: last 1k, steps 2,000 to 3,000"));
    let screen = draw(&mut app, 120, 40);
    assert!(screen.contains(" last 1k "), "{screen}");
    press(&mut app, "zzz");
    assert_eq!(app.chart.window, Window::Whole);
    // A bad window: one line in the footer, nothing changes.
    press(&mut app, "Z4k..2k");
    enter(&mut app);
    assert_eq!(
        status(&app),
        (
            "a window ends after it starts, got \"4k..2k\"".into(),
            Some(StatusKind::Error)
        )
    );
    assert_eq!(app.chart.window, Window::Whole);
    press(&mut app, "Z1000..2500");
    enter(&mut app);
    let typed = Window::Range {
        from: 1_000,
        to: 2_500,
    };
    assert_eq!(app.chart.window, typed);
    // It joins the cycle after the presets.
    press(&mut app, "zzzz");
    assert_eq!(app.chart.window, Window::Last(100_000));
    press(&mut app, "z");
    assert_eq!(app.chart.window, typed);
    press(&mut app, "z");
    assert_eq!(app.chart.window, Window::Whole);
}

/// The cursor's values are the series' values at its step, and move with it.
#[test]
fn the_cursor_reads_every_chart_at_its_step() {
    let mut app = app_after(3_000, true);
    press(&mut app, "Z");
    press(&mut app, "1000..2500");
    enter(&mut app);
    press(&mut app, "x");
    assert_eq!(app.chart.cursor, Some(2_500));
    press(&mut app, "{{");
    assert_eq!(app.chart.cursor, Some(2_200));
    draw(&mut app, 120, 40);
    // 1,500 steps over one chart's dot columns: `<` moves by that many.
    let dot = app.chart.graphs[0].steps_per_dot();
    assert!(dot > 1 && dot < 100, "{dot}");
    press(&mut app, "<<<");
    let at = 2_200 - 3 * dot;
    assert_eq!(app.chart.cursor, Some(at));
    let screen = draw(&mut app, 160, 48);
    let loss = app
        .live
        .loss_history
        .value_at(at)
        .expect("a loss at the cursor");
    let expected = format!(
        "step {}: train {}",
        thousands(at),
        bntop::ui::format::num(f64::from(loss), 3)
    );
    assert!(screen.contains(&expected), "{expected}\n{screen}");
    press(&mut app, ">");
    let later = draw(&mut app, 160, 48);
    assert!(later.contains(&format!("step {}:", thousands(at + dot))));
    // The footer follows the cursor, not where `x` first put it.
    assert_eq!(
        status(&app).0,
        format!("cursor at step {}", thousands(at + dot))
    );
    press(&mut app, "x");
    assert!(!draw(&mut app, 160, 48).contains("step 2,"));
}

fn thousands(n: u64) -> String {
    bntop::ui::view::axis::step_full(n)
}

#[test]
fn a_click_puts_the_cursor_at_the_step_under_it() {
    let mut app = app_after(3_000, true);
    draw(&mut app, 120, 40);
    let graph = app.chart.graphs[0];
    let (column, row) = (graph.area.x + graph.area.width / 2, graph.area.y + 1);
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    };
    assert!(app.on_mouse(&click, Instant::now()));
    let step = app.chart.cursor.expect("a cursor");
    assert_eq!(graph.column_of(step), Some(column));
    assert!((1_400..1_600).contains(&step), "{step}");
    // Outside every chart: nothing.
    let outside = MouseEvent { row: 0, ..click };
    assert!(!app.on_mouse(&outside, Instant::now()));
}

#[test]
fn markers_have_a_glyph_per_kind_a_legend_and_hide() {
    let mut app = app_after(3_000, true);
    let screen = draw(&mut app, 120, 40);
    // EVAL at step 1200 and a momentum change at 2100, on top of their lines.
    assert!(
        screen.contains("markers: E eval  m momentum  (i hides)"),
        "{screen}"
    );
    let first_row = screen
        .lines()
        .skip_while(|l| !l.starts_with("╭ block1 μ"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        first_row.contains('E') && first_row.contains('m'),
        "{first_row}"
    );
    press(&mut app, "i");
    let hidden = draw(&mut app, 120, 40);
    assert!(!hidden.contains("markers:"), "{hidden}");
}

#[test]
fn snapshot_window_cursor_and_markers_120x40() {
    let mut app = app_after(3_000, true);
    press(&mut app, "Z");
    press(&mut app, "1000..2500");
    enter(&mut app);
    press(&mut app, "x{{");
    let terminal = render(&app, 120, 40, unicode());
    insta::assert_snapshot!(screen(&terminal));
}
