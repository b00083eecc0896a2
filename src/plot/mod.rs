//! `bntop plot`: the main charts of a recording as an SVG or PNG for a report: loss and held-out
//! accuracy, D with D0 and θ with θ* per layer, the controls as labelled markers, and optionally a
//! second recording overlaid as a dashed ghost. The numbers come from the dashboard's own
//! `RunState`, so the figure and the dashboard agree.
//!
//! `recording` reads a file into the state, `figure` decides what to show as plain data,
//! `markers` colours and places the control labels, `panel` and `draw` draw with plotters,
//! `style` holds the look and the embedded font, `output` picks the format and writes the file.
pub mod draw;
pub mod figure;
pub mod markers;
pub mod output;
pub mod panel;
pub mod recording;
pub mod style;

use std::path::Path;

pub use figure::DEFAULT_MAX_LAYERS;
pub use output::Format;
pub use recording::Recording;

/// What was drawn, for the command's summary line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plotted {
    pub panels: usize,
    pub layers: usize,
    pub markers: usize,
    pub skipped_lines: u64,
}

/// Which layers: the named ones (a name, or a 0-based index), else the first
/// `DEFAULT_MAX_LAYERS`.
pub fn choose_layers(run: &Recording, wanted: &[String]) -> Result<Vec<usize>, String> {
    let names: Vec<&str> = run.state.layers.iter().map(|l| l.name.as_str()).collect();
    if wanted.is_empty() {
        return Ok((0..names.len().min(DEFAULT_MAX_LAYERS)).collect());
    }
    wanted
        .iter()
        .map(|w| {
            names
                .iter()
                .position(|n| n == w)
                .or_else(|| w.parse::<usize>().ok().filter(|&i| i < names.len()))
                .ok_or_else(|| format!("{}: no layer {w} (layers: {})", run.name, names.join(", ")))
        })
        .collect()
}

/// Reads `input` (and `compare`), draws the figure into `output`. Errors are one line.
pub fn plot(
    input: &Path,
    compare: Option<&Path>,
    output: &Path,
    layers: &[String],
) -> Result<Plotted, String> {
    let format = Format::of(output)?;
    let run = Recording::read(input)?;
    let other = compare.map(Recording::read).transpose()?;
    let chosen = choose_layers(&run, layers)?;
    let figure = figure::build(&run, other.as_ref(), &chosen);
    output::write(&figure, output, format)?;
    Ok(Plotted {
        panels: figure.panels.len(),
        layers: chosen.len(),
        markers: figure.markers.len(),
        skipped_lines: run.skipped_lines + other.map_or(0, |b| b.skipped_lines),
    })
}
