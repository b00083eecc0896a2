//! The layers table: one row per BN layer, in network order, worst drift first or by name (`S`).
//! With more layers than fit it scrolls, keeping the selection in view, and says which rows show.
//! The first four columns always show; the rest scroll sideways on narrow terminals, or give way
//! to the D/D0 map (`v`). Each cell is coloured by its health (see `ui::health`). Long layer
//! names are shortened (`ui::names`). The bottom border carries the selected layer's per-rank
//! drift in a distributed run.
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::drift_map;
use crate::metrics::dead::live_median_effective_lr;
use crate::protocol::{BnMode, LayerSnapshot};
use crate::ui::app::{App, TableView};
use crate::ui::compare::CompareColumn;
use crate::ui::format::{fit, momentum, num, pct, Part::Num, Part::Text};
use crate::ui::health::{self, Health};
use crate::ui::history::Series;
use crate::ui::layer_order::{self, LayerSort};
use crate::ui::names::shorten;
use crate::ui::state::{LayerState, RunState};
use crate::ui::theme::{Role, Theme};
use crate::ui::theory::scale_invariance::{cos_reading, dead, epsilon};

struct Column {
    title: &'static str,
    ascii_title: &'static str,
    width: u16,
    /// Shown whatever the width (the rest scroll with ←/→).
    fixed: bool,
    cell: fn(&Cx, &LayerSnapshot) -> (String, Health),
}

/// What a cell needs beyond its layer's snapshot.
struct Cx<'a> {
    layer: &'a LayerState,
    state: &'a RunState,
    epsilon: f64,
    /// The cell's width: numbers lose digits to fit it, never get cut.
    width: usize,
}

fn mean(xs: &[f32]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64
}

fn pair(cx: &Cx, a: f64, b: f64) -> (String, Health) {
    let h = health::finite(a).max(health::finite(b));
    (fit(&[Num(a), Text("/"), Num(b)], 2, cx.width), h)
}

fn drift_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    let d = f64::from(s.summary.drift);
    let floor = cx.layer.noise_floor();
    let text = match floor {
        Some(f) => fit(&[Num(d), Text(" ("), Num(f), Text(")")], 2, cx.width),
        None => fit(&[Num(d)], 3, cx.width),
    };
    (text, health::drift(d, floor))
}

fn r_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    let (lo, hi) = (f64::from(s.summary.r_min), f64::from(s.summary.r_max));
    (
        fit(&[Num(lo), Text("-"), Num(hi)], 2, cx.width),
        health::r_range(lo, hi),
    )
}

fn d_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    let (m, x) = (
        f64::from(s.summary.d_mean_abs),
        f64::from(s.summary.d_max_abs),
    );
    (
        fit(&[Num(m), Text("/"), Num(x)], 2, cx.width),
        health::d_max(x),
    )
}

fn relu_cell(_: &Cx, s: &LayerSnapshot) -> (String, Health) {
    let a = f64::from(s.summary.relu_active);
    // A fraction of values is never NaN, even in a diverged run: NaN is a producer's "no ReLU
    // consumes this layer's output" (a residual branch's last BN, say).
    if a.is_nan() {
        return ("-".into(), Health::Ok);
    }
    (pct(a), health::relu_active(a))
}

/// Dead channels (`metrics::dead`) of all, `-` without per-channel arrays.
fn dead_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    if s.gamma.is_empty() {
        return ("-".into(), Health::Ok);
    }
    let dead = dead(s, cx.epsilon).len();
    let text = format!("{dead}/{}", s.gamma.len());
    let text = if text.chars().count() > cx.width {
        dead.to_string()
    } else {
        text
    };
    (text, health::dead_channels(dead))
}

fn finite_cell(cx: &Cx, x: f64, sig: usize) -> (String, Health) {
    (fit(&[Num(x)], sig, cx.width), health::finite(x))
}

fn norm_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(cx, f64::from(s.summary.weight_norm), 3)
}

fn angle_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(cx, f64::from(s.summary.angular_update), 2)
}

/// η/‖w_c‖² as the median over live channels: a dead filter's ‖w_c‖ of 1e-30 makes the mean
/// the stream carries infinite. The mean where there are no per-channel norms.
fn effective_lr_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    let dead = dead(s, cx.epsilon);
    let median = live_median_effective_lr(f64::from(cx.state.lr), &s.weight_norm, &dead);
    finite_cell(cx, median.unwrap_or(f64::from(s.summary.effective_lr)), 2)
}

