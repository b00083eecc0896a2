//! The dashboard without a terminal: key presses -> controls (state tests), and the screens drawn
//! into ratatui's TestBackend from a fixed synthetic stream (insta snapshots), at every size.
use std::time::Instant;

use bntop::protocol::{BnMode, Command, Control, ControlEvent, Event, Feed, RecordingStatus};
use bntop::ui::app::{App, PromptKind, READONLY_NOTICE};
use bntop::ui::keys::{bindings, Context};
use bntop::ui::options::{ColorMode, UiOptions};
use bntop::ui::theme::Theme;
use bntop::ui::{synthetic, view};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

mod ui_support;
use ui_support::{render, screen, unicode};

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// An app that has seen `steps` steps of the synthetic run.
fn app_after(steps: u64) -> App {
    let mut app = App::new();
    let now = Instant::now();
    for event in synthetic::run(steps, 7) {
        app.on_event(&event, now);
    }
    app
}

/// An app 20 steps into a long run: every layer still in TRAIN with momentum 0.1.
fn fresh_app() -> App {
    let mut app = App::new();
    let now = Instant::now();
    for event in synthetic::run(1000, 7)
        .iter()
        .take_while(|e| e.step().unwrap_or(0) <= 20)
    {
        app.on_event(event, now);
    }
    assert!(app
        .live
        .layers
        .iter()
        .all(|l| l.mode == BnMode::Train && l.momentum == 0.1));
    app
}

/// `text` typed key by key, then `then`.
fn typed(text: &str, then: &[KeyCode]) -> Vec<KeyEvent> {
    text.chars()
        .map(key)
        .chain(then.iter().map(|&c| code(c)))
        .collect()
}

