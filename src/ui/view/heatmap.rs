//! Channel x time heatmap of d or log r for the selected layer. The colour scale is symmetric about
//! 0 and set by the 98th percentile of |value| (rounded up to a 1-2-5 number), so one exploding
//! channel saturates instead of washing out the rest. Each row holds one channel, or the most
//! extreme of a group of channels when they do not all fit (the state keeps at most `HEATMAP_ROWS`
//! groups per layer, so any width works); with colour and Unicode, half blocks give two rows per
//! line. Rows are labelled by their first channel (BN1d: feature), never cut.
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};
use ratatui::Frame;

use super::axis::nice_ceiling;
use super::axis::step_full;
use super::charts::title_name;
use super::inner;
use super::line_chart::Context;
use crate::protocol::BnKind;
use crate::ui::app::{App, HeatmapValue};
use crate::ui::format::{channel_list, num};
use crate::ui::health::Health;
use crate::ui::history::{Bucket, Series};
use crate::ui::options::ColorMode;
use crate::ui::state::{HeatRow, LayerState};
use crate::ui::theme::Theme;
use crate::ui::theory::scale_invariance::{dead, epsilon};
use crate::ui::time_window::{Graph, Window};
use ratatui::text::Line;

const LEVELS: usize = 9;
const LABEL_WIDTH: u16 = 4;
const GLYPHS: [&str; LEVELS] = ["@", "%", "=", "-", " ", ":", "+", "*", "#"];

/// The value of a bucket that matters for a heatmap: its larger excursion from 0.
fn extreme(b: &Bucket) -> f32 {
    if !b.is_finite_range() {
        f32::NAN
    } else if b.max.abs() >= b.min.abs() {
        b.max
    } else {
        b.min
    }
}

/// Robust symmetric bound: the 98th percentile of |v|, rounded up to 1-2-5.
pub fn scale(values: impl Iterator<Item = f32>) -> f64 {
    let mut magnitudes: Vec<f32> = values.filter(|v| v.is_finite()).map(f32::abs).collect();
    if magnitudes.is_empty() {
        return 1.0;
    }
    let k = ((magnitudes.len() - 1) as f64 * 0.98).round() as usize;
    let (_, p98, _) = magnitudes.select_nth_unstable_by(k, f32::total_cmp);
    nice_ceiling(f64::from(*p98).max(1e-3))
}

/// Level 0..LEVELS-1 (LEVELS/2 is zero) of `v` on a symmetric scale of `bound`.
pub fn level(v: f32, bound: f64) -> Option<usize> {
    if !v.is_finite() {
        return None;
    }
    let half = (LEVELS / 2) as f64;
    let l = (f64::from(v) / bound * half).round().clamp(-half, half);
    Some((l + half) as usize)
}

fn color(theme: &Theme, level: usize) -> Color {
    const RGB: [(u8, u8, u8); LEVELS] = [
        (60, 110, 255),
        (80, 140, 240),
        (100, 160, 220),
        (70, 100, 140),
        (45, 45, 45),
        (150, 100, 70),
        (220, 140, 80),
        (245, 110, 70),
        (255, 60, 50),
    ];
    const INDEXED: [u8; LEVELS] = [27, 33, 39, 67, 236, 137, 209, 203, 196];
    const NAMED: [Color; LEVELS] = [
        Color::Blue,
        Color::LightBlue,
        Color::Cyan,
        Color::DarkGray,
        Color::Black,
        Color::DarkGray,
        Color::Yellow,
        Color::LightRed,
        Color::Red,
    ];
    theme.pick(RGB[level], INDEXED[level], NAMED[level])
}

