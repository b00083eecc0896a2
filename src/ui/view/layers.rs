//! The layers table: one row per BN layer. The first four columns always show; the rest scroll
//! sideways on narrow terminals. Each cell is coloured by its health (see `ui::health`).
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use crate::protocol::{BnMode, LayerSnapshot};
use crate::ui::app::App;
use crate::ui::format::{momentum, num, pct};
use crate::ui::health::{self, Health};
use crate::ui::state::{LayerState, RunState};
use crate::ui::theme::Theme;

struct Column {
    title: &'static str,
    ascii_title: &'static str,
    width: u16,
    /// Shown whatever the width (the rest scroll with ←/→).
    fixed: bool,
    cell: fn(&LayerState, &LayerSnapshot) -> (String, Health),
}

fn mean(xs: &[f32]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64
}

fn pair(a: f64, b: f64) -> (String, Health) {
    let h = health::finite(a).max(health::finite(b));
    (format!("{}/{}", num(a, 2), num(b, 2)), h)
}

fn drift_cell(l: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    let d = f64::from(s.summary.drift);
    let floor = l.noise_floor();
    let text = match floor {
        Some(f) => format!("{} ({})", num(d, 2), num(f, 2)),
        None => num(d, 3),
    };
    (text, health::drift(d, floor))
}

fn r_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    let (lo, hi) = (f64::from(s.summary.r_min), f64::from(s.summary.r_max));
    (
        format!("{}-{}", num(lo, 2), num(hi, 2)),
        health::r_range(lo, hi),
    )
}

fn d_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    let (m, x) = (
        f64::from(s.summary.d_mean_abs),
        f64::from(s.summary.d_max_abs),
    );
    (format!("{}/{}", num(m, 2), num(x, 2)), health::d_max(x))
}

fn relu_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    let a = f64::from(s.summary.relu_active);
    (pct(a), health::relu_active(a))
}

fn finite_cell(x: f64, sig: usize) -> (String, Health) {
    (num(x, sig), health::finite(x))
}

fn norm_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(f64::from(s.summary.weight_norm), 3)
}

fn angle_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(f64::from(s.summary.angular_update), 2)
}

fn effective_lr_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(f64::from(s.summary.effective_lr), 2)
}

fn cos_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    let c = f64::from(s.summary.max_abs_cos);
    (num(c, 1), health::max_cos(c, s.mode))
}

fn means_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    pair(mean(&s.batch_mean), mean(&s.running_mean_pre))
}

fn vars_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    pair(mean(&s.batch_var), mean(&s.running_var_pre))
}

fn gamma_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(mean(&s.gamma), 3)
}

fn beta_cell(_: &LayerState, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(mean(&s.beta), 2)
}

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    Column { title: "D (D0)", ascii_title: "D (D0)", width: 15, fixed: true, cell: drift_cell },
    Column { title: "r min-max", ascii_title: "r min-max", width: 11, fixed: false, cell: r_cell },
    Column { title: "|d| mean/max", ascii_title: "|d| mean/max", width: 12, fixed: false, cell: d_cell },
    Column { title: "ReLU on", ascii_title: "ReLU on", width: 7, fixed: false, cell: relu_cell },
    Column { title: "‖w‖", ascii_title: "|w|", width: 7, fixed: false, cell: norm_cell },
    Column { title: "θ/step", ascii_title: "ang/step", width: 8, fixed: false, cell: angle_cell },
    Column { title: "η/‖w‖²", ascii_title: "lr/|w|^2", width: 8, fixed: false, cell: effective_lr_cell },
    Column { title: "max|cos|", ascii_title: "max|cos|", width: 8, fixed: false, cell: cos_cell },
    Column { title: "μB/μR", ascii_title: "muB/muR", width: 15, fixed: false, cell: means_cell },
    Column { title: "σ²B/vR", ascii_title: "varB/vR", width: 13, fixed: false, cell: vars_cell },
    Column { title: "γ mean", ascii_title: "gamma", width: 7, fixed: false, cell: gamma_cell },
    Column { title: "β mean", ascii_title: "beta", width: 7, fixed: false, cell: beta_cell },
];

/// Name, mode and momentum: always shown, before `COLUMNS`.
const LEAD_WIDTHS: [u16; 3] = [8, 5, 7];