/// The largest |cos(w_c, g_c)| over live channels, judged against BN's ε residual.
fn cos_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    let reading = cos_reading(s, cx.epsilon);
    (
        fit(&[Num(reading.measured)], 1, cx.width),
        health::cos_reading(&reading, s.mode),
    )
}

fn means_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    pair(cx, mean(&s.batch_mean), mean(&s.running_mean_pre))
}

fn vars_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    pair(cx, mean(&s.batch_var), mean(&s.running_var_pre))
}

fn gamma_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(cx, mean(&s.gamma), 3)
}

fn beta_cell(cx: &Cx, s: &LayerSnapshot) -> (String, Health) {
    finite_cell(cx, mean(&s.beta), 2)
}

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    Column { title: "D (D0)", ascii_title: "D (D0)", width: 14, fixed: true, cell: drift_cell },
    Column { title: "r min-max", ascii_title: "r min-max", width: 10, fixed: false, cell: r_cell },
    Column { title: "|d| avg/max", ascii_title: "|d| avg/max", width: 11, fixed: false, cell: d_cell },
    Column { title: "ReLU on", ascii_title: "ReLU on", width: 7, fixed: false, cell: relu_cell },
    Column { title: "dead", ascii_title: "dead", width: 5, fixed: false, cell: dead_cell },
    Column { title: "‖w‖", ascii_title: "|w|", width: 7, fixed: false, cell: norm_cell },
    Column { title: "θ/step", ascii_title: "ang/step", width: 8, fixed: false, cell: angle_cell },
    Column { title: "η/‖w‖² med", ascii_title: "med lr/w^2", width: 10, fixed: false, cell: effective_lr_cell },
    Column { title: "max|cos|", ascii_title: "max|cos|", width: 8, fixed: false, cell: cos_cell },
    Column { title: "μB/μR", ascii_title: "muB/muR", width: 15, fixed: false, cell: means_cell },
    Column { title: "σ²B/vR", ascii_title: "varB/vR", width: 13, fixed: false, cell: vars_cell },
    Column { title: "γ mean", ascii_title: "gamma", width: 7, fixed: false, cell: gamma_cell },
    Column { title: "β mean", ascii_title: "beta", width: 7, fixed: false, cell: beta_cell },
];

/// The columns run B shows beside (`--compare`, key `B`): its value of the same layer at A's
/// step, or A's minus it. Matched to `COLUMNS` by title.
struct Compared {
    after: &'static str,
    value_title: &'static str,
    difference_title: &'static str,
    series: fn(&LayerState) -> &Series,
}

#[rustfmt::skip]
const COMPARED: &[Compared] = &[
    Compared { after: "D (D0)", value_title: "B D", difference_title: "ΔD", series: |l| &l.drift },
    Compared { after: "‖w‖", value_title: "B ‖w‖", difference_title: "Δ‖w‖", series: |l| &l.weight_norm },
    Compared { after: "θ/step", value_title: "B θ", difference_title: "Δθ", series: |l| &l.angular_update },
];
const COMPARED_WIDTH: u16 = 8;

/// The run B column after `column`, if one is showing.
fn compared(app: &App, column: &Column) -> Option<&'static Compared> {
    if app.compare.is_none() || app.compare_column == CompareColumn::Off {
        return None;
    }
    COMPARED.iter().find(|c| c.after == column.title)
}

/// Run B's cell for `layer` (A's) at A's step: B's value, or A's minus B's.
fn compared_cell(
    app: &App,
    compared: &Compared,
    state: &RunState,
    layer: &LayerState,
) -> Cell<'static> {
    let b = app
        .compare
        .as_ref()
        .and_then(|c| c.layer(layer))
        .and_then(|b| (compared.series)(b).value_at(state.step))
        .map(f64::from);
    let a = (compared.series)(layer).value_at(state.step).map(f64::from);
    match (app.compare_column, a, b) {
        (CompareColumn::Value, _, Some(b)) => Cell::from(num(b, 2)),
        (CompareColumn::Difference, Some(a), Some(b)) => Cell::from(num(a - b, 2)),
        _ => Cell::from("-"),
    }
}

/// Mode and momentum widths: always shown, after the name and before `COLUMNS`.
const MODE_WIDTH: u16 = 5;
const MOMENTUM_WIDTH: u16 = 7;
/// The name column (marker included): at least this, at most this or a quarter of the table.
const NAME_MIN: u16 = 8;
const NAME_MAX: u16 = 24;
/// Chart rows the table leaves below it when it cannot show every layer.
const CHART_LINES: u16 = 9;

