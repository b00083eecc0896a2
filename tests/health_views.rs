//! The screens of issue 14's items 5-7 drawn into ratatui's TestBackend: dead channels in the
//! layers table, the heatmap and the lab; a train-mode layer whose max |cos(w, g)| is BN's ε
//! residual (ε-dominated, not eval mode); the footer at 80x24; the help's glossary.
use std::time::Instant;

use bntop::metrics::weights::epsilon_cosine;
use bntop::metrics::BN_EPSILON;
use bntop::protocol::Event;
use bntop::ui::app::App;
use bntop::ui::synthetic;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod ui_support;
use ui_support::{render, screen, unicode};

fn press(app: &mut App, keys: &[KeyCode]) {
    let now = Instant::now();
    for &k in keys {
        app.on_key(&KeyEvent::new(k, KeyModifiers::NONE), now);
    }
}

/// Block 3 (64 channels) as weight decay leaves it late in a run: c3, c7 and c12 switched off
/// (γ ≈ 0, ‖w_c‖ 6e-8, σ²_B ≪ ε, their cosine rounding of subnormals: 0.8, and the mean
/// η/‖w‖² 1e13), and c20 with σ²_B = 5ε whose cosine is 1.01x the ε residual.
fn weight_decayed(event: &mut Event) {
    let Event::Snapshot(s) = event else { return };
    let Some(layer) = s.layers.get_mut(2) else {
        return;
    };
    if layer.gamma.is_empty() {
        return;
    }
    for c in [3, 7, 12] {
        layer.gamma[c] = 1e-9;
        layer.batch_var[c] = 1e-14;
        layer.weight_norm[c] = 6e-8;
        layer.weight_grad_cos[c] = 0.8;
    }
    let c = 20;
    (layer.batch_var[c], layer.grad_gamma[c]) = (5e-5, 1.5e-3);
    let predicted = epsilon_cosine(
        f64::from(layer.gamma[c]),
        f64::from(layer.grad_gamma[c]),
        f64::from(layer.batch_var[c]),
        BN_EPSILON,
        f64::from(layer.weight_norm[c]),
        f64::from(layer.weight_grad_norm[c]),
    );
    layer.weight_grad_cos[c] = (1.01 * predicted.unwrap_or(f64::NAN)) as f32;
    layer.summary.max_abs_cos = 0.8;
    layer.summary.effective_lr = 1e13;
}

/// 1000 steps of the synthetic run, block 3 weight-decayed, block 3 selected.
fn decayed_app() -> App {
    let mut app = App::new();
    let now = Instant::now();
    for mut event in synthetic::run(1000, 7) {
        weight_decayed(&mut event);
        app.on_event(&event, now);
    }
    press(&mut app, &[KeyCode::Down, KeyCode::Down]);
    app
}

#[test]
fn snapshot_dead_channels_in_the_table_and_the_heatmap_160x48() {
    let app = decayed_app();
    let text = screen(&render(&app, 160, 48, unicode()));
    assert!(text.contains("dead: c3 c7 c12"), "{text}");
    let row = text.lines().find(|l| l.contains("▶block3")).expect("row");
    // 3 of 64 dead; η/‖w‖² the live median (about 0.013), not the mean 1e13; max|cos| 0.03.
    assert!(row.contains("3/64") && row.contains("0.013") && !row.contains("1e13"));
    assert!(row.contains(" 0.03 ") && !row.contains("0.8"), "{row}");
    insta::assert_snapshot!(text);
}

#[test]
fn snapshot_lab_with_an_epsilon_dominated_train_layer_160x48() {
    let mut app = decayed_app();
    press(&mut app, &[KeyCode::Tab]);
    let text = screen(&render(&app, 160, 48, unicode()));
    assert!(text.contains("block3 lab"), "{text}");
    assert!(
        text.contains("c20, σ²_B = 5.0ε: ε-dominated (σ²_B near ε)"),
        "{text}"
    );
    assert!(!text.contains("not normalised: eval mode"), "{text}");
    assert!(text.contains("dead channels: 3 vs -"), "{text}");
    assert!(text.contains("c3 c7 c12 of 64"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn snapshot_footer_keeps_help_and_quit_at_80x24() {
    let app = decayed_app();
    let text = screen(&render(&app, 80, 24, unicode()));
    let footer = text.lines().last().expect("a footer");
    assert!(footer.trim_end().ends_with("? help q quit"), "{footer}");
    insta::assert_snapshot!(footer);
}

#[test]
fn snapshot_help_glossary_80x24() {
    let mut app = decayed_app();
    // Scroll to the end of the help: the glossary and the thresholds.
    press(&mut app, &[KeyCode::Char('?')]);
    press(&mut app, &[KeyCode::Char('j'); 60]);
    let text = screen(&render(&app, 80, 24, unicode()));
    for term in [
        "D0 ",
        "Ξ ",
        "θ* ",
        "η/‖w‖² ",
        "cos(w,g) ",
        "dead ",
        "ε-dominated ",
    ] {
        assert!(text.contains(&format!("│{term}")), "{term}: {text}");
    }
    insta::assert_snapshot!(text);
}
