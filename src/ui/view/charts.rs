//! The chart grid: as many panels as the area holds (up to 4x2), the rest on further pages (Tab).
//! Every time chart shows the same window of steps (`z`), the step cursor (`x`) and the control
//! markers (`i`); a line under the grid names the markers on screen.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::line_chart::{self, panel_block, Context, Fit, Plot};
use super::{heatmap, markers, theory};
use crate::protocol::BnKind;
use crate::ui::app::App;
use crate::ui::history::Series;
use crate::ui::names::shorten;
use crate::ui::state::LayerState;
use crate::ui::theme::{Role, Theme};
use crate::ui::theory::no_decay_laws;
use crate::ui::time_window::Graph;

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

/// Which page of how many is showing (pages = 0 when there is no room for charts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pages {
    pub page: usize,
    pub pages: usize,
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) -> (Pages, Vec<Graph>) {
    if area.height < 6 || area.width < 24 {
        return (Pages { page: 0, pages: 0 }, Vec::new());
    }
    let cx = Context {
        state: app.view(),
        theme,
        window: app.chart.window,
        span: app.chart_span(),
        cursor: app.chart.cursor,
        markers: app.chart.markers,
    };
    // The legend row never changes the grid (`legend_row`), so the page is the same with it.
    let cols = (area.width / MIN_PANEL_WIDTH).clamp(1, 4) as usize;
    let rows = (area.height / MIN_PANEL_HEIGHT).clamp(1, 2) as usize;
    let slots = cols * rows;
    let pages = PANELS.len().div_ceil(slots);
    let page = app.page % pages;
    // A page that is not full (the last) gives its panels the room of the missing ones.
    let on_page = &PANELS[page * slots..((page + 1) * slots).min(PANELS.len())];
    let time_charts = on_page.iter().any(|p| *p != Panel::Theory);
    let area = if time_charts {
        legend_row(frame, area, &cx)
    } else {
        area
    };
    let rows_used = on_page.len().div_ceil(cols);
    let row_areas =
        Layout::vertical(vec![Constraint::Ratio(1, rows_used as u32); rows_used]).split(area);
    let mut graphs = Vec::new();
    for (row_area, row_panels) in row_areas.iter().zip(on_page.chunks(cols)) {
        let n = row_panels.len() as u32;
        let cells = Layout::horizontal(vec![Constraint::Ratio(1, n); n as usize]).split(*row_area);
        for (cell, &panel) in cells.iter().zip(row_panels) {
            graphs.extend(draw_panel(frame, *cell, panel, app, &cx));
        }
    }
    (Pages { page, pages }, graphs)
}

/// With markers on screen (and a row to spare: the grid keeps its rows of panels), the last row
/// names their kinds; the rest of `area` is for the panels.
fn legend_row(frame: &mut Frame, area: Rect, cx: &Context) -> Rect {
    let panel_rows = |height: u16| (height / MIN_PANEL_HEIGHT).clamp(1, 2);
    let spare =
        area.height > MIN_PANEL_HEIGHT && panel_rows(area.height - 1) == panel_rows(area.height);
    if !cx.markers || !spare {
        return area;
    }
    let mut kinds: Vec<markers::MarkKind> = markers::visible(cx.state, cx.span)
        .into_iter()
        .map(|(_, kind)| kind)
        .collect();
    kinds.dedup();
    if kinds.is_empty() {
        return area;
    }
    let row = Rect {
        y: area.bottom() - 1,
        height: 1,
        ..area
    };
    frame.render_widget(Paragraph::new(markers::legend(&kinds, cx.theme)), row);
    Rect {
        height: area.height - 1,
        ..area
    }
}

fn draw_panel(
    frame: &mut Frame,
    area: Rect,
    panel: Panel,
    app: &App,
    cx: &Context,
) -> Option<Graph> {
    let (state, theme) = (cx.state, cx.theme);
    let Some(layer) = state
        .layers
        .get(app.selected.min(state.layers.len().saturating_sub(1)))
    else {
        let title = vec![Span::styled(" waiting for the run ", theme.dim())];
        frame.render_widget(panel_block(title, Line::default(), theme), area);
        return None;
    };
    let name = title_name(&layer.name, area);
    let plot = |series, role, name| Plot {
        series,
        style: theme.series(role),
        name,
    };
    let ghosts = ghost_plots(app, panel, layer, theme);
    match panel {
        Panel::Mean | Panel::Var => {
            channel_chart(frame, area, layer, app, &ghosts, cx, panel == Panel::Mean)
        }
        Panel::Drift => {
            let plots = [
                plot(&layer.drift, Role::Primary, "D"),
                plot(&layer.drift_floor, Role::Tertiary, "D0 floor"),
            ];
            let title = format!(" {name} drift ");
            line_chart::draw(frame, area, title, &plots, &ghosts, Fit::Round, cx)
        }
        Panel::Heatmap => heatmap::draw(frame, area, layer, app, cx),
        Panel::Loss => {
            let plots = [plot(&state.loss_history, Role::Primary, "train")];
            let title = " loss (log) ".into();
            line_chart::draw(frame, area, title, &plots, &ghosts, Fit::Log, cx)
        }
        Panel::HeldOut => {
            let plots = [
                plot(&state.heldout_batch_stats, Role::Primary, "batch"),
                plot(&state.heldout_running_stats, Role::Secondary, "EMA"),
                plot(&state.heldout_precise_stats, Role::Tertiary, "Precise"),
            ];
            let title = " held-out ".into();
            line_chart::draw(frame, area, title, &plots, &ghosts, Fit::Fraction, cx)
        }
        Panel::WeightNorm => weight_chart(frame, area, layer, &ghosts, cx, true),
        Panel::Angular => weight_chart(frame, area, layer, &ghosts, cx, false),
        Panel::Theory => {
            theory::draw(frame, area, state, layer, theme);
            None
        }
    }
}

