//! One panel: its title and legend line, the axes, each trace (a min..max band and a line through
//! the buckets, or a dashed ghost for the compared run) and the control markers.
use std::ops::Range;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{Panel, Point, Scale, Trace};
use super::markers::{kinds, LABEL_ROWS};
use super::recording::ControlMarker;
use super::style::{self, FONT, SMALL_SIZE, TEXT_SIZE};
use crate::ui::format::num;

/// Height of the title-and-legend line, and of one row of marker labels.
pub const TITLE_HEIGHT: u32 = 24;
pub const LABEL_ROW_HEIGHT: u32 = 16;

/// Where a panel's markers are drawn and in what colour.
pub struct Markers<'a> {
    pub own: &'a [ControlMarker],
    pub ghost: &'a [ControlMarker],
    /// Every kind in the figure, so a kind has one colour in every panel.
    pub kinds: &'a [&'static str],
}

/// The plot area of a drawn panel, in the figure's pixels, and the step to pixel map's ends.
pub struct Drawn {
    pub x_pixels: Range<i32>,
    pub top: i32,
    pub steps: u64,
}

type Failure = String;

/// A plotters error as the command's one-line message (the whole figure's drawing uses it).
pub(super) fn err<E: std::fmt::Debug>(e: E) -> Failure {
    format!("drawing the figure: {e:?}")
}

/// Draws `panel` in `area`; `label_room` rows of marker labels are kept free above the plot.
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    steps: u64,
    markers: &Markers,
    label_room: bool,
) -> Result<Drawn, Failure> {
    let (head, body) = area.split_vertically(TITLE_HEIGHT);
    title_line(&head, panel)?;
    let (lo, hi) = value_range(panel);
    let labels = if label_room {
        LABEL_ROWS as u32 * LABEL_ROW_HEIGHT
    } else {
        0
    };
    let mut chart = ChartBuilder::on(&body)
        .margin(6)
        .margin_top(6 + labels)
        .margin_right(16)
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..steps as f64, lo..hi)
        .map_err(err)?;
    let scale = panel.scale;
    let percent = panel.percent;
    let y_label = move |v: &f64| match (scale, percent) {
        (Scale::Log, _) => num(10f64.powf(*v), 2),
        (Scale::Linear, true) => format!("{}%", num(v * 100.0, 3)),
        (Scale::Linear, false) => num(*v, 2),
    };
    chart
        .configure_mesh()
        .max_light_lines(0)
        .bold_line_style(style::GRID)
        .axis_style(style::MUTED)
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&|x| format!("{}", x.round() as i64))
        .y_label_formatter(&y_label)
        .x_desc("step")
        .label_style((FONT, SMALL_SIZE).into_font().color(&style::INK))
        .draw()
        .map_err(err)?;
    draw_markers(&mut chart, markers, (lo, hi))?;
    for trace in &panel.traces {
        draw_trace(&mut chart, trace, scale)?;
    }
    if let Some(note) = &panel.note {
        let at = chart.backend_coord(&(0.0, hi));
        let font = (FONT, SMALL_SIZE).into_font().color(&style::MUTED);
        area.strip_coord_spec()
            .draw_text(note, &font, relative(area, (at.0 + 8, at.1 + 6)))
            .map_err(err)?;
    }
    let (x_pixels, y_pixels) = chart.plotting_area().get_pixel_range();
    Ok(Drawn {
        x_pixels,
        top: y_pixels.start,
        steps,
    })
}

/// `abs` (figure pixels) relative to `area`'s top left corner.
fn relative<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, abs: (i32, i32)) -> (i32, i32) {
    let base = area.get_base_pixel();
    (abs.0 - base.0, abs.1 - base.1)
}

