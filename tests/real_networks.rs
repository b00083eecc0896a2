//! The dashboard on real networks' shapes: ResNet-18 (20 BN layers) and ResNet-50 (53 layers,
//! 26,560 channels, up to 2048 per layer) from an external producer (format 1.4), drawn into
//! ratatui's TestBackend; and the format's limits for them.
use std::time::Instant;

use bntop::protocol::{
    limits, BnKind, BnMode, Command, Control, ControlEvent, Event, RunHeader, MAX_LINE,
};
use bntop::ui::app::App;
use bntop::ui::keys::Key;
use bntop::ui::names::shorten;
use bntop::ui::options::{ColorMode, UiOptions};
use bntop::ui::synthetic::{self, NetworkRun};
use bntop::ui::theme::Theme;
use bntop::ui::view;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

mod ui_support;
use ui_support::{render, screen, unicode};

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
    app_for(
        synthetic::producer_header(synthetic::resnet18_layers(), 1),
        steps,
    )
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

fn text(app: &App, width: u16, height: u16) -> String {
    screen(&render(app, width, height, unicode()))
}

fn status(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

/// The run controls the keys send.
fn sent(app: &mut App, keys: &[Key]) -> Vec<Control> {
    keys.iter()
        .flat_map(|k| app.on_key(&k.press(), Instant::now()))
        .filter_map(|c| match c {
            Command::Run(control) => Some(control),
            _ => None,
        })
        .collect()
}

/// The screen line holding a table row for `name` (the marker or a space before it).
fn row_of<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.contains(&format!(" {name} ")) || l.contains(&format!("▶{name} ")))
}

/// The table rows' layer names, top to bottom.
fn table_names(text: &str, names: &[String]) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let cell = l.strip_prefix('│')?.get(..)?;
            let first = cell.trim_start_matches('▶').split_whitespace().next()?;
            names
                .iter()
                .find(|n| n.as_str() == first || shorten(n, first.chars().count()) == first)
                .cloned()
        })
        .collect()
}

/// The next snapshot of `app`'s run, with layer `hot`'s drift `factor` times its D0 (so it is
/// the worst by Ξ).
fn with_hot_layer(app: &mut App, header: &RunHeader, steps: u64, hot: usize, factor: f32) {
    let Some(Event::Snapshot(mut s)) = NetworkRun::new(header.clone(), steps + 1, 11)
        .filter(|e| matches!(e, Event::Snapshot(_)))
        .last()
    else {
        panic!("a snapshot")
    };
    let floor = app.live.layers[hot].noise_floor().expect("a noise floor") as f32;
    s.layers[hot].summary.drift = factor * floor;
    app.on_event(&Event::Snapshot(s), Instant::now());
}

/// ResNet-18's 20 layers on 80x24: the table shows a window of rows that follows the selection
/// (centred), says which rows show, and the charts keep a row of the screen.
#[test]
fn resnet18_table_scrolls_with_the_selection() {
    let mut app = resnet18(120);
    let names: Vec<String> = app.live.layers.iter().map(|l| l.name.clone()).collect();
    let top = text(&app, 80, 24);
    let shown = table_names(&top, &names);
    assert!(shown.len() >= 5 && shown.len() < 20, "{top}");
    assert_eq!(shown[0], "bn1", "{top}");
    assert!(top.contains(&format!("▼ 1-{} of 20", shown.len())), "{top}");
    assert!(top.contains("bn1 μ ch0"), "a row of charts\n{top}");
    press(&mut app, &[Key::Char('j'); 11]);
    assert_eq!(app.live.layers[app.selected].name, "layer3.0.bn2");
    let scrolled = text(&app, 80, 24);
    let rows = table_names(&scrolled, &names);
    assert_eq!(rows.len(), shown.len(), "{scrolled}");
    let at = rows
        .iter()
        .position(|n| n == "layer3.0.bn2")
        .expect("selection in view");
    assert_eq!(at, rows.len() / 2, "centred\n{scrolled}");
    assert!(scrolled.contains("│▶layer3.0.bn2 "), "{scrolled}");
    assert!(
        scrolled.contains("▲▼"),
        "more rows above and below\n{scrolled}"
    );
    assert!(!rows.contains(&"bn1".to_string()), "{scrolled}");
    // To the last layer: the window ends there, the selection is in its last row.
    press(&mut app, &[Key::Char('j'); 30]);
    let bottom = text(&app, 80, 24);
    let rows = table_names(&bottom, &names);
    assert_eq!(rows.last(), names.last(), "{bottom}");
    assert!(
        bottom.contains(&format!("{}-20 of 20", 21 - rows.len())),
        "{bottom}"
    );
    insta::assert_snapshot!(bottom);
    // Tall enough for every layer: no scrolling, no indicator.
    let tall = text(&app, 160, 60);
    assert_eq!(table_names(&tall, &names).len(), 20, "{tall}");
    assert!(!tall.contains("of 20"), "{tall}");
}

