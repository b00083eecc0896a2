//! What the figure shows, as plain data: panels of traces resampled from the dashboard's history,
//! the controls to mark, and the titles. Drawing it is `draw`'s job; nothing here knows plotters.
use crate::ui::format::num;
use crate::ui::history::Series;
use crate::ui::state::LayerState;
use crate::ui::theory::no_decay_laws;

use super::recording::{ControlMarker, Recording};

/// Points per trace across the run: finer than a panel's pixels need, each a min/max bucket.
const COLUMNS: usize = 600;
/// Layers drawn when none are chosen: two panels each, so a ResNet's 53 would be a poster.
pub const DEFAULT_MAX_LAYERS: usize = 12;
/// Points of the t^(-1/2) reference curve (runs without weight decay).
const LAW_POINTS: usize = 64;

/// What a trace stands for, which `draw` turns into a colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hue {
    Primary,
    Secondary,
    Tertiary,
    /// A theoretical reference (θ*, the t^-1/2 law).
    Reference,
}

/// One bucket of a trace: its middle step, the min and max of the steps it covers, and the last
/// value seen in it (the line goes through these; the band spans min to max).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub step: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub name: String,
    pub hue: Hue,
    /// The compared run (`--compare`): dimmed and dashed, no band.
    pub ghost: bool,
    pub points: Vec<Point>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub scale: Scale,
    pub traces: Vec<Trace>,
    /// Said in the panel when something expected is missing ("no D0 in this recording").
    pub note: Option<String>,
    /// The panel's y values are fractions shown as percentages.
    pub percent: bool,
    /// The y axis fits the values from this step on (earlier ones may run off the panel).
    pub fit_from: f64,
}

pub struct Figure {
    pub title: String,
    pub subtitle: String,
    /// The time axis runs 0..=steps in every panel.
    pub steps: u64,
    /// Two panels a row: loss and held-out accuracy, then D and θ for each layer.
    pub panels: Vec<Panel>,
    pub markers: Vec<ControlMarker>,
    /// The compared run's controls, drawn dimmed and unlabelled.
    pub ghost_markers: Vec<ControlMarker>,
}

pub const PANELS_PER_ROW: usize = 2;

/// The figure of `run`, with `compare` as a ghost, for the layers at `layers` (indices into the
/// run's layers, in order).
pub fn build(run: &Recording, compare: Option<&Recording>, layers: &[usize]) -> Figure {
    let steps = run
        .last_step()
        .max(compare.map_or(0, Recording::last_step))
        .max(1);
    let traces = |series: &Series, name: &str, hue: Hue| trace(series, steps, name, hue, false);
    let ghosts = |pick: &dyn Fn(&Recording) -> &Series, name: &str, hue: Hue| {
        compare
            .map(|b| trace(pick(b), steps, &format!("{name} (B)"), hue, true))
            .into_iter()
            .filter(|t| !t.points.is_empty())
    };
    let s = &run.state;
    let mut loss = vec![traces(&s.loss_history, "train loss", Hue::Primary)];
    loss.extend(ghosts(
        &|r| &r.state.loss_history,
        "train loss",
        Hue::Primary,
    ));
    let mut heldout = vec![
        traces(&s.heldout_batch_stats, "batch stats", Hue::Primary),
        traces(&s.heldout_running_stats, "EMA stats", Hue::Secondary),
    ];
    heldout.extend(ghosts(
        &|r| &r.state.heldout_batch_stats,
        "batch",
        Hue::Primary,
    ));
    heldout.extend(ghosts(
        &|r| &r.state.heldout_running_stats,
        "EMA",
        Hue::Secondary,
    ));
    if !s.heldout_precise_stats.is_empty() {
        heldout.push(traces(&s.heldout_precise_stats, "PreciseBN", Hue::Tertiary));
    }
    heldout.extend(ghosts(
        &|r| &r.state.heldout_precise_stats,
        "PreciseBN",
        Hue::Tertiary,
    ));
    let mut panels = vec![
        Panel {
            title: "training loss (log scale)".into(),
            scale: Scale::Log,
            traces: loss,
            note: None,
            percent: false,
            fit_from: 0.0,
        },
        accuracy_panel(heldout, steps),
    ];
    for &i in layers {
        let Some(layer) = s.layers.get(i) else {
            continue;
        };
        let other = compare.and_then(|b| {
            let l = b.state.layers.iter().find(|l| l.name == layer.name)?;
            Some((b, l))
        });
        panels.push(drift_panel(layer, other.map(|(_, l)| l), steps));
        panels.push(angle_panel(run, layer, other, steps));
    }
    Figure {
        title: title(run, compare),
        subtitle: subtitle(run, compare, layers.len()),
        steps,
        panels,
        markers: run.markers.clone(),
        ghost_markers: compare.map(|b| b.markers.clone()).unwrap_or_default(),
    }
}

/// Held-out accuracy, its axis fitted past the first tenth of the run: the climb from chance
/// would otherwise squeeze 98.6% and 99.4% into one line (the title says where it cuts).
fn accuracy_panel(traces: Vec<Trace>, steps: u64) -> Panel {
    let fit_from = steps / 10;
    let climb = traces
        .iter()
        .flat_map(|t| &t.points)
        .any(|p| p.step < fit_from as f64 && p.min < accuracy_floor(&traces, fit_from as f64));
    Panel {
        title: if climb {
            format!("held-out accuracy (axis fits steps ≥ {fit_from})")
        } else {
            "held-out accuracy".into()
        },
        scale: Scale::Linear,
        traces,
        note: None,
        percent: true,
        fit_from: if climb { fit_from as f64 } else { 0.0 },
    }
}