fn status(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

/// The run controls the key presses send (a live dashboard sends nothing else).
fn press(app: &mut App, keys: &[KeyEvent]) -> Vec<Control> {
    keys.iter()
        .flat_map(|k| app.on_key(k, Instant::now()))
        .map(|command| match command {
            Command::Run(control) => control,
            other => panic!("a live dashboard sent {other:?}"),
        })
        .collect()
}

/// Echo a control back as the engine would, applied at the current step.
fn echo(app: &mut App, control: Control) {
    let step = app.live.step;
    let event = Event::Control(ControlEvent {
        step,
        control,
        rejected: None,
    });
    app.on_event(&event, Instant::now());
}

// ---- key presses -> controls ----

#[test]
fn t_toggles_the_selected_layer_and_follows_the_echo() {
    let mut app = fresh_app();
    assert_eq!(press(&mut app, &[key('j')]), vec![]);
    assert_eq!(app.selected, 1);
    let sent = press(&mut app, &[key('t')]);
    assert_eq!(
        sent,
        vec![Control::SetMode {
            layer: Some(1),
            mode: BnMode::Eval
        }]
    );
    // Until the run applies it, the table still shows TRAIN; after the echo, t goes back.
    assert_eq!(app.live.layers[1].mode, BnMode::Train);
    echo(&mut app, sent[0].clone());
    assert_eq!(app.live.layers[1].mode, BnMode::Eval);
    let status = status(&app);
    assert!(status.contains("block2 -> EVAL"), "{status}");
    assert_eq!(
        press(&mut app, &[key('t')]),
        vec![Control::SetMode {
            layer: Some(1),
            mode: BnMode::Train
        }]
    );
}

#[test]
fn capital_t_switches_all_layers_and_back() {
    let mut app = fresh_app();
    let sent = press(&mut app, &[key('T')]);
    assert_eq!(
        sent,
        vec![Control::SetMode {
            layer: None,
            mode: BnMode::Eval
        }]
    );
    echo(&mut app, sent[0].clone());
    assert!(app.live.layers.iter().all(|l| l.mode == BnMode::Eval));
    assert_eq!(
        press(&mut app, &[key('T')]),
        vec![Control::SetMode {
            layer: None,
            mode: BnMode::Train
        }]
    );
}

#[test]
fn selection_stays_in_range() {
    let mut app = fresh_app();
    press(&mut app, &[key('k'), code(KeyCode::Up)]);
    assert_eq!(app.selected, 0);
    press(
        &mut app,
        &[key('j'), code(KeyCode::Down), key('j'), key('j')],
    );
    assert_eq!(app.selected, 2);
}

#[test]
fn momentum_steps_along_the_ladder_and_stops_at_its_ends() {
    let mut app = fresh_app();
    assert_eq!(
        press(&mut app, &[key('+')]),
        vec![Control::SetMomentum {
            layer: Some(0),
            momentum: 0.2
        }]
    );
    assert_eq!(
        press(&mut app, &[key('-')]),
        vec![Control::SetMomentum {
            layer: Some(0),
            momentum: 0.05
        }]
    );
    echo(
        &mut app,
        Control::SetMomentum {
            layer: Some(0),
            momentum: 1.0,
        },
    );
    assert_eq!(press(&mut app, &[key('+')]), vec![]);
    let status = status(&app);
    assert!(status.contains("already the largest"), "{status}");
    // Off the ladder: the next value above or below.
    echo(
        &mut app,
        Control::SetMomentum {
            layer: Some(0),
            momentum: 0.07,
        },
    );
    assert_eq!(
        press(&mut app, &[key('+')]),
        vec![Control::SetMomentum {
            layer: Some(0),
            momentum: 0.1
        }]
    );
}

#[test]
fn typed_momentum_is_validated() {
    let mut app = fresh_app();
    press(&mut app, &[key('j')]);
    let keys = typed("m0.03", &[KeyCode::Enter]);
    assert_eq!(
        press(&mut app, &keys),
        vec![Control::SetMomentum {
            layer: Some(1),
            momentum: 0.03
        }]
    );
    assert!(app.prompt.is_none());
    // Out of range: nothing sent, an error shown.
    let keys = typed("M1.5", &[KeyCode::Enter]);
    assert_eq!(press(&mut app, &keys), vec![]);
    let status = status(&app);
    assert!(status.contains("must be a number in [0, 1]"), "{status}");
    // Letters are not typed into the prompt (so q does not quit while typing), Esc cancels.
    let keys = typed("Mq0.5", &[KeyCode::Backspace, KeyCode::Esc]);
    assert_eq!(press(&mut app, &keys), vec![]);
    assert!(!app.quit && app.prompt.is_none());
    let keys = typed("M0.5", &[KeyCode::Enter]);
    assert_eq!(
        press(&mut app, &keys),
        vec![Control::SetMomentum {
            layer: None,
            momentum: 0.5
        }]
    );
}

#[test]
fn lr_pause_step_reset_and_quit() {
    let mut app = fresh_app();
    assert_eq!(
        press(&mut app, &[key(']')]),
        vec![Control::SetLr { lr: 0.1 }]
    );
    assert_eq!(
        press(&mut app, &[key('[')]),
        vec![Control::SetLr { lr: 0.025 }]
    );
    // A single step needs a paused run.
    assert_eq!(press(&mut app, &[key('s')]), vec![]);
    assert_eq!(press(&mut app, &[key(' ')]), vec![Control::Pause]);
    echo(&mut app, Control::Pause);
    assert!(app.live.paused);
    assert_eq!(press(&mut app, &[key('s')]), vec![Control::Step]);
    assert_eq!(press(&mut app, &[key('p')]), vec![Control::Resume]);
    assert_eq!(
        press(&mut app, &[key('r')]),
        vec![Control::ResetRunningStats { layer: Some(0) }]
    );
    assert_eq!(
        press(&mut app, &[key('R')]),
        vec![Control::ResetRunningStats { layer: None }]
    );
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(press(&mut app, &[ctrl_c]), vec![Control::Quit]);
    assert!(app.quit);
}

#[test]
fn help_swallows_the_key_that_closes_it() {
    let mut app = fresh_app();
    press(&mut app, &[key('?')]);
    assert!(app.help);
    assert_eq!(press(&mut app, &[key('t')]), vec![]);
    assert!(!app.help);
    // j/k scroll the help instead of moving the selection.
    press(&mut app, &[key('?'), key('j'), key('j'), key('k')]);
    assert!(app.help);
    assert_eq!((app.help_scroll, app.selected), (1, 0));
    // q closes the help (as in htop and btop) instead of ending the run; Ctrl-C still quits.
    assert_eq!(press(&mut app, &[key('q')]), vec![]);
    assert!(!app.help && !app.quit);
    assert_eq!(press(&mut app, &[key('q')]), vec![Control::Quit]);
    assert!(app.quit);
    let mut app = fresh_app();
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(press(&mut app, &[key('?'), ctrl_c]), vec![Control::Quit]);
    assert!(app.quit);
}

/// A paused app (so `s` would send a step), read-only or not.
fn paused_app(readonly: bool) -> App {
    let mut app = fresh_app();
    press(&mut app, &[key(' ')]);
    echo(&mut app, Control::Pause);
    app.readonly = readonly;
    app
}

/// `bntop attach --readonly`: every key that would ask the run for something (a control, or a
/// prompt that ends in one) sends nothing, opens no prompt and says why; view keys still work.
#[test]
fn read_only_viewer_sends_no_control_and_says_so() {
    let mut refused = 0;
    for binding in bindings(Context::Live) {
        for k in binding.keys {
            let mut writer = paused_app(false);
            let sent = writer.on_key(&k.press(), Instant::now());
            // Typing a time window (`Z`) changes this dashboard only.
            let run_prompt = |app: &App| {
                app.prompt
                    .as_ref()
                    .is_some_and(|p| p.kind != PromptKind::Window)
            };
            let asks_the_run = run_prompt(&writer)
                || sent
                    .iter()
                    .any(|c| matches!(c, Command::Run(c) if *c != Control::Quit));
            let mut viewer = paused_app(true);
            let sent = viewer.on_key(&k.press(), Instant::now());
            assert!(
                sent.iter()
                    .all(|c| *c == Command::Run(Control::Quit) || !matches!(c, Command::Run(_))),
                "{k:?} sent {sent:?} from a read-only viewer"
            );
            assert!(!run_prompt(&viewer), "{k:?} opened a prompt");
            assert_eq!(
                asks_the_run,
                binding.action.controls_the_run(),
                "{k:?}: controls_the_run() disagrees with what the key does"
            );
            if asks_the_run {
                assert_eq!(status(&viewer), READONLY_NOTICE, "{k:?}");
                refused += 1;
            }
        }
    }
    // t T + = - _ m M ] [ space p s r R o F P a A b K U !
    assert_eq!(refused, 24);
    // The report of the issue: typing a momentum used to end in "sent".
    let mut viewer = paused_app(true);
    let sent = press(&mut viewer, &typed("m0.5", &[KeyCode::Enter]));
    assert_eq!(sent, vec![]);
    assert_eq!(status(&viewer), READONLY_NOTICE);
    // Keys that only change this dashboard still work.
    press(&mut viewer, &[key('j'), key('f')]);
    assert_eq!(viewer.selected, 1);
    assert!(viewer.frozen.is_some());
}

/// `w` pauses this process's session file; a dashboard that writes none (an attached viewer,
/// --no-record) says so instead of sending a command nobody acts on.
#[test]
fn w_needs_a_session_file_to_pause() {
    let mut viewer = fresh_app();
    assert_eq!(viewer.on_key(&key('w'), Instant::now()), vec![]);
    assert!(
        status(&viewer).contains("no session file"),
        "{}",
        status(&viewer)
    );
    let mut app = fresh_app();
    let recording = RecordingStatus {
        path: Some("sessions/x.jsonl".into()),
        active: true,
        bytes: 0,
        error: None,
    };
    app.on_feed(&Feed::Recording(recording), Instant::now());
    assert_eq!(
        app.on_key(&key('w'), Instant::now()),
        vec![Command::SetRecording(false)]
    );
    assert_eq!(status(&app), "recording paused");
}

/// The heatmap colours follow the data: the layer switched to EVAL (whose d runs away) uses the
/// saturated ends of the scale, and its cells are not all one colour.
#[test]
fn heatmap_colours_follow_the_data() {
    use ratatui::style::Color;
    let mut app = app_after(1000);
    let options = UiOptions {
        color: ColorMode::TrueColor,
        ..UiOptions::default()
    };
    let colours = |app: &App| {
        let terminal = render(app, 160, 48, options);
        let buffer = terminal.backend().buffer().clone();
        let mut seen = std::collections::BTreeSet::new();
        for cell in buffer.content.iter().filter(|c| c.symbol() == "▀") {
            for color in [cell.fg, cell.bg] {
                if let Color::Rgb(r, g, b) = color {
                    seen.insert((r, g, b));
                }
            }
        }
        seen
    };
    let train_layer = colours(&app);
    press(&mut app, &[key('j')]);
    let eval_layer = colours(&app);
    assert!(train_layer.len() >= 3, "{train_layer:?}");
    // Both ends of the diverging scale appear for the runaway layer.
    assert!(
        eval_layer.contains(&(255, 60, 50)) || eval_layer.contains(&(60, 110, 255)),
        "{eval_layer:?}"
    );
}

#[test]
fn freeze_holds_the_view_while_events_keep_coming() {
    let mut app = app_after(100);
    press(&mut app, &[key('f')]);
    let now = Instant::now();
    for event in synthetic::run(200, 7).into_iter().skip(150) {
        app.on_event(&event, now);
    }
    assert_eq!(app.view().step, 100);
    assert_eq!(app.live.step, 200);
    let frozen = screen(&render(&app, 120, 40, unicode()));
    assert!(frozen.contains("FROZEN @100 (live 200)"), "{frozen}");
    press(&mut app, &[key('f')]);
    assert_eq!(app.view().step, 200);
}

// ---- screens ----

#[test]
fn snapshot_main_80x24() {
    let app = app_after(600);
    insta::assert_snapshot!(screen(&render(&app, 80, 24, unicode())));
}

#[test]
fn snapshot_main_160x48() {
    let app = app_after(600);
    insta::assert_snapshot!(screen(&render(&app, 160, 48, unicode())));
}

#[test]
fn snapshot_eval_layer_log_r_heatmap_160x48() {
    let mut app = app_after(1000);
    press(&mut app, &[key('j'), key('d'), key('c'), key('c')]);
    insta::assert_snapshot!(screen(&render(&app, 160, 48, unicode())));
}

#[test]
fn snapshot_second_chart_page_80x24() {
    let mut app = app_after(600);
    press(
        &mut app,
        &[
            code(KeyCode::Tab),
            code(KeyCode::Right),
            code(KeyCode::Right),
        ],
    );
    insta::assert_snapshot!(screen(&render(&app, 80, 24, unicode())));
}

#[test]
fn snapshot_help_80x24() {
    let mut app = app_after(600);
    press(&mut app, &[key('?')]);
    insta::assert_snapshot!(screen(&render(&app, 80, 24, unicode())));
}

#[test]
fn snapshot_paused_with_prompt_ascii_80x24() {
    let mut app = app_after(600);
    echo(&mut app, Control::Pause);
    press(
        &mut app,
        &[key('j'), key('m'), key('0'), key('.'), key('0')],
    );
    let options = UiOptions {
        color: ColorMode::None,
        ascii: true,
        ..UiOptions::default()
    };
    let text = screen(&render(&app, 80, 24, options));
    assert!(text.is_ascii(), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn snapshot_too_small() {
    let app = app_after(10);
    insta::assert_snapshot!(screen(&render(&app, 40, 10, unicode())));
}

#[test]
fn waiting_screen_before_any_event() {
    let app = App::new();
    let text = screen(&render(&app, 80, 24, unicode()));
    assert!(text.contains("waiting for the first step"), "{text}");
}

/// Every size from 1x1 to 200x60 draws without panicking, with data, help and in ASCII.
#[test]
fn every_terminal_size_draws() {
    let mut app = app_after(300);
    let ascii = UiOptions {
        color: ColorMode::None,
        ascii: true,
        ..UiOptions::default()
    };
    let theme = Theme::new(&unicode());
    let ascii_theme = Theme::new(&ascii);
    let mut terminal = Terminal::new(TestBackend::new(1, 1)).expect("test backend");
    for width in 1..=200u16 {
        for height in 1..=60u16 {
            terminal.backend_mut().resize(width, height);
            terminal
                .resize(ratatui::layout::Rect::new(0, 0, width, height))
                .expect("resize");
            // Alternate views so each size also sees the help overlay and the ASCII fallback.
            app.help = (width + height) % 3 == 0;
            let theme = if (width * height) % 2 == 0 {
                &theme
            } else {
                &ascii_theme
            };
            terminal.draw(|f| view::draw(f, &app, theme)).expect("draw");
            if theme.ascii {
                let buffer = terminal.backend().buffer();
                assert!(
                    buffer.content.iter().all(|c| c.symbol().is_ascii()),
                    "{width}x{height}"
                );
            }
        }
    }
}

#[test]
fn o_cycles_the_data_order() {
    use bntop::protocol::DataOrder;
    let mut app = fresh_app();
    assert_eq!(app.live.data_order, "shuffled");
    let sent = press(&mut app, &[key('o')]);
    assert_eq!(
        sent,
        vec![Control::SetDataOrder {
            order: DataOrder::ClassSorted
        }]
    );
    echo(&mut app, sent[0].clone());
    assert_eq!(app.live.data_order, "class_sorted");
    let text = screen(&render(&app, 120, 40, unicode()));
    assert!(text.contains("order class_sorted"), "{text}");
    assert_eq!(
        press(&mut app, &[key('o')]),
        vec![Control::SetDataOrder {
            order: DataOrder::Clips
        }]
    );
}

#[test]
fn snapshot_lab_panel_160x48() {
    let mut app = app_after(1000);
    press(&mut app, &[key('j'), code(KeyCode::Tab)]);
    let text = screen(&render(&app, 160, 48, unicode()));
    assert!(text.contains("block2 lab"), "{text}");
    insta::assert_snapshot!(text);
}

/// In a third of a 120x40 terminal the lab panel cannot hold every reading: it keeps every
/// number and drops the readings.
#[test]
fn narrow_lab_panel_keeps_every_number() {
    let mut app = app_after(1000);
    press(&mut app, &[code(KeyCode::Tab)]);
    let text = screen(&render(&app, 120, 40, unicode()));
    assert!(text.contains("block1 lab"), "{text}");
    for quantity in [
        "drift D vs floor D0",
        "probe ∇b, eval mode",
        "max |cos(w, grad)|",
    ] {
        assert!(text.contains(quantity), "{quantity} missing\n{text}");
    }
    assert!(
        !text.contains("rectified Gaussian"),
        "no room for readings\n{text}"
    );
    let wide = screen(&render(&app, 160, 48, unicode()));
    assert!(
        wide.contains("rectified Gaussian"),
        "room for readings\n{wide}"
    );
}

/// A replayed file can hold any steps: huge ones and ones going backwards must not panic the
/// state or the views.
#[test]
fn extreme_and_backward_steps_do_not_panic() {
    let mut app = app_after(50);
    let Some(Event::Snapshot(last)) = synthetic::run(50, 7)
        .into_iter()
        .rev()
        .find(|e| matches!(e, Event::Snapshot(_)))
    else {
        panic!("a snapshot")
    };
    for step in [u64::MAX, u64::MAX - 1, 3, 0, u64::MAX] {
        let mut s = last.clone();
        s.step = step;
        s.time_s = -1.0;
        app.on_event(&Event::Snapshot(s), Instant::now());
        let text = screen(&render(&app, 160, 48, unicode()));
        assert!(text.contains("block1"));
    }
}