/// The panel's title, then one swatch per trace of the run; the compared run's traces have one
/// "dashed: B" entry, as they share the run's colours.
fn title_line<DB: DrawingBackend>(
    head: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), Failure> {
    let title_font = (FONT, TEXT_SIZE, FontStyle::Bold)
        .into_font()
        .color(&style::INK);
    let font = (FONT, SMALL_SIZE).into_font().color(&style::INK);
    head.draw_text(&panel.title, &title_font, (8, 4))
        .map_err(err)?;
    let mut x = 8
        + head
            .estimate_text_size(&panel.title, &title_font)
            .map_err(err)?
            .0 as i32
        + 18;
    let mut entries: Vec<(String, RGBColor, bool)> = panel
        .traces
        .iter()
        .filter(|t| !t.ghost)
        .map(|t| (t.name.clone(), style::hue(t.hue), false))
        .collect();
    if panel.traces.iter().any(|t| t.ghost) {
        entries.push(("B".into(), style::MUTED, true));
    }
    for (name, colour, dashed) in entries {
        let y = 12;
        let swatch = if dashed {
            vec![(x, y), (x + 5, y), (x + 9, y), (x + 14, y)]
        } else {
            vec![(x, y), (x + 14, y)]
        };
        let line = colour.stroke_width(3);
        if dashed {
            head.draw(&PathElement::new(swatch[..2].to_vec(), line))
                .map_err(err)?;
            head.draw(&PathElement::new(swatch[2..].to_vec(), line))
                .map_err(err)?;
        } else {
            head.draw(&PathElement::new(swatch, line)).map_err(err)?;
        }
        head.draw_text(&name, &font, (x + 19, 5)).map_err(err)?;
        x += 19 + head.estimate_text_size(&name, &font).map_err(err)?.0 as i32 + 16;
    }
    Ok(())
}

/// The y range over every trace's band, in the panel's scale, with a little room either side.
fn value_range(panel: &Panel) -> (f64, f64) {
    let (lo, hi) = panel
        .traces
        .iter()
        .flat_map(|t| t.points.iter())
        .filter(|p| p.step >= panel.fit_from)
        .flat_map(|p| [p.min, p.max])
        .filter_map(|v| scaled(v, panel.scale))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.06
    } else {
        lo.abs().max(1e-3) * 0.1
    };
    (lo - pad, hi + pad)
}

/// A value in the panel's scale: log10 for a log panel (None when not positive).
fn scaled(v: f64, scale: Scale) -> Option<f64> {
    match scale {
        Scale::Linear => v.is_finite().then_some(v),
        Scale::Log => (v.is_finite() && v > 0.0).then(|| v.log10()),
    }
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw_trace<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    trace: &Trace,
    scale: Scale,
) -> Result<(), Failure> {
    let colour = style::hue(trace.hue);
    let at = |p: &Point, v: f64| scaled(v, scale).map(|y| (p.step, y));
    let line: Vec<(f64, f64)> = trace.points.iter().filter_map(|p| at(p, p.last)).collect();
    if trace.ghost {
        let dim = style::ghost(colour).mix(style::GHOST_ALPHA).stroke_width(2);
        let dashes = DashedLineSeries::new(line, 6, 4, dim);
        chart.draw_series(dashes).map_err(err)?;
        return Ok(());
    }
    // The band: min along the way out, max on the way back.
    let lower = trace.points.iter().filter_map(|p| at(p, p.min));
    let upper = trace.points.iter().rev().filter_map(|p| at(p, p.max));
    let band: Vec<(f64, f64)> = lower.chain(upper).collect();
    if trace.points.iter().any(|p| p.max > p.min) {
        let fill = colour.mix(style::BAND_ALPHA).filled();
        chart
            .draw_series(std::iter::once(Polygon::new(band, fill)))
            .map_err(err)?;
    }
    chart
        .draw_series(LineSeries::new(line, colour.stroke_width(2)))
        .map_err(err)?;
    Ok(())
}

/// A vertical line per control, coloured by kind; the compared run's dashed and faint.
fn draw_markers<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    markers: &Markers,
    (lo, hi): (f64, f64),
) -> Result<(), Failure> {
    let colour = |m: &ControlMarker| {
        let k = markers.kinds.iter().position(|&k| k == m.kind).unwrap_or(0);
        style::marker(k)
    };
    for m in markers.ghost {
        let x = m.step as f64;
        let stroke = colour(m).mix(style::GHOST_MARKER_ALPHA).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(vec![(x, lo), (x, hi)], 5, 5, stroke))
            .map_err(err)?;
    }
    let lines = markers.own.iter().map(|m| {
        let x = m.step as f64;
        PathElement::new(vec![(x, lo), (x, hi)], colour(m).mix(0.8).stroke_width(1))
    });
    chart.draw_series(lines).map_err(err)?;
    Ok(())
}

/// The kinds of the figure's markers, own first (for `Markers::kinds`).
pub fn all_kinds(own: &[ControlMarker], ghost: &[ControlMarker]) -> Vec<&'static str> {
    let mut all = kinds(own);
    for k in kinds(ghost) {
        if !all.contains(&k) {
            all.push(k);
        }
    }
    all
}