/// `S` sorts by worst drift (Ξ; the layer drifting 30 D0 comes first) and by name (numbers as
/// numbers); j/k walk the rows as shown, and the selection keeps its layer.
#[test]
fn sort_by_worst_drift_and_by_name() {
    let names = [
        "layer10.bn",
        "layer2.bn",
        "head.bn",
        "layer2.bn10",
        "layer2.bn9",
    ];
    let layers = names
        .iter()
        .map(|n| synthetic::bn(n, 32, BnKind::Bn2d))
        .collect();
    let header = synthetic::producer_header(layers, 1);
    let mut app = app_for(header.clone(), 100);
    with_hot_layer(&mut app, &header, 100, 3, 30.0);
    let all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(table_names(&text(&app, 120, 40), &all), all);
    press(&mut app, &[Key::Char('S')]);
    let by_drift = text(&app, 120, 40);
    assert!(by_drift.contains("by worst drift (Ξ) first"), "{by_drift}");
    let rows = table_names(&by_drift, &all);
    assert_eq!(rows[0], "layer2.bn10", "{by_drift}");
    // The rest by Ξ too, as the state computes it.
    let xi = |name: &str| {
        let l = app
            .live
            .layers
            .iter()
            .find(|l| l.name == name)
            .expect("layer");
        let d = f64::from(l.latest.as_ref().expect("latest").summary.drift);
        (d / l.noise_floor().expect("floor")).powi(2)
    };
    assert!(rows.windows(2).all(|w| xi(&w[0]) >= xi(&w[1])), "{rows:?}");
    // The selection (layer 0, "layer10.bn") stays; k moves to the row above it as shown.
    let at = rows.iter().position(|n| n == "layer10.bn").expect("row");
    assert!(at > 0, "{rows:?}");
    press(&mut app, &[Key::Char('k')]);
    assert_eq!(app.live.layers[app.selected].name, rows[at - 1]);
    press(&mut app, &[Key::Char('S')]);
    let by_name = table_names(&text(&app, 120, 40), &all);
    assert_eq!(
        by_name,
        [
            "head.bn",
            "layer2.bn",
            "layer2.bn9",
            "layer2.bn10",
            "layer10.bn"
        ]
    );
    press(&mut app, &[Key::Char('S')]);
    assert_eq!(table_names(&text(&app, 120, 40), &all), all);
}

/// The D/D0 map (`v`) replaces the metric columns with each layer's D/D0 over time, in the
/// table's rows: the layer made to drift 30 D0 at the last step is red there, and only there.
#[test]
fn the_drift_map_shows_each_layer_over_time() {
    use ratatui::style::Color;
    let header = synthetic::producer_header(synthetic::resnet18_layers(), 1);
    let mut app = app_for(header.clone(), 100);
    with_hot_layer(&mut app, &header, 100, 7, 30.0);
    press(&mut app, &[Key::Char('v')]);
    for (width, height) in [(80, 24), (160, 48)] {
        let terminal = render(&app, width, height, unicode());
        let screen_text = screen(&terminal);
        assert!(
            screen_text.contains("D/D0 by step, 0 to 200"),
            "{screen_text}"
        );
        assert!(!screen_text.contains("r min-max"), "{screen_text}");
        let buffer = terminal.backend().buffer();
        let red = Color::Indexed(196);
        // Each row's newest cell (the rightmost coloured one): the start-up transient is red
        // everywhere, the present only for the hot layer.
        let newest: Vec<(String, Color)> = (0..height)
            .filter_map(|y| {
                let x = (0..width)
                    .rev()
                    .find(|&x| matches!(buffer[(x, y)].bg, Color::Indexed(_)))?;
                let row: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
                Some((row, buffer[(x, y)].bg))
            })
            .collect();
        let hot = &app.live.layers[7].name;
        let red_now: Vec<&String> = newest
            .iter()
            .filter(|(_, c)| *c == red)
            .map(|(r, _)| r)
            .collect();
        assert_eq!(red_now.len(), 1, "{width}x{height}: {newest:?}");
        assert!(
            red_now[0].contains(&shorten(hot, 17)) || red_now[0].contains(hot.as_str()),
            "{width}x{height}: {red_now:?}"
        );
        let shown = newest.len();
        assert!(
            shown >= if height == 48 { 20 } else { 7 },
            "{shown} rows\n{screen_text}"
        );
    }
    // Without colour the levels are glyphs; the hot layer's last cells are the worst (#).
    let plain = UiOptions {
        color: ColorMode::None,
        ascii: true,
        ..UiOptions::default()
    };
    let text = screen(&render(&app, 160, 48, plain));
    let newest = |row: &str| row.trim_end_matches('|').trim_end().chars().last();
    let hot = row_of(&text, &app.live.layers[7].name).expect("hot row");
    assert_eq!(newest(hot), Some('#'), "{hot}");
    let cold = row_of(&text, &app.live.layers[8].name).expect("cold row");
    assert_ne!(newest(cold), Some('#'), "{cold}");
    insta::assert_snapshot!(text);
}

