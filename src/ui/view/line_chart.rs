//! One time chart: its series as min/max envelopes per dot column (a one-step spike in 10,000
//! steps still shows), the control markers with their glyphs, the step cursor with the series'
//! values at it, and step ticks at round numbers along the bottom.
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use super::axis::{step_full, step_label, step_ticks, value_bounds};
use super::inner;
use super::markers::{self, MarkKind};
use crate::ui::format::num;
use crate::ui::history::Series;
use crate::ui::state::{ControlMark, RunState};
use crate::ui::theme::Theme;
use crate::ui::time_window::{Graph, Span as Steps, Window};

/// One line of a chart: a series, how it is drawn, and its name in the legend ("" for none).
pub struct Plot<'a> {
    pub series: &'a Series,
    pub style: Style,
    pub name: &'static str,
}

/// How the value axis fits the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Round bounds around all of it.
    Round,
    /// Round bounds around all of it, on a log scale.
    Log,
    /// A fraction in [0, 1] (accuracy): the lowest 2% of the points may fall below the axis and
    /// sit on its floor, so a start at 10% does not flatten 98.6% and 99.4% into one line.
    Fraction,
}

/// What every time chart of a frame shares.
pub struct Context<'a> {
    pub state: &'a RunState,
    pub theme: &'a Theme,
    pub window: Window,
    pub span: Steps,
    pub cursor: Option<u64>,
    pub markers: bool,
}

/// Draw a chart titled `title`, with run B's `ghosts` (`--compare`) dotted behind `plots`;
/// returns where its graph is, if it has data.
pub fn draw(
    frame: &mut Frame,
    area: Rect,
    title: String,
    plots: &[Plot],
    ghosts: &[Plot],
    fit: Fit,
    cx: &Context,
) -> Option<Graph> {
    let theme = cx.theme;
    let mut title_spans = title_spans(title, plots, theme);
    let plot_area = inner(area);
    // The last row holds the step ticks.
    let chart_area = Rect {
        height: plot_area.height.saturating_sub(1),
        ..plot_area
    };
    let columns = usize::from(chart_area.width.max(1)) * 2;
    let log = fit == Fit::Log;
    let mut lines = envelopes(plots, ghosts, cx.span, columns, log);
    if lines[plots.len()..].iter().any(|l| !l.is_empty()) {
        let style = ghosts.first().map_or(theme.dim(), |g| g.style);
        title_spans.push(Span::styled(format!("{} B ", theme.glyph("┄", ":")), style));
    }
    let Some((lo, hi, clipped)) = y_bounds(&mut lines, fit) else {
        let block = panel_block(title_spans, bottom_line(cx, plots, fit, area.width), theme);
        let empty = Paragraph::new(Span::styled("no data yet", theme.dim())).block(block);
        frame.render_widget(empty, area);
        return None;
    };
    let [low, high] = axis_labels(lo, hi, fit);
    // Points below the axis sit on its floor: its label says so.
    let floor = if clipped { theme.glyph("▼", "v") } else { "" };
    let y_labels = [format!("{low}{floor}"), high];
    let graph = Graph {
        area: graph_area(chart_area, &y_labels),
        span: cx.span,
    };
    let marks = if cx.markers {
        markers::visible(cx.state, cx.span)
    } else {
        Vec::new()
    };
    let marker_lines: Vec<[(f64, f64); 2]> = marks
        .iter()
        .map(|(m, _)| [(m.step as f64, lo), (m.step as f64, hi)])
        .collect();
    let cursor = cx.cursor.map(|c| cx.span.clamp(c));
    let cursor_line = cursor.map(|c| [(c as f64, lo), (c as f64, hi)]);
    let mut datasets: Vec<Dataset> = marks
        .iter()
        .zip(&marker_lines)
        .map(|((_, kind), line)| dataset(line, kind.line_style(theme)))
        .collect();
    let (lines, ghost_lines) = lines.split_at(plots.len());
    datasets.extend(
        ghosts
            .iter()
            .zip(ghost_lines)
            .map(|(g, l)| dataset(l, g.style).graph_type(GraphType::Scatter)),
    );
    datasets.extend(plots.iter().zip(lines).map(|(p, l)| dataset(l, p.style)));
    datasets.extend(cursor_line.as_ref().map(|l| dataset(l, theme.cursor())));
    let block = panel_block(title_spans, bottom_line(cx, plots, fit, area.width), theme);
    frame.render_widget(block, area);
    let chart = Chart::new(datasets)
        .legend_position(None)
        .x_axis(Axis::default().bounds([cx.span.from as f64, cx.span.to as f64]))
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .style(theme.dim())
                .labels(y_labels.map(Span::raw)),
        );
    frame.render_widget(chart, chart_area);
    let buffer = frame.buffer_mut();
    draw_marker_glyphs(buffer, &marks, &graph, theme);
    draw_ticks(buffer, plot_area, &graph, theme);
    Some(graph)
}