pub fn draw(
    frame: &mut Frame,
    area: Rect,
    layer: &LayerState,
    app: &App,
    cx: &Context,
) -> Option<Graph> {
    let theme = cx.theme;
    let (label, pick): (&str, fn(&HeatRow) -> &Series) = match app.heatmap {
        HeatmapValue::D => ("d", |h| &h.d),
        HeatmapValue::LogR => ("log r", |h| &h.log_r),
    };
    let plot = inner(area);
    // "c" and the widest first channel of a row: a label is never cut.
    let last_first = layer.heat_rows.last().map_or(0, |h| h.first_channel);
    let label_width = (last_first.to_string().len() as u16 + 1).max(LABEL_WIDTH);
    let columns = usize::from(plot.width.saturating_sub(label_width));
    let colour = theme.mode != ColorMode::None;
    let half_blocks = colour && !theme.ascii;
    let pixel_rows = usize::from(plot.height) * if half_blocks { 2 } else { 1 };
    let stored = layer.heat_rows.len();
    let groups = stored.min(pixel_rows);
    let (from, to) = (cx.span.from, cx.span.to);

    let (cells, first) = group_cells(layer, pick, (from, to), columns, groups);
    let bound = scale(cells.iter().flatten().copied());
    let per = unit(layer.kind);
    let title = vec![
        Span::styled(
            format!(" {} {label} per {per} ", title_name(&layer.name, area)),
            theme.title(),
        ),
        Span::styled(format!("±{} (p98) ", num(bound, 2)), theme.dim()),
    ];
    let cursor = cursor_label(cx);
    let reserved = cursor.width();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_set(theme.borders())
        .border_style(theme.border())
        .title(ratatui::text::Line::from(title))
        .title_bottom(cursor);
    let dead = layer
        .latest
        .as_ref()
        .map(|l| dead(l, epsilon(app.view())))
        .unwrap_or_default();
    // The dead channels by name, on the bottom border (right-aligned, after the cursor's label).
    let room = usize::from(area.width).saturating_sub(2 + " dead: ".len() + 1 + reserved);
    let block = if dead.is_empty() || room < 4 {
        block
    } else {
        let names = format!(" dead: {} ", channel_list(&dead, room));
        block.title_bottom(
            Line::from(Span::styled(names, theme.health(Health::Warn))).right_aligned(),
        )
    };
    frame.render_widget(block, area);
    if columns == 0 || groups == 0 {
        return None;
    }
    let graph = Graph {
        area: Rect {
            x: plot.x + label_width,
            width: columns as u16,
            ..plot
        },
        span: cx.span,
    };
    let map = Map {
        cells,
        first,
        bound,
        dead,
    };
    draw_cells(frame, &graph, &map, label_width, per, theme);
    // The cursor: a mark on the bottom border under its column.
    if let Some(x) = cx
        .cursor
        .map(|c| cx.span.clamp(c))
        .and_then(|c| graph.column_of(c))
    {
        let mark = theme.glyph("▲", "^");
        frame
            .buffer_mut()
            .set_string(x, area.bottom() - 1, mark, theme.cursor());
    }
    Some(graph)
}

/// `cells[g][x]`: the most extreme value of group `g` in time column `x` over `[from, to]`; and
/// each group's first channel.
fn group_cells(
    layer: &LayerState,
    pick: fn(&HeatRow) -> &Series,
    (from, to): (u64, u64),
    columns: usize,
    groups: usize,
) -> (Vec<Vec<f32>>, Vec<usize>) {
    let stored = layer.heat_rows.len();
    let mut cells = vec![vec![f32::NAN; columns]; groups];
    let mut first = vec![usize::MAX; groups];
    if columns > 0 {
        for (k, row) in layer.heat_rows.iter().enumerate() {
            let g = k * groups / stored.max(1);
            first[g] = first[g].min(row.first_channel);
            for (x, bucket) in pick(row)
                .resample(from, to.saturating_add(1), columns)
                .iter()
                .enumerate()
            {
                let v = extreme(bucket);
                let cell = &mut cells[g][x];
                // NaN cells take any finite value; otherwise the larger magnitude wins.
                if v.is_finite() && (cell.is_nan() || v.abs() > cell.abs()) {
                    *cell = v;
                }
            }
        }
    }
    (cells, first)
}