/// Lines the table takes of `available` (borders and the title row included): every layer when
/// they fit; otherwise it scrolls and leaves room for one row of charts, or two on tall
/// terminals.
pub fn height(state: &RunState, available: u16) -> u16 {
    let wanted = state.layers.len().max(1) as u16 + 3;
    let charts = if available >= 2 * CHART_LINES + 10 {
        2 * CHART_LINES
    } else if available >= CHART_LINES + 7 {
        CHART_LINES
    } else {
        0
    };
    wanted.min(available.saturating_sub(charts).max(4))
}

/// The first of `rows` rows shown, `visible` at a time, keeping `row` (the selection) in view:
/// centred where it can be, so the rows around it show too.
pub fn scroll_offset(row: usize, rows: usize, visible: usize) -> usize {
    if rows <= visible {
        return 0;
    }
    row.saturating_sub(visible / 2).min(rows - visible)
}

/// The name column's width for these names in a table `inner_width` wide.
fn name_width(state: &RunState, inner_width: u16) -> u16 {
    let longest = state
        .layers
        .iter()
        .map(|l| l.name.chars().count())
        .max()
        .unwrap_or(0);
    let cap = (inner_width / 4).clamp(NAME_MIN, NAME_MAX);
    (longest as u16).saturating_add(1).clamp(NAME_MIN, cap)
}

/// Which of `COLUMNS` fit in `width` after the leading columns (`lead` wide), starting the
/// scrollable ones at `offset`; and whether columns are hidden.
/// `extra` is the width of what shows after a column (run B's, with a separator).
fn visible_columns(
    width: u16,
    lead: u16,
    offset: usize,
    extra: impl Fn(&Column) -> u16,
) -> (Vec<&'static Column>, usize, bool) {
    let mut used: u16 = lead;
    let mut shown = Vec::new();
    for c in COLUMNS.iter().filter(|c| c.fixed) {
        used += c.width + 1 + extra(c);
        shown.push(c);
    }
    let scrollable: Vec<&Column> = COLUMNS.iter().filter(|c| !c.fixed).collect();
    let offset = offset.min(scrollable.len().saturating_sub(1));
    // Never scroll further than needed to show the last column.
    let mut fits_from_end = 0;
    let mut tail = used;
    for c in scrollable.iter().rev() {
        if tail + c.width + 1 + extra(c) > width {
            break;
        }
        tail += c.width + 1 + extra(c);
        fits_from_end += 1;
    }
    let offset = offset.min(scrollable.len() - fits_from_end.min(scrollable.len()));
    for c in &scrollable[offset..] {
        if used + c.width + 1 + extra(c) > width {
            break;
        }
        used += c.width + 1 + extra(c);
        shown.push(c);
    }
    let hidden = shown.len() < COLUMNS.len();
    (shown, offset, hidden)
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let state = app.view();
    let inner_width = area.width.saturating_sub(2);
    let name_w = name_width(state, inner_width);
    let lead = name_w + 1 + MODE_WIDTH + 1 + MOMENTUM_WIDTH + 1;
    let map = app.table_view == TableView::DriftMap;
    let extra = |c: &Column| compared(app, c).map_or(0, |_| COMPARED_WIDTH + 1);
    let (columns, _, hidden) = if map {
        let fixed: Vec<&Column> = COLUMNS.iter().filter(|c| c.fixed).collect();
        (fixed, 0, false)
    } else {
        visible_columns(inner_width, lead, app.column_offset, extra)
    };
    let selected = app.selected.min(state.layers.len().saturating_sub(1));
    let mut block = Block::default()
        .borders(Borders::ALL)
        .border_set(theme.borders())
        .border_style(theme.border())
        .title(Line::from(table_title(app, theme, hidden)));
    if state.layers.is_empty() {
        let waiting = Paragraph::new(Span::styled("waiting for the first step...", theme.dim()));
        frame.render_widget(waiting.block(block), area);
        return;
    }
    let order = layer_order::order(state, app.sort);
    let visible = usize::from(area.height.saturating_sub(3)).max(1);
    let row_of_selected = order.iter().position(|&i| i == selected).unwrap_or(0);
    let offset = scroll_offset(row_of_selected, order.len(), visible);
    let shown = &order[offset..(offset + visible).min(order.len())];
    if let Some(ranks) = state
        .layers
        .get(selected)
        .and_then(|l| rank_line(l, theme, inner_width))
    {
        block = block.title_bottom(ranks);
    }
    if order.len() > visible {
        block = block.title_bottom(scroll_note(
            offset,
            shown.len(),
            order.len(),
            visible,
            theme,
        ));
    }
    let rows = Rows {
        app,
        state,
        theme,
        columns: &columns,
        selected,
        name_w,
        epsilon: epsilon(state),
    };
    let table = Table::new(
        shown.iter().map(|&i| rows.row(i)),
        widths(app, name_w, &columns),
    )
    .header(header_row(app, theme, &columns))
    .column_spacing(1)
    .block(block);
    frame.render_widget(table, area);
    if map {
        let used: u16 = lead + columns.iter().map(|c| c.width + 1 + extra(c)).sum::<u16>();
        let strip = Rect {
            x: area.x + 1 + used,
            y: area.y + 1,
            width: inner_width.saturating_sub(used),
            height: area.height.saturating_sub(2),
        };
        let layers: Vec<&LayerState> = shown.iter().map(|&i| &state.layers[i]).collect();
        drift_map::draw(frame.buffer_mut(), strip, &layers, app.chart_span(), theme);
    }
}