pub fn height(state: &RunState) -> u16 {
    // Borders, the column titles and one row per layer (at least one, for "waiting").
    state.layers.len().max(1) as u16 + 3
}

/// Which of `COLUMNS` fit in `width`, starting the scrollable ones at `offset`; and whether
/// columns are hidden.
fn visible_columns(width: u16, offset: usize) -> (Vec<&'static Column>, usize, bool) {
    let mut used: u16 = LEAD_WIDTHS.iter().map(|w| w + 1).sum();
    let mut shown = Vec::new();
    for c in COLUMNS.iter().filter(|c| c.fixed) {
        used += c.width + 1;
        shown.push(c);
    }
    let scrollable: Vec<&Column> = COLUMNS.iter().filter(|c| !c.fixed).collect();
    let offset = offset.min(scrollable.len().saturating_sub(1));
    // Never scroll further than needed to show the last column.
    let mut fits_from_end = 0;
    let mut tail = used;
    for c in scrollable.iter().rev() {
        if tail + c.width + 1 > width {
            break;
        }
        tail += c.width + 1;
        fits_from_end += 1;
    }
    let offset = offset.min(scrollable.len() - fits_from_end.min(scrollable.len()));
    for c in &scrollable[offset..] {
        if used + c.width + 1 > width {
            break;
        }
        used += c.width + 1;
        shown.push(c);
    }
    let hidden = shown.len() < COLUMNS.len();
    (shown, offset, hidden)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let state = app.view();
    let inner_width = area.width.saturating_sub(2);
    let (columns, _, hidden) = visible_columns(inner_width, app.column_offset);
    let mut title = vec![Span::styled(" BN layers ", theme.title())];
    if hidden {
        let arrows = theme.glyph("←/→", "</>");
        title.push(Span::styled(format!("{arrows} more columns "), theme.dim()));
    }
    let mut titles = vec!["layer", "mode", "m"];
    titles.extend(
        columns
            .iter()
            .map(|c| if theme.ascii { c.ascii_title } else { c.title }),
    );
    let header = Row::new(titles).style(theme.dim().add_modifier(Modifier::BOLD));
    let selected = app.selected.min(state.layers.len().saturating_sub(1));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_set(theme.borders())
        .border_style(theme.border())
        .title(Line::from(title));
    if state.layers.is_empty() {
        let waiting = Paragraph::new(Span::styled("waiting for the first step...", theme.dim()));
        frame.render_widget(waiting.block(block), area);
        return;
    }
    let rows: Vec<Row> = state
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let mode = match layer.mode {
                BnMode::Train => Span::raw("TRAIN"),
                BnMode::Eval => Span::styled("EVAL", theme.mode_eval()),
            };
            let marker = if i == selected {
                theme.glyph("▶", ">")
            } else {
                " "
            };
            let mut cells = vec![
                Cell::from(format!("{marker}{}", layer.name)),
                Cell::from(mode),
                Cell::from(momentum(layer.momentum)),
            ];
            for c in &columns {
                cells.push(match &layer.latest {
                    Some(snapshot) => {
                        let (text, health) = (c.cell)(layer, snapshot);
                        Cell::from(Line::styled(text, theme.health(health)))
                    }
                    None => Cell::from("-"),
                });
            }
            let row = Row::new(cells);
            if i == selected {
                row.style(theme.selected())
            } else {
                row
            }
        })
        .collect();
    let mut widths: Vec<Constraint> = LEAD_WIDTHS.iter().map(|&w| Constraint::Length(w)).collect();
    widths.extend(columns.iter().map(|c| Constraint::Length(c.width)));
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block);
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_scroll_but_never_past_the_last_column() {
        let (all, _, hidden) = visible_columns(200, 0);
        assert_eq!(all.len(), COLUMNS.len());
        assert!(!hidden);
        let (narrow, _, hidden) = visible_columns(78, 0);
        assert!(hidden && narrow.len() < COLUMNS.len() && narrow.len() > 2);
        let (scrolled, offset, _) = visible_columns(78, 1000);
        assert!(offset > 0);
        assert_eq!(
            scrolled.last().map(|c| c.title),
            COLUMNS.last().map(|c| c.title)
        );
        // Everything shown fits.
        let used: u16 = LEAD_WIDTHS.iter().map(|w| w + 1).sum::<u16>()
            + scrolled.iter().map(|c| c.width + 1).sum::<u16>();
        assert!(used <= 78);
    }
}