/// Batch against running mean (or variance) of the selected channel.
fn channel_chart(
    frame: &mut Frame,
    area: Rect,
    layer: &LayerState,
    app: &App,
    ghosts: &[Plot],
    cx: &Context,
    mean: bool,
) -> Option<Graph> {
    let theme = cx.theme;
    let charted = layer.channel_history.len();
    let k = app.channel.min(charted.saturating_sub(1));
    let h = layer.channel_history.get(k)?;
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
    let (symbol, batch, running) = if mean {
        (theme.glyph("μ", "mean"), &h.batch_mean, &h.running_mean)
    } else {
        (theme.glyph("σ²", "var"), &h.batch_var, &h.running_var)
    };
    let plots = [
        Plot {
            series: batch,
            style: theme.series(Role::Primary),
            name: "batch",
        },
        Plot {
            series: running,
            style: theme.series(Role::Secondary),
            name: "running",
        },
    ];
    let title = format!(
        " {} {symbol} {unit}{}{of} ",
        title_name(&layer.name, area),
        h.channel
    );
    line_chart::draw(frame, area, title, &plots, ghosts, Fit::Round, cx)
}

fn weight_chart(
    frame: &mut Frame,
    area: Rect,
    layer: &LayerState,
    ghosts: &[Plot],
    cx: &Context,
    norm: bool,
) -> Option<Graph> {
    let (state, theme, span) = (cx.state, cx.theme, cx.span);
    let name = title_name(&layer.name, area);
    let (series, title) = if norm {
        (
            &layer.weight_norm,
            format!(" {name} {} ", theme.glyph("‖w‖", "|w|")),
        )
    } else {
        (
            &layer.angular_update,
            format!(" {name} {} per step ", theme.glyph("θ", "angle")),
        )
    };
    let mut plots = vec![Plot {
        series,
        style: theme.series(Role::Primary),
        name: "",
    }];
    // The equilibrium θ* under SGD with weight decay, as a flat line across the window.
    let equilibrium = (!norm).then(|| state.theta_star()).flatten().map(|theta| {
        let mut line = Series::new(4);
        line.push(span.from, theta as f32);
        line.push(span.to, theta as f32);
        line
    });
    if let Some(line) = &equilibrium {
        plots.push(Plot {
            series: line,
            style: theme.series(Role::Tertiary),
            name: "θ*",
        });
    }
    // Without weight decay: the t^(-1/2) law through the measured updates.
    let law = (!norm && equilibrium.is_none())
        .then(|| no_decay_laws(state, layer))
        .flatten()
        .map(|laws| {
            let (from, to) = ((state.step / 10).max(span.from).max(1), span.to);
            let mut curve = Series::new(LAW_POINTS);
            for k in 0..LAW_POINTS {
                let t = from + to.saturating_sub(from) * k as u64 / (LAW_POINTS as u64 - 1);
                curve.push(t, (laws.angle_scale / (t as f64).sqrt()) as f32);
            }
            curve
        });
    if let Some(curve) = &law {
        plots.push(Plot {
            series: curve,
            style: theme.series(Role::Tertiary),
            name: "t^-1/2",
        });
    }
    line_chart::draw(frame, area, title, &plots, ghosts, Fit::Round, cx)
}

/// Run B's lines for `panel` (`--compare`), each in the dimmed colour of the A line it shadows:
/// none without B, or for a layer B does not have (the channel charts: nor one of another width).
fn ghost_plots<'a>(app: &'a App, panel: Panel, layer: &LayerState, theme: &Theme) -> Vec<Plot<'a>> {
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
            style: theme.ghost(role),
            name: "",
        })
        .collect()
}

/// A layer's name in a panel title: at most a third of the panel, so the legend still shows.
pub fn title_name(name: &str, area: Rect) -> String {
    shorten(name, usize::from(area.width / 3).max(8))
}