/// The table title: its name, the sort, what the run B columns show, and whether columns hide.
fn table_title(app: &App, theme: &Theme, hidden: bool) -> Vec<Span<'static>> {
    let mut title = vec![Span::styled(" BN layers ", theme.title())];
    if app.sort != LayerSort::Network {
        let text = format!("by {} ", app.sort.label(theme.ascii));
        title.push(Span::styled(text, theme.status()));
    }
    if let Some(text) = compare_title(app) {
        title.push(Span::styled(text, theme.dim()));
    }
    if hidden {
        let arrows = theme.glyph("←/→", "</>");
        title.push(Span::styled(format!("{arrows} more columns "), theme.dim()));
    }
    title
}

/// The column titles: the three fixed ones, then each shown column and its run B column.
fn header_row(app: &App, theme: &Theme, columns: &[&Column]) -> Row<'static> {
    let mut titles = vec!["layer", "mode", "m"];
    for c in columns {
        titles.push(if theme.ascii { c.ascii_title } else { c.title });
        if let Some(k) = compared(app, c) {
            titles.push(match app.compare_column {
                CompareColumn::Difference => k.difference_title,
                _ => k.value_title,
            });
        }
    }
    Row::new(titles).style(theme.dim().add_modifier(Modifier::BOLD))
}

/// The bottom-right note of a scrolled table: arrows for the hidden rows and which rows show.
fn scroll_note(
    offset: usize,
    shown: usize,
    total: usize,
    visible: usize,
    theme: &Theme,
) -> Line<'static> {
    let (up, down) = if theme.ascii {
        ("^", "v")
    } else {
        ("▲", "▼")
    };
    let up = if offset > 0 { up } else { " " };
    let down = if offset + visible < total { down } else { " " };
    let text = format!(" {up}{down} {}-{} of {total} ", offset + 1, offset + shown);
    Line::styled(text, theme.status()).right_aligned()
}

/// The column widths, matching `header_row` and `Rows::row` cell for cell.
fn widths(app: &App, name_w: u16, columns: &[&Column]) -> Vec<Constraint> {
    let mut widths: Vec<Constraint> = [name_w, MODE_WIDTH, MOMENTUM_WIDTH]
        .iter()
        .map(|&w| Constraint::Length(w))
        .collect();
    for c in columns {
        widths.push(Constraint::Length(c.width));
        if compared(app, c).is_some() {
            widths.push(Constraint::Length(COMPARED_WIDTH));
        }
    }
    widths
}

/// What every row of the table shares.
struct Rows<'a> {
    app: &'a App,
    state: &'a RunState,
    theme: &'a Theme,
    columns: &'a [&'a Column],
    selected: usize,
    name_w: u16,
    epsilon: f64,
}