/// The window and the cursor's step on the bottom border.
fn cursor_label<'a>(cx: &Context) -> Line<'a> {
    let mut spans = Vec::new();
    if cx.window != Window::Whole {
        spans.push(Span::styled(
            format!(" {} ", cx.window.label()),
            cx.theme.dim(),
        ));
    }
    if let Some(step) = cx.cursor.map(|c| cx.span.clamp(c)) {
        spans.push(Span::styled(
            format!(" step {} ", step_full(step)),
            cx.theme.cursor(),
        ));
    }
    Line::from(spans)
}

/// The map's values: `cells[group][column]`, each group's first channel, the colour scale's bound.
struct Map {
    cells: Vec<Vec<f32>>,
    first: Vec<usize>,
    bound: f64,
    /// Dead channels: their rows' labels are in the warning colour.
    dead: Vec<usize>,
}

/// The cells of the map, each row labelled by its first channel.
fn draw_cells(
    frame: &mut Frame,
    graph: &Graph,
    map: &Map,
    label_width: u16,
    per: &str,
    theme: &Theme,
) {
    let (cells, first, bound) = (&map.cells, &map.first, map.bound);
    let plot = Rect {
        x: graph.area.x - label_width,
        width: graph.area.width + label_width,
        ..graph.area
    };
    let columns = usize::from(graph.area.width);
    let groups = cells.len();
    let colour = theme.mode != ColorMode::None;
    let half_blocks = colour && !theme.ascii;
    let buffer = frame.buffer_mut();
    let rows_per_line = if half_blocks { 2 } else { 1 };
    let prefix = &per[..1];
    for row in 0..plot.height {
        let y = plot.y + row;
        let first_group = usize::from(row) * rows_per_line;
        if first_group >= groups {
            break;
        }
        let width = usize::from(label_width - 1);
        let label = format!("{prefix}{:<width$}", first[first_group]);
        // A row that holds a dead channel has its label in the warning colour.
        let from_channel = first[first_group];
        let to_channel = (first.get(first_group + rows_per_line).copied()).unwrap_or(usize::MAX);
        let style = if (map.dead.iter()).any(|&c| c >= from_channel && c < to_channel) {
            theme.health(Health::Warn)
        } else {
            theme.dim()
        };
        buffer.set_string(plot.x, y, label, style);
        for x in 0..columns {
            let cell_x = plot.x + label_width + x as u16;
            let top = level(cells[first_group][x], bound);
            let Some(cell) = buffer.cell_mut((cell_x, y)) else {
                continue;
            };
            if half_blocks {
                let bottom = cells.get(first_group + 1).and_then(|r| level(r[x], bound));
                let fg = top.map_or(Color::Reset, |l| color(theme, l));
                let bg = bottom.map_or(Color::Reset, |l| color(theme, l));
                cell.set_symbol("▀")
                    .set_style(Style::default().fg(fg).bg(bg));
            } else if colour {
                let bg = top.map_or(Color::Reset, |l| color(theme, l));
                cell.set_symbol(" ").set_style(Style::default().bg(bg));
            } else {
                cell.set_symbol(top.map_or(" ", |l| GLYPHS[l]));
            }
        }
    }
}

/// What a layer's per-channel values are called: BN1d normalises features.
pub fn unit(kind: BnKind) -> &'static str {
    match kind {
        BnKind::Bn1d => "feature",
        BnKind::Bn2d | BnKind::Bn3d => "channel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_outlier_does_not_set_the_scale() {
        let mut values = vec![0.1f32; 999];
        values.push(50.0);
        assert_eq!(scale(values.into_iter()), 0.1);
        assert_eq!(scale([f32::NAN].into_iter()), 1.0);
    }

    #[test]
    fn levels_are_symmetric_and_saturate() {
        assert_eq!(level(0.0, 1.0), Some(4));
        assert_eq!(level(1.0, 1.0), Some(8));
        assert_eq!(level(-1.0, 1.0), Some(0));
        assert_eq!(level(100.0, 1.0), Some(8));
        assert_eq!(level(-0.3, 1.0), Some(3));
        assert_eq!(level(f32::NAN, 1.0), None);
    }
}