/// The chart's title, then each named plot's legend entry in its own style.
fn title_spans<'a>(title: String, plots: &[Plot], theme: &Theme) -> Vec<Span<'a>> {
    let mut spans = vec![Span::styled(title, theme.title())];
    for p in plots.iter().filter(|p| !p.name.is_empty()) {
        spans.push(Span::styled(
            format!("{} {} ", theme.glyph("━", "-"), p.name),
            p.style,
        ));
    }
    spans
}

/// The points of each plot's line, then of each ghost's, over `columns` dot columns. B's lines
/// take one point per cell, so they draw dotted; they share the value axis.
fn envelopes(
    plots: &[Plot],
    ghosts: &[Plot],
    span: Steps,
    columns: usize,
    log: bool,
) -> Vec<Vec<(f64, f64)>> {
    (plots.iter().map(|p| envelope(p.series, span, columns, log)))
        .chain(
            ghosts
                .iter()
                .map(|p| envelope(p.series, span, columns / 2, log)),
        )
        .collect()
}

/// Each control marker's glyph on the graph's top row, at its step.
fn draw_marker_glyphs(
    buffer: &mut ratatui::buffer::Buffer,
    marks: &[(&ControlMark, MarkKind)],
    graph: &Graph,
    theme: &Theme,
) {
    for (mark, kind) in marks {
        if let Some(x) = graph.column_of(mark.step) {
            buffer.set_string(x, graph.area.y, kind.glyph(theme), kind.glyph_style(theme));
        }
    }
}

/// The value axis' two labels, with as few significant digits as tell them apart (a held-out
/// accuracy between 98.6% and 99.4% reads 0.986 and 0.994, not 0.99 twice).
fn axis_labels(lo: f64, hi: f64, fit: Fit) -> [String; 2] {
    let value = |v: f64| if fit == Fit::Log { 10f64.powf(v) } else { v };
    let labels = |digits| [num(value(lo), digits), num(value(hi), digits)];
    (2..=6)
        .map(labels)
        .find(|[a, b]| a != b)
        .unwrap_or_else(|| labels(2))
}

fn dataset<'a>(points: &'a [(f64, f64)], style: Style) -> Dataset<'a> {
    Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(style)
        .data(points)
}

pub fn panel_block<'a>(title: Vec<Span<'a>>, bottom: Line<'a>, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_set(theme.borders())
        .border_style(theme.border())
        .title(Line::from(title))
        .title_bottom(bottom)
}

/// Where ratatui's chart puts its plotting grid: right of the y labels (at most a third of the
/// width) and the y axis line. No x labels: the step ticks are drawn separately.
fn graph_area(chart_area: Rect, y_labels: &[String]) -> Rect {
    let widest = y_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0) as u16;
    let left = chart_area.x + widest.min(chart_area.width / 3) + 1;
    Rect {
        x: left,
        width: chart_area.right().saturating_sub(left),
        ..chart_area
    }
}

/// Step labels at round numbers under the graph, each centred on its column.
fn draw_ticks(buffer: &mut ratatui::buffer::Buffer, row_area: Rect, graph: &Graph, theme: &Theme) {
    if row_area.height < 3 {
        return;
    }
    let y = row_area.bottom() - 1;
    let mut free_from = row_area.x;
    for tick in step_ticks(graph.span.from, graph.span.to, graph.area.width) {
        let Some(column) = graph.column_of(tick) else {
            continue;
        };
        let text = step_label(tick);
        let width = text.len() as u16;
        let x = column
            .saturating_sub(width / 2)
            .min(row_area.right().saturating_sub(width))
            .max(row_area.x);
        if x < free_from {
            continue;
        }
        buffer.set_string(x, y, &text, theme.dim());
        free_from = x + width + 1;
    }
}

/// Min/max envelope points of `series` over `columns` dot columns spanning `span`.
fn envelope(series: &Series, span: Steps, columns: usize, log_y: bool) -> Vec<(f64, f64)> {
    let transform = |v: f32| {
        let v = f64::from(v);
        if log_y {
            (v > 0.0).then(|| v.log10())
        } else {
            Some(v)
        }
    };
    let step = span.steps() as f64 / columns as f64;
    let mut points = Vec::with_capacity(2 * columns);
    let buckets = series.resample(span.from, span.to.saturating_add(1), columns);
    for (i, b) in buckets.iter().enumerate() {
        if !b.is_finite_range() {
            continue;
        }
        let x = span.from as f64 + (i as f64 + 0.5) * step;
        if let (Some(lo), Some(hi)) = (transform(b.min), transform(b.max)) {
            points.push((x, lo));
            if hi != lo {
                points.push((x, hi));
            }
        }
    }
    points
}