/// The lowest value of `traces` from step `from` on.
fn accuracy_floor(traces: &[Trace], from: f64) -> f64 {
    traces
        .iter()
        .flat_map(|t| &t.points)
        .filter(|p| p.step >= from)
        .map(|p| p.min)
        .fold(f64::INFINITY, f64::min)
}

/// `series` resampled onto the figure's columns; empty buckets are left out.
fn trace(series: &Series, steps: u64, name: &str, hue: Hue, ghost: bool) -> Trace {
    let width = (steps + 1) as f64 / COLUMNS as f64;
    let points = series
        .resample(0, steps + 1, COLUMNS)
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_finite_range())
        .map(|(i, b)| Point {
            step: (i as f64 + 0.5) * width,
            min: f64::from(b.min),
            max: f64::from(b.max),
            last: if b.last.is_finite() {
                f64::from(b.last)
            } else {
                f64::from(b.max)
            },
        })
        .collect();
    Trace {
        name: name.into(),
        hue,
        ghost,
        points,
    }
}

fn drift_panel(layer: &LayerState, other: Option<&LayerState>, steps: u64) -> Panel {
    let mut traces = vec![trace(&layer.drift, steps, "D", Hue::Primary, false)];
    let floor = trace(
        &layer.drift_floor,
        steps,
        "D0 (noise floor)",
        Hue::Reference,
        false,
    );
    let note = floor
        .points
        .is_empty()
        .then(|| "no D0: too few successive whole snapshots recorded".to_string());
    if !floor.points.is_empty() {
        traces.push(floor);
    }
    if let Some(b) = other {
        traces.push(trace(&b.drift, steps, "D (B)", Hue::Primary, true));
        let floor = trace(&b.drift_floor, steps, "D0 (B)", Hue::Reference, true);
        if !floor.points.is_empty() {
            traces.push(floor);
        }
    }
    Panel {
        title: format!("{}: drift D with its floor D0", layer.name),
        scale: Scale::Linear,
        traces,
        note,
        percent: false,
        fit_from: 0.0,
    }
}

fn angle_panel(
    run: &Recording,
    layer: &LayerState,
    other: Option<(&Recording, &LayerState)>,
    steps: u64,
) -> Panel {
    let mut traces = vec![trace(
        &layer.angular_update,
        steps,
        "θ",
        Hue::Primary,
        false,
    )];
    let mut note = None;
    if !run.theta_star.is_empty() {
        let star = trace(
            &run.theta_star,
            steps,
            "θ* = √(2ηλ/(1+μ))",
            Hue::Reference,
            false,
        );
        traces.push(star);
    } else if let Some(laws) = no_decay_laws(&run.state, layer) {
        traces.push(law_trace(laws.angle_scale, run.state.step));
    } else {
        note = Some("no θ* (Adam, or no weight decay)".to_string());
    }
    if let Some((b, l)) = other {
        traces.push(trace(&l.angular_update, steps, "θ (B)", Hue::Primary, true));
        if !b.theta_star.is_empty() {
            traces.push(trace(&b.theta_star, steps, "θ* (B)", Hue::Reference, true));
        }
    }
    Panel {
        title: format!("{}: angular update θ per step", layer.name),
        scale: Scale::Log,
        traces,
        note,
        percent: false,
        fit_from: 0.0,
    }
}

/// θ ≈ scale·t^(-1/2) over the last 90% of the run, as the dashboard draws it.
fn law_trace(scale: f64, step: u64) -> Trace {
    let from = (step / 10).max(1);
    let points = (0..LAW_POINTS)
        .map(|k| {
            let t = from + (step.saturating_sub(from)) * k as u64 / (LAW_POINTS as u64 - 1);
            let v = scale / (t as f64).sqrt();
            Point {
                step: t as f64,
                min: v,
                max: v,
                last: v,
            }
        })
        .collect();
    Trace {
        name: "t^-1/2 law".into(),
        hue: Hue::Reference,
        ghost: false,
        points,
    }
}

fn title(run: &Recording, compare: Option<&Recording>) -> String {
    match compare {
        Some(b) => format!("{}  vs  {} (B, dashed)", run.name, b.name),
        None => run.name.clone(),
    }
}

/// The run in a line: steps, data, optimizer; which layers show and which B shares.
fn subtitle(run: &Recording, compare: Option<&Recording>, shown: usize) -> String {
    let s = &run.state;
    let mut parts = vec![format!("{} steps", s.step)];
    if let Some(h) = &s.header {
        if let Some(data) = &h.data {
            parts.push(data.name.clone());
        }
        let o = &h.config.optimizer;
        let kind = o.display_name();
        parts.push(format!(
            "{kind} lr {} momentum {} weight decay {}",
            num(f64::from(o.lr), 3),
            num(f64::from(o.momentum), 2),
            num(f64::from(o.weight_decay), 2)
        ));
    }
    if shown < s.layers.len() {
        parts.push(format!(
            "{shown} of {} layers (--layer to choose)",
            s.layers.len()
        ));
    }
    if let Some(b) = compare {
        let shared = s
            .layers
            .iter()
            .filter(|l| b.state.layers.iter().any(|m| m.name == l.name))
            .count();
        parts.push(
            if shared == s.layers.len() && shared == b.state.layers.len() {
                format!("B: {} steps, same layers", b.state.step)
            } else {
                format!(
                    "B: {} steps, compared on the {shared} layers both have ({} and {})",
                    b.state.step,
                    s.layers.len(),
                    b.state.layers.len()
                )
            },
        );
    }
    parts.join("  ·  ")
}
