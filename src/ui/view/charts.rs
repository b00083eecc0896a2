//! The chart grid: as many panels as the area holds (up to 4x2), the rest on further pages (Tab).
//! Each line chart draws min/max per pixel column, so a one-step spike in 10,000 steps still shows,
//! and each applied control is a vertical marker at its step.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use super::axis::{time_axis_end, value_bounds};
use super::{heatmap, inner, theory};
use crate::protocol::BnKind;
use crate::ui::app::App;
use crate::ui::format::num;
use crate::ui::history::Series;
use crate::ui::names::shorten;
use crate::ui::state::{LayerState, RunState};
use crate::ui::theme::{Role, Theme};
use crate::ui::theory::no_decay_laws;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Panel {
    Mean,
    Var,
    Drift,
    Heatmap,
    Loss,
    HeldOut,
    WeightNorm,
    Angular,
    Theory,
}

/// In order of importance: small terminals page through them.
const PANELS: [Panel; 9] = [
    Panel::Mean,
    Panel::Var,
    Panel::Drift,
    Panel::Heatmap,
    Panel::Loss,
    Panel::HeldOut,
    Panel::WeightNorm,
    Panel::Angular,
    Panel::Theory,
];
const MIN_PANEL_WIDTH: u16 = 36;
const MIN_PANEL_HEIGHT: u16 = 9;
/// Points of the t^(-1/2) reference curve.
const LAW_POINTS: usize = 64;
/// Markers drawn per chart: the most recent controls.
const MAX_MARKERS: usize = 24;

/// Which page of how many is showing (pages = 0 when there is no room for charts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pages {
    pub page: usize,
    pub pages: usize,
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) -> Pages {
    if area.height < 6 || area.width < 24 {
        return Pages { page: 0, pages: 0 };
    }
    let cols = (area.width / MIN_PANEL_WIDTH).clamp(1, 4) as usize;
    let rows = (area.height / MIN_PANEL_HEIGHT).clamp(1, 2) as usize;
    let slots = cols * rows;
    let pages = PANELS.len().div_ceil(slots);
    let page = app.page % pages;
    // A page that is not full (the last) gives its panels the room of the missing ones.
    let on_page = &PANELS[page * slots..((page + 1) * slots).min(PANELS.len())];
    let rows_used = on_page.len().div_ceil(cols);
    let row_areas =
        Layout::vertical(vec![Constraint::Ratio(1, rows_used as u32); rows_used]).split(area);
    for (row_area, row_panels) in row_areas.iter().zip(on_page.chunks(cols)) {
        let n = row_panels.len() as u32;
        let cells = Layout::horizontal(vec![Constraint::Ratio(1, n); n as usize]).split(*row_area);
        for (cell, &panel) in cells.iter().zip(row_panels) {
            draw_panel(frame, *cell, panel, app, theme);
        }
    }
    Pages { page, pages }
}

struct Plot<'a> {
    series: &'a Series,
    role: Role,
    name: &'static str,
}

fn draw_panel(frame: &mut Frame, area: Rect, panel: Panel, app: &App, theme: &Theme) {
    let state = app.view();
    let Some(layer) = state
        .layers
        .get(app.selected.min(state.layers.len().saturating_sub(1)))
    else {
        let block = panel_block(
            vec![Span::styled(" waiting for the run ", theme.dim())],
            theme,
        );
        frame.render_widget(block, area);
        return;
    };
    let name = title_name(&layer.name, area);
    let name = name.as_str();
    match panel {
        Panel::Mean | Panel::Var => {
            let charted = layer.channel_history.len();
            let k = app.channel.min(charted.saturating_sub(1));
            let Some(h) = layer.channel_history.get(k) else {
                return;
            };
            let unit = match layer.kind {
                BnKind::Bn1d => "f",
                BnKind::Bn2d | BnKind::Bn3d => "ch",
            };
            // A wide layer charts a sample of its channels: say which of them this is.
            let of = if charted < layer.channels {
                format!(" [{}/{charted}]", k + 1)
            } else {
                String::new()
            };
            let channel = format!("{unit}{}{of}", h.channel);
            let (symbol, batch, running) = if panel == Panel::Mean {
                (theme.glyph("μ", "mean"), &h.batch_mean, &h.running_mean)
            } else {
                (theme.glyph("σ²", "var"), &h.batch_var, &h.running_var)
            };
            let plots = [
                Plot {
                    series: batch,
                    role: Role::Primary,
                    name: "batch",
                },
                Plot {
                    series: running,
                    role: Role::Secondary,
                    name: "running",
                },
            ];
            let title = format!(" {name} {symbol} {channel} ");
            let ghosts = ghost_plots(app, panel, layer);
            line_chart(frame, area, title, &plots, &ghosts, state, false, theme);
        }
        Panel::Drift => {
            let plots = [
                Plot {
                    series: &layer.drift,
                    role: Role::Primary,
                    name: "D",
                },
                Plot {
                    series: &layer.drift_floor,
                    role: Role::Tertiary,
                    name: "D0 floor",
                },
            ];
            line_chart(
                frame,
                area,
                format!(" {name} drift "),
                &plots,
                &ghost_plots(app, panel, layer),
                state,
                false,
                theme,
            );
        }
        Panel::Heatmap => heatmap::draw(frame, area, layer, app, theme),
        Panel::Loss => {
            let plots = [Plot {
                series: &state.loss_history,
                role: Role::Primary,
                name: "train",
            }];
            line_chart(
                frame,
                area,
                " loss (log) ".into(),
                &plots,
                &ghost_plots(app, panel, layer),
                state,
                true,
                theme,
            );
        }
        Panel::HeldOut => {
            let plots = [
                Plot {
                    series: &state.heldout_batch_stats,
                    role: Role::Primary,
                    name: "batch",
                },
                Plot {
                    series: &state.heldout_running_stats,
                    role: Role::Secondary,
                    name: "EMA",
                },
                Plot {
                    series: &state.heldout_precise_stats,
                    role: Role::Tertiary,
                    name: "Precise",
                },
            ];
            line_chart(
                frame,
                area,
                " held-out ".into(),
                &plots,
                &ghost_plots(app, panel, layer),
                state,
                false,
                theme,
            );
        }
        Panel::WeightNorm | Panel::Angular => {
            let ghosts = ghost_plots(app, panel, layer);
            let norm = panel == Panel::WeightNorm;
            weight_chart(frame, area, layer, &ghosts, state, theme, norm);
        }
        Panel::Theory => theory::draw(frame, area, state, layer, theme),
    }
}