/// The value axis for `lines` (`None` without data), and whether points were pinned to its floor
/// (`Fit::Fraction` only; those points are moved onto it).
fn y_bounds(lines: &mut [Vec<(f64, f64)>], fit: Fit) -> Option<(f64, f64, bool)> {
    let mut ys: Vec<f64> = lines.iter().flatten().map(|&(_, y)| y).collect();
    if ys.is_empty() {
        return None;
    }
    ys.sort_unstable_by(f64::total_cmp);
    let hi = ys[ys.len() - 1];
    if fit != Fit::Fraction {
        let (lo, hi) = value_bounds(ys[0], hi);
        return Some((lo, hi, false));
    }
    // Enough points for 2% of them to be a few outliers, not the story.
    let floor = if ys.len() >= 50 {
        ys[ys.len() / 50]
    } else {
        ys[0]
    };
    let (lo, hi) = value_bounds(floor, hi);
    let (lo, hi) = (lo.max(0.0), hi.min(1.0).max(lo + 1e-3));
    let mut clipped = false;
    for point in lines.iter_mut().flatten() {
        if point.1 < lo {
            point.1 = lo;
            clipped = true;
        }
    }
    Some((lo, hi, clipped))
}

/// The bottom border: the window (unless it is the whole run) and, with the cursor on, the value
/// of each series at its step; the most that fits in `width` cells (dropping the window, the word
/// "step", then the series' names: their colours still tell them apart), never a cut number.
fn bottom_line<'a>(cx: &Context, plots: &[Plot], fit: Fit, width: u16) -> Line<'a> {
    let theme = cx.theme;
    let window = (cx.window != Window::Whole)
        .then(|| Span::styled(format!(" {} ", cx.window.label()), theme.dim()));
    let Some(step) = cx.cursor.map(|c| cx.span.clamp(c)) else {
        return Line::from(window.into_iter().collect::<Vec<_>>());
    };
    let values: Vec<(String, Style)> = plots
        .iter()
        .map(|p| {
            let digits = if fit == Fit::Fraction { 4 } else { 3 };
            let value = p.series.value_at(step);
            let value = value.map_or("-".into(), |v| num(f64::from(v), digits));
            (format!("{} {value}", p.name).trim().to_string(), p.style)
        })
        .collect();
    let candidates = [
        (true, "step ", true),
        (false, "step ", true),
        (false, "", true),
    ];
    let unnamed = (false, "", false);
    for (with_window, word, named) in candidates.into_iter().chain([unnamed]) {
        let mut spans: Vec<Span> = window.iter().filter(|_| with_window).cloned().collect();
        spans.push(Span::styled(
            format!(" {word}{}:", step_full(step)),
            theme.cursor(),
        ));
        for ((text, style), plot) in values.iter().zip(plots) {
            let text = if named || plot.name.is_empty() {
                text.clone()
            } else {
                text[plot.name.len()..].trim().to_string()
            };
            spans.push(Span::styled(format!(" {text}"), *style));
        }
        spans.push(Span::raw(" "));
        let line = Line::from(spans);
        if line.width() <= usize::from(width.saturating_sub(2)) || (word.is_empty() && !named) {
            return line;
        }
    }
    Line::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 120 evaluations: the first two at 10% and 50%, the rest 98.6% or 99.4%.
    fn accuracy_points(low: usize) -> Vec<Vec<(f64, f64)>> {
        let points = (0..120)
            .map(|i| {
                let y = match i {
                    0 => 0.1,
                    _ if i < low => 0.5,
                    _ if i % 2 == 0 => 0.986,
                    _ => 0.994,
                };
                (i as f64, y)
            })
            .collect();
        vec![points]
    }

    #[test]
    fn axis_labels_differ_when_the_values_do() {
        assert_eq!(axis_labels(0.0, 0.5, Fit::Round), ["0", "0.50"]);
        assert_eq!(axis_labels(0.986, 0.994, Fit::Fraction), ["0.986", "0.994"]);
        assert_eq!(
            axis_labels(0.9912, 0.9918, Fit::Fraction),
            ["0.991", "0.992"]
        );
        assert_eq!(
            axis_labels(0.99912, 0.99918, Fit::Fraction),
            ["0.9991", "0.9992"]
        );
        assert_eq!(axis_labels(-2.0, 0.0, Fit::Log), ["0.010", "1.0"]);
        assert_eq!(axis_labels(1.0, 1.0, Fit::Round), ["1.0", "1.0"]);
    }

    #[test]
    fn the_accuracy_axis_fits_the_data_and_pins_a_few_outliers() {
        let mut lines = accuracy_points(2);
        let (lo, hi, clipped) = y_bounds(&mut lines, Fit::Fraction).expect("bounds");
        // 98.6% and 99.4% are most of the axis apart, not 0.8% of a 0-1 axis.
        assert!(
            (0.95..=0.986).contains(&lo) && (0.994..=1.0).contains(&hi),
            "{lo} {hi}"
        );
        assert!((0.994 - 0.986) / (hi - lo) > 0.2);
        // The two outliers sit on the floor, and the title says so.
        assert!(clipped);
        assert_eq!(lines[0][0].1, lo);
        // A real drop (10% of the run) is not an outlier: the axis takes it in.
        let mut lines = accuracy_points(12);
        let (lo, _, _) = y_bounds(&mut lines, Fit::Fraction).expect("bounds");
        assert!(lo <= 0.5, "{lo}");
        // Other charts fit everything.
        let mut lines = accuracy_points(2);
        assert_eq!(y_bounds(&mut lines, Fit::Round).map(|b| b.0), Some(0.0));
        assert_eq!(y_bounds(&mut [Vec::new()], Fit::Round), None);
    }
}