impl Rows<'_> {
    /// Layer `i`'s row: name (marked when selected), mode, momentum, then the shown columns.
    fn row(&self, i: usize) -> Row<'static> {
        let (state, theme) = (self.state, self.theme);
        let layer = &state.layers[i];
        let mode = match layer.mode {
            BnMode::Train => Span::raw("TRAIN"),
            BnMode::Eval => Span::styled("EVAL", theme.mode_eval()),
        };
        let marker = if i == self.selected {
            theme.glyph("▶", ">")
        } else {
            " "
        };
        let name = shorten(&layer.name, usize::from(self.name_w - 1));
        let m = if layer.cumulative {
            "None".to_string()
        } else {
            momentum(layer.momentum)
        };
        let mut cells = vec![
            Cell::from(format!("{marker}{name}")),
            Cell::from(mode),
            Cell::from(m),
        ];
        for c in self.columns {
            cells.push(self.cell(c, layer));
            if let Some(k) = compared(self.app, c) {
                cells.push(compared_cell(self.app, k, state, layer).style(theme.dim()));
            }
        }
        let row = Row::new(cells);
        if i == self.selected {
            row.style(theme.selected())
        } else {
            row
        }
    }

    /// `layer`'s cell in column `c`, coloured by its health; "-" before its first snapshot.
    fn cell(&self, c: &Column, layer: &LayerState) -> Cell<'static> {
        match &layer.latest {
            Some(snapshot) => {
                let cx = Cx {
                    layer,
                    state: self.state,
                    epsilon: self.epsilon,
                    width: usize::from(c.width),
                };
                let (text, health) = (c.cell)(&cx, snapshot);
                Cell::from(Line::styled(text, self.theme.health(health)))
            }
            None => Cell::from("-"),
        }
    }
}

/// The table title's note of what the run B columns show.
fn compare_title(app: &App) -> Option<&'static str> {
    app.compare.as_ref()?;
    match app.compare_column {
        CompareColumn::Value => Some("B: run B at this step "),
        CompareColumn::Difference => Some("Δ = A−B at this step "),
        CompareColumn::Off => None,
    }
}

/// The selected layer's per-rank drift of a distributed run, for the table's bottom border:
/// how far each rank's batch statistics sit from the global batch's.
fn rank_line(layer: &LayerState, theme: &Theme, width: u16) -> Option<Line<'static>> {
    let ranks = &layer.latest.as_ref()?.rank_drift;
    if ranks.is_empty() {
        return None;
    }
    let (worst, max) = ranks
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .fold(
            (0, f32::NEG_INFINITY),
            |acc, (k, &v)| if v > acc.1 { (k, v) } else { acc },
        );
    let finite: Vec<f32> = ranks.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = finite.iter().sum::<f32>() / finite.len().max(1) as f32;
    let mut spans = vec![Span::styled(
        format!(" {} D per rank ", shorten(&layer.name, 16)),
        theme.title(),
    )];
    // One bar per rank when they fit in half the border (Unicode only).
    if !theme.ascii && ranks.len() <= usize::from(width / 2) && max > 0.0 {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let bars: String = ranks
            .iter()
            .map(|&v| {
                if v.is_finite() {
                    BARS[((v / max * 7.0).round().clamp(0.0, 7.0)) as usize]
                } else {
                    '?'
                }
            })
            .collect();
        spans.push(Span::styled(bars, theme.series(Role::Primary)));
        spans.push(Span::raw(" "));
    }
    let floor = layer.noise_floor();
    let health = health::drift(f64::from(max), floor);
    spans.push(Span::styled(
        format!("max {} (rank {worst})", num(f64::from(max), 2)),
        theme.health(health),
    ));
    spans.push(Span::styled(
        format!(" mean {} of {} ", num(f64::from(mean), 2), ranks.len()),
        theme.dim(),
    ));
    Some(Line::from(spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_scroll_but_never_past_the_last_column() {
        let lead = NAME_MIN + MODE_WIDTH + MOMENTUM_WIDTH + 3;
        let (all, _, hidden) = visible_columns(200, lead, 0, |_| 0);
        assert_eq!(all.len(), COLUMNS.len());
        assert!(!hidden);
        let (narrow, _, hidden) = visible_columns(78, lead, 0, |_| 0);
        assert!(hidden && narrow.len() < COLUMNS.len() && narrow.len() > 2);
        let (scrolled, offset, _) = visible_columns(78, lead, 1000, |_| 0);
        assert!(offset > 0);
        assert_eq!(
            scrolled.last().map(|c| c.title),
            COLUMNS.last().map(|c| c.title)
        );
        // Everything shown fits.
        let used: u16 = lead + scrolled.iter().map(|c| c.width + 1).sum::<u16>();
        assert!(used <= 78);
    }
}