/// ResNet-50's widest layer (2048 channels): the heatmap groups channels into rows labelled by
/// their first channel (never cut), and the mean and variance charts step through 38 evenly
/// spaced charted channels (2048 charted in all over 53 layers).
#[test]
fn a_2048_channel_layer_has_charts_and_a_heatmap() {
    let mut app = resnet50(150, 1);
    let index = app
        .live
        .layers
        .iter()
        .position(|l| l.name == "layer4.0.bn3")
        .expect("layer4.0.bn3");
    assert_eq!(app.live.layers[index].channels, 2048);
    app.selected = index;
    let text = text(&app, 160, 48);
    assert!(text.contains("layer4.0.bn3 μ ch0 [1/38]"), "{text}");
    assert!(text.contains("layer4.0.bn3 d per channel"), "{text}");
    // Row labels: "c" and a first channel, a multiple of 2048/64 = 32.
    let labels: Vec<usize> = text
        .lines()
        .filter_map(|l| {
            let cell = &l[l.rfind("││c")? + "││c".len()..];
            let digits: String = cell.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    assert!(labels.len() >= 6, "{labels:?}\n{text}");
    assert!(
        labels.iter().all(|c| c % 32 == 0 && *c < 2048),
        "{labels:?}"
    );
    assert!(labels.windows(2).all(|w| w[0] < w[1]), "{labels:?}");
    // The last row starts in the last of the rows' shares of the channels.
    let share = 2048 / labels.len();
    assert!(
        labels.last().is_some_and(|&c| c + share + 32 >= 2048),
        "{labels:?}"
    );
    press(&mut app, &[Key::Char('c'), Key::Char('c')]);
    assert_eq!(
        status(&app),
        "layer4.0.bn3: channel 107 (3 of 38 charted, evenly spaced over 2048)"
    );
    let charted = text_after(&app);
    assert!(charted.contains("μ ch107 [3/38]"), "{charted}");
    press(&mut app, &[Key::Char('C'), Key::Char('C'), Key::Char('C')]);
    assert!(
        status(&app).starts_with("layer4.0.bn3: channel 1994 (38 of 38"),
        "{}",
        status(&app)
    );
    insta::assert_snapshot!(text);
    eprintln!(
        "ResNet-50 after 150 steps: dashboard state {:.1} MB",
        app.live.retained_bytes() as f64 / 1e6
    );
}

fn text_after(app: &App) -> String {
    text(app, 160, 48)
}

/// A BatchNorm1d layer has features: the heatmap and the charts say so.
#[test]
fn a_bn1d_layer_says_features() {
    let layers = vec![
        synthetic::bn("features.bn", 64, BnKind::Bn2d),
        synthetic::bn("classifier.1", 512, BnKind::Bn1d),
    ];
    let mut app = app_for(synthetic::producer_header(layers, 1), 80);
    press(&mut app, &[Key::Char('j')]);
    let text = text(&app, 160, 48);
    assert!(text.contains("classifier.1 d per feature"), "{text}");
    assert!(text.contains("classifier.1 μ f0 [1/64]"), "{text}");
    assert!(text.contains("│f0 ") || text.contains("││f0 "), "{text}");
    press(&mut app, &[Key::Char('c')]);
    assert!(
        status(&app).starts_with("classifier.1: feature 8 "),
        "{}",
        status(&app)
    );
    press(&mut app, &[Key::Char('k')]);
    let text = text_after(&app);
    assert!(text.contains("features.bn d per channel"), "{text}");
}

/// The header names an external producer (no data set), the built-in engine otherwise.
#[test]
fn the_header_names_the_producer() {
    let app = resnet50(20, 4);
    let text = text(&app, 160, 48);
    let header: Vec<&str> = text.lines().take(2).collect();
    let header = header.join("\n");
    for item in [
        "bntop-torch 0.1.0",
        "torch 2.5.1",
        "model ResNet",
        "on cpu",
        "ranks 4",
    ] {
        assert!(header.contains(item), "{item} missing\n{header}");
    }
    assert!(
        !header.contains("dfdx") && !header.contains("order"),
        "{header}"
    );
    let mut builtin = App::new();
    for e in synthetic::run(20, 1) {
        builtin.on_event(&e, Instant::now());
    }
    assert!(text_after(&builtin).starts_with("bntop  dfdx built-in  digits"));
}

/// Keys whose control the producer does not list say so and send nothing; listed ones are
/// sent; quitting always works; a producer without a list handles everything.
#[test]
fn unsupported_controls_say_so_instead_of_sending() {
    let mut app = resnet18(30);
    for (key, name) in [
        (Key::Char('F'), "fold_check"),
        (Key::Char('o'), "set_data_order"),
        (Key::Char('b'), "phantom_probe"),
        (Key::Char('P'), "precise_bn"),
        (Key::Char('A'), "apply_precise_bn"),
    ] {
        assert_eq!(sent(&mut app, &[key]), vec![], "{key:?}");
        let said = status(&app);
        assert!(
            said.starts_with(&format!("bntop-torch does not handle {name} ("))
                && said.ends_with("not sent"),
            "{key:?}: {said}"
        );
    }
    assert_eq!(
        sent(&mut app, &[Key::Char('t')]),
        vec![Control::SetMode {
            layer: Some(0),
            mode: BnMode::Eval
        }]
    );
    assert!(
        status(&app).starts_with("sent: bn1 -> EVAL"),
        "{}",
        status(&app)
    );
    // A cumulative average through the momentum prompt, when handled.
    let typed: Vec<Key> = "mnone".chars().map(Key::Char).collect();
    let mut control = sent(&mut app, &typed);
    control.extend(
        app.on_key(
            &ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Enter),
            Instant::now(),
        )
        .into_iter()
        .filter_map(|c| match c {
            Command::Run(c) => Some(c),
            _ => None,
        }),
    );
    assert_eq!(
        control,
        vec![Control::SetMomentumCumulative { layer: Some(0) }]
    );
    // Not handled: the prompt does not even open.
    if let Some(p) = app.live.header.as_mut().and_then(|h| h.producer.as_mut()) {
        p.controls = Some(vec!["pause".into()]);
    }
    assert_eq!(sent(&mut app, &[Key::Char('m')]), vec![]);
    assert!(app.prompt.is_none());
    assert!(
        status(&app).contains("does not handle set_momentum"),
        "{}",
        status(&app)
    );
    assert_eq!(sent(&mut app, &[Key::Char('q')]), vec![Control::Quit]);
    // No list: everything goes.
    if let Some(p) = app.live.header.as_mut().and_then(|h| h.producer.as_mut()) {
        p.controls = None;
    }
    assert_eq!(sent(&mut app, &[Key::Char('F')]), vec![Control::FoldCheck]);
}

/// A distributed run: the selected layer's drift of each rank's batch from the global batch
/// shows in the table's bottom border, worst rank named (the synthetic ranks grow with k).
#[test]
fn per_rank_drift_of_the_selected_layer() {
    let mut app = resnet50(60, 8);
    let text = text(&app, 160, 48);
    let border = text
        .lines()
        .find(|l| l.contains("D per rank"))
        .unwrap_or_else(|| panic!("no rank line\n{text}"));
    assert!(border.contains("bn1 D per rank"), "{border}");
    assert!(
        border.contains("(rank 7)") && border.contains("of 8"),
        "{border}"
    );
    let bars: String = border.chars().filter(|c| ('▁'..='█').contains(c)).collect();
    assert_eq!(bars.chars().count(), 8, "{border}");
    assert!(bars.ends_with('█'), "{border}");
    press(&mut app, &[Key::Char('j')]);
    assert!(text_after(&app).contains("layer1.0.bn1 D per rank"));
    // One rank: no line.
    let single = resnet18(30);
    assert!(!text_after(&single).contains("D per rank"));
}

/// PyTorch's momentum None: the table says None, and the echo of the control sets it.
#[test]
fn cumulative_momentum_shows_as_none() {
    let mut header = synthetic::producer_header(synthetic::resnet18_layers(), 1);
    header.config.bn_momentum = f32::NAN;
    let mut app = app_for(header, 30);
    let text = text(&app, 120, 40);
    let row = row_of(&text, "layer1.0.bn1").expect("row");
    assert!(row.contains("TRAIN None"), "{row}");
    app.live.layers[1].cumulative = false;
    app.on_event(
        &Event::Control(ControlEvent {
            step: 30,
            control: Control::SetMomentumCumulative { layer: Some(1) },
            rejected: None,
        }),
        Instant::now(),
    );
    assert!(app.live.layers[1].cumulative);
    assert!(status(&app).contains("momentum = None (cumulative average)"));
}

/// Many layers, both table views, every few sizes from 1x1 up: nothing panics.
#[test]
fn every_size_draws_with_many_layers() {
    let mut app = resnet50(40, 4);
    app.selected = 30;
    let themes = [
        Theme::new(&unicode()),
        Theme::new(&UiOptions {
            color: ColorMode::None,
            ascii: true,
            ..UiOptions::default()
        }),
    ];
    let mut terminal = Terminal::new(TestBackend::new(1, 1)).expect("test backend");
    for width in (1..=200u16).step_by(7) {
        for height in (1..=60u16).step_by(3) {
            terminal.backend_mut().resize(width, height);
            terminal
                .resize(ratatui::layout::Rect::new(0, 0, width, height))
                .expect("resize");
            for theme in &themes {
                for _ in 0..2 {
                    press(&mut app, &[Key::Char('v')]);
                    terminal.draw(|f| view::draw(f, &app, theme)).expect("draw");
                }
            }
        }
    }
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

/// A long name in a chart title is shortened (to a third of the panel) so the legend shows.
#[test]
fn long_names_leave_room_for_the_legend() {
    let mut app = resnet50(30, 1);
    app.selected = app
        .live
        .layers
        .iter()
        .position(|l| l.name == "layer4.0.downsample.1")
        .expect("layer");
    let text = text(&app, 160, 48);
    let titles = text
        .lines()
        .find(|l| l.contains(" μ ch0"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        titles.contains(" l4.0.downsa.1 μ ch0 [1/38] ━ batch ━"),
        "{titles}"
    );
    assert!(
        text.contains("│▶layer4.0.downsample.1 "),
        "the table has room\n{text}"
    );
}

/// A layer no ReLU consumes (a residual branch's last BN): the producer sends NaN for its active
/// fraction, and the table shows "-", not a NaN that reads like a diverged run.
#[test]
fn a_layer_without_a_relu_shows_a_dash() {
    let header = synthetic::producer_header(synthetic::resnet18_layers(), 1);
    let mut app = App::new();
    let now = Instant::now();
    for mut event in NetworkRun::new(header, 30, 11) {
        if let Event::Snapshot(s) = &mut event {
            s.layers[2].summary.relu_active = f32::NAN;
        }
        app.on_event(&event, now);
    }
    let text = text(&app, 120, 40);
    let without = row_of(&text, "layer1.0.bn2").expect("row");
    let with = row_of(&text, "layer1.0.bn1").expect("row");
    assert!(
        !without.contains("NaN") && without.contains(" - "),
        "{without}"
    );
    assert!(with.contains('%'), "{with}");
}

/// A held-out pass the producer measured only in eval mode: the header shows "-" for the
/// unmeasured batch-statistics accuracy, not NaN.
#[test]
fn an_unmeasured_accuracy_shows_a_dash() {
    let mut app = resnet18(10);
    app.on_event(
        &Event::Evaluation(bntop::protocol::Evaluation {
            step: 10,
            samples: 0,
            batch_stats: bntop::protocol::EvalScore {
                loss: f32::NAN,
                accuracy: f32::NAN,
            },
            running_stats: bntop::protocol::EvalScore {
                loss: 0.9,
                accuracy: 0.6,
            },
            precise_stats: None,
        }),
        Instant::now(),
    );
    let text = text(&app, 160, 40);
    assert!(text.contains("held-out batch - EMA 60.0%"), "{text}");
}