fn weight_chart(
    frame: &mut Frame,
    area: Rect,
    layer: &LayerState,
    ghosts: &[Plot],
    state: &RunState,
    theme: &Theme,
    norm: bool,
) {
    let (series, title) = if norm {
        (
            &layer.weight_norm,
            format!(
                " {} {} ",
                title_name(&layer.name, area),
                theme.glyph("‖w‖", "|w|")
            ),
        )
    } else {
        (
            &layer.angular_update,
            format!(
                " {} {} per step ",
                title_name(&layer.name, area),
                theme.glyph("θ", "angle")
            ),
        )
    };
    let mut plots = vec![Plot {
        series,
        role: Role::Primary,
        name: "",
    }];
    // The equilibrium θ* under SGD with weight decay, as a flat line across the run.
    let equilibrium = (!norm).then(|| state.theta_star()).flatten().map(|theta| {
        let mut line = Series::new(4);
        line.push(0, theta as f32);
        line.push(time_axis_end(state.step), theta as f32);
        line
    });
    if let Some(line) = &equilibrium {
        plots.push(Plot {
            series: line,
            role: Role::Tertiary,
            name: "θ*",
        });
    }
    // Without weight decay: the t^(-1/2) law through the measured updates.
    let law = (!norm && equilibrium.is_none())
        .then(|| no_decay_laws(state, layer))
        .flatten()
        .map(|laws| {
            let (from, to) = (state.step / 10, time_axis_end(state.step));
            let mut curve = Series::new(LAW_POINTS);
            for k in 0..LAW_POINTS {
                let t = from.max(1) + (to - from.max(1)) * k as u64 / (LAW_POINTS as u64 - 1);
                curve.push(t, (laws.angle_scale / (t as f64).sqrt()) as f32);
            }
            curve
        });
    if let Some(curve) = &law {
        plots.push(Plot {
            series: curve,
            role: Role::Tertiary,
            name: "t^-1/2",
        });
    }
    line_chart(frame, area, title, &plots, ghosts, state, false, theme);
}

/// Run B's lines for `panel` (`--compare`), each in the role of the A line it shadows: none
/// without B, or for a layer B does not have (the channel charts: nor one of another width).
fn ghost_plots<'a>(app: &'a App, panel: Panel, layer: &LayerState) -> Vec<Plot<'a>> {
    let Some(b) = &app.compare else {
        return Vec::new();
    };
    let (first, second, third) = (Role::Primary, Role::Secondary, Role::Tertiary);
    let b_layer = b.layer(layer);
    let k = app
        .channel
        .min(layer.channel_history.len().saturating_sub(1));
    let b_channel = layer
        .channel_history
        .get(k)
        .and_then(|a| b.channel(layer, a));
    let run = &b.run;
    let lines: Vec<(&Series, Role)> = match (panel, b_layer, b_channel) {
        (Panel::Mean, _, Some(h)) => vec![(&h.batch_mean, first), (&h.running_mean, second)],
        (Panel::Var, _, Some(h)) => vec![(&h.batch_var, first), (&h.running_var, second)],
        (Panel::Drift, Some(l), _) => vec![(&l.drift, first), (&l.drift_floor, third)],
        (Panel::WeightNorm, Some(l), _) => vec![(&l.weight_norm, first)],
        (Panel::Angular, Some(l), _) => vec![(&l.angular_update, first)],
        (Panel::Loss, _, _) => vec![(&run.loss_history, first)],
        (Panel::HeldOut, _, _) => vec![
            (&run.heldout_batch_stats, first),
            (&run.heldout_running_stats, second),
            (&run.heldout_precise_stats, third),
        ],
        _ => Vec::new(),
    };
    lines
        .into_iter()
        .map(|(series, role)| Plot {
            series,
            role,
            name: "",
        })
        .collect()
}

