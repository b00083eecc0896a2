//! The whole figure on any plotters backend: a header (title, the run in a line, the legend of
//! control kinds), then the panels two a row, with the controls labelled above the first row.
use plotters::coord::Shift;
use plotters::prelude::*;

use super::figure::{Figure, PANELS_PER_ROW};
use super::markers::{kind_word, place_labels};
use super::panel::{self, err, Drawn, Markers, LABEL_ROW_HEIGHT};
use super::style::{self, FONT, SMALL_SIZE, TEXT_SIZE, TITLE_SIZE};

/// The figure's width, its header's height and a row of panels' height, in pixels.
pub const WIDTH: u32 = 1400;
const HEADER: u32 = 96;
const ROW: u32 = 330;
/// A control's description labels it when this short, else the word for its kind does.
const LABEL_CHARS: usize = 24;

/// The figure's size for `panels` panels.
pub fn size(panels: usize) -> (u32, u32) {
    let rows = panels.div_ceil(PANELS_PER_ROW).max(1) as u32;
    (WIDTH, HEADER + rows * ROW)
}

pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figure: &Figure,
) -> Result<(), String> {
    root.fill(&style::BACKGROUND).map_err(err)?;
    let kinds = panel::all_kinds(&figure.markers, &figure.ghost_markers);
    let (head, body) = root.split_vertically(HEADER);
    header(&head, figure, &kinds)?;
    let rows = figure.panels.len().div_ceil(PANELS_PER_ROW).max(1);
    let cells = body.split_evenly((rows, PANELS_PER_ROW));
    let markers = Markers {
        own: &figure.markers,
        ghost: &figure.ghost_markers,
        kinds: &kinds,
    };
    for (i, (cell, p)) in cells.iter().zip(&figure.panels).enumerate() {
        let first_row = i < PANELS_PER_ROW;
        let drawn = panel::draw(cell, p, figure.steps, &markers, first_row)?;
        if first_row {
            label_markers(root, figure, &kinds, &drawn)?;
        }
    }
    root.present().map_err(err)
}

fn header<DB: DrawingBackend>(
    head: &DrawingArea<DB, Shift>,
    figure: &Figure,
    kinds: &[&'static str],
) -> Result<(), String> {
    let title = (FONT, TITLE_SIZE, FontStyle::Bold)
        .into_font()
        .color(&style::INK);
    let text = (FONT, TEXT_SIZE).into_font().color(&style::MUTED);
    head.draw_text(&figure.title, &title, (16, 10))
        .map_err(err)?;
    head.draw_text(&figure.subtitle, &text, (16, 42))
        .map_err(err)?;
    let y = 70;
    let mut x = 16;
    let lead = if kinds.is_empty() {
        "no controls applied"
    } else {
        "controls:"
    };
    head.draw_text(lead, &text, (x, y)).map_err(err)?;
    x += head.estimate_text_size(lead, &text).map_err(err)?.0 as i32 + 12;
    let ink = (FONT, TEXT_SIZE).into_font().color(&style::INK);
    for (k, kind) in kinds.iter().enumerate() {
        let count = figure.markers.iter().filter(|m| m.kind == *kind).count();
        let ghosts = figure
            .ghost_markers
            .iter()
            .filter(|m| m.kind == *kind)
            .count();
        let word = match ghosts {
            0 => format!("{} ×{count}", kind_word(kind)),
            g => format!("{} ×{count} (B ×{g})", kind_word(kind)),
        };
        let swatch = vec![(x, y + 8), (x + 16, y + 8)];
        head.draw(&PathElement::new(swatch, style::marker(k).stroke_width(3)))
            .map_err(err)?;
        head.draw_text(&word, &ink, (x + 22, y)).map_err(err)?;
        x += 22 + head.estimate_text_size(&word, &ink).map_err(err)?.0 as i32 + 20;
    }
    Ok(())
}

/// The run's controls labelled above a first-row panel, each in its kind's colour, in up to
/// `LABEL_ROWS` rows; a label that fits in none is left out (its line and the legend remain).
fn label_markers<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figure: &Figure,
    kinds: &[&'static str],
    drawn: &Drawn,
) -> Result<(), String> {
    let font = (FONT, SMALL_SIZE).into_font().color(&style::INK);
    let (x0, x1) = (drawn.x_pixels.start, drawn.x_pixels.end);
    let span = (x1 - x0) as f64;
    let mut labels = Vec::with_capacity(figure.markers.len());
    let mut texts = Vec::with_capacity(figure.markers.len());
    for m in &figure.markers {
        let text = if m.label.chars().count() <= LABEL_CHARS {
            m.label.clone()
        } else {
            kind_word(m.kind)
        };
        let x = x0 + (m.step as f64 / drawn.steps.max(1) as f64 * span) as i32;
        let width = root.estimate_text_size(&text, &font).map_err(err)?.0 as i32;
        labels.push((x + 2, width));
        texts.push(text);
    }
    let rows = place_labels(&mut labels, x1 + 12);
    for ((m, text), (row, (x, _))) in figure
        .markers
        .iter()
        .zip(&texts)
        .zip(rows.iter().zip(&labels))
    {
        let Some(row) = row else {
            continue;
        };
        let k = kinds.iter().position(|&k| k == m.kind).unwrap_or(0);
        let y = drawn.top - (*row as i32 + 1) * LABEL_ROW_HEIGHT as i32 - 2;
        let colour = style::marker(k);
        let style = font.clone().color(&colour);
        root.draw_text(text, &style, (*x, y)).map_err(err)?;
    }
    Ok(())
}