/// Run B's lines as datasets: one dot per cell (a dotted line: ┄), dimmed, drawn before A's
/// lines so A's stay in front. `points` are their envelopes over the chart's time window.
fn ghost_datasets<'a>(
    ghosts: &[Plot],
    points: &'a [Vec<(f64, f64)>],
    theme: &Theme,
) -> Vec<Dataset<'a>> {
    ghosts
        .iter()
        .zip(points)
        .map(|(ghost, points)| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Scatter)
                .style(theme.ghost(ghost.role))
                .data(points)
        })
        .collect()
}

/// A layer's name in a panel title: at most a third of the panel, so the legend still shows.
pub fn title_name(name: &str, area: Rect) -> String {
    shorten(name, usize::from(area.width / 3).max(8))
}

fn panel_block<'a>(title: Vec<Span<'a>>, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_set(theme.borders())
        .border_style(theme.border())
        .title(Line::from(title))
}

/// Min/max envelope points of `series` over `columns` pixel columns spanning [from, to].
fn envelope(series: &Series, from: u64, to: u64, columns: usize, log_y: bool) -> Vec<(f64, f64)> {
    let transform = |v: f32| {
        let v = f64::from(v);
        if log_y {
            (v > 0.0).then(|| v.log10())
        } else {
            Some(v)
        }
    };
    let step = (to - from) as f64 / columns as f64;
    let mut points = Vec::with_capacity(2 * columns);
    for (i, b) in series
        .resample(from, to.saturating_add(1), columns)
        .iter()
        .enumerate()
    {
        if !b.is_finite_range() {
            continue;
        }
        let x = from as f64 + (i as f64 + 0.5) * step;
        if let (Some(lo), Some(hi)) = (transform(b.min), transform(b.max)) {
            points.push((x, lo));
            if hi != lo {
                points.push((x, hi));
            }
        }
    }
    points
}

#[allow(clippy::too_many_arguments)]
fn line_chart(
    frame: &mut Frame,
    area: Rect,
    title: String,
    plots: &[Plot],
    ghosts: &[Plot],
    state: &RunState,
    log_y: bool,
    theme: &Theme,
) {
    let mut title_spans = vec![Span::styled(title, theme.title())];
    for p in plots.iter().filter(|p| !p.name.is_empty()) {
        title_spans.push(Span::styled(
            format!("{} {} ", theme.glyph("━", "-"), p.name),
            theme.series(p.role),
        ));
    }
    let plot_area = inner(area);
    let (from, to) = (0u64, time_axis_end(state.step));
    // Two Braille dots per cell; the y labels take a few columns, so this slightly oversamples.
    let columns = usize::from(plot_area.width.max(1)) * 2;
    let lines: Vec<Vec<(f64, f64)>> = plots
        .iter()
        .map(|p| envelope(p.series, from, to, columns, log_y))
        .collect();
    // Run B (`--compare`), on the same time window: one point per cell, so it draws dotted.
    let ghost_lines: Vec<Vec<(f64, f64)>> = ghosts
        .iter()
        .map(|p| envelope(p.series, from, to, columns / 2, log_y))
        .collect();
    if ghost_lines.iter().any(|l| !l.is_empty()) {
        title_spans.push(Span::styled(
            format!("{} B ", theme.glyph("┄", ":")),
            theme.ghost(Role::Primary),
        ));
    }
    let block = panel_block(title_spans, theme);
    let ys = lines.iter().chain(&ghost_lines).flatten().map(|&(_, y)| y);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    if lo > hi {
        frame.render_widget(
            Paragraph::new(Span::styled("no data yet", theme.dim())).block(block),
            area,
        );
        return;
    }
    let (lo, hi) = value_bounds(lo, hi);
    let markers: Vec<[(f64, f64); 2]> = state
        .controls
        .iter()
        .rev()
        .filter(|m| m.rejected.is_none() && m.step >= from && m.step <= to)
        .take(MAX_MARKERS)
        .map(|m| [(m.step as f64, lo), (m.step as f64, hi)])
        .collect();
    let mut datasets: Vec<Dataset> = markers
        .iter()
        .map(|m| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.series(Role::Marker))
                .data(m)
        })
        .collect();
    datasets.extend(ghost_datasets(ghosts, &ghost_lines, theme));
    for (plot, points) in plots.iter().zip(&lines) {
        datasets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.series(plot.role))
                .data(points),
        );
    }
    let label = |v: f64| {
        if log_y {
            num(10f64.powf(v), 2)
        } else {
            num(v, 2)
        }
    };
    let chart = Chart::new(datasets)
        .block(block)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds([from as f64, to as f64])
                .style(theme.dim())
                .labels([Span::raw(from.to_string()), Span::raw(to.to_string())]),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .style(theme.dim())
                .labels([Span::raw(label(lo)), Span::raw(label(hi))]),
        );
    frame.render_widget(chart, area);
}
