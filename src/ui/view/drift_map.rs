//! The D/D0 map: every layer's drift against its noise floor over the run, one row per layer of
//! the layers table (so it scrolls and sorts with it), time along x. Each cell is the worst D of
//! the steps it covers over D0 (its own step's floor, else the layer's latest): below about 1.4
//! (Ξ <= 2) is healthy, past 2 and 3 the table's warning and problem colours. A layer whose D0
//! is not known (no per-channel arrays yet) shows D itself against the table's absolute limits.
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};

use super::axis::step_full;
use crate::ui::history::Bucket;
use crate::ui::options::ColorMode;
use crate::ui::state::LayerState;
use crate::ui::theme::Theme;
use crate::ui::time_window::Span;

const LEVELS: usize = 6;
/// Upper ends of the levels below the last: D/D0, and D when D0 is not known.
const RATIO_STEPS: [f64; LEVELS - 1] = [1.0, std::f64::consts::SQRT_2, 2.0, 3.0, 5.0];
const DRIFT_STEPS: [f64; LEVELS - 1] = [0.03, 0.06, 0.1, 0.3, 1.0];
const GLYPHS: [&str; LEVELS] = [".", ":", "-", "+", "*", "#"];

/// Level 0..LEVELS-1 of `v` against `steps`.
pub fn level(v: f64, steps: &[f64; LEVELS - 1]) -> Option<usize> {
    if v.is_nan() {
        return None;
    }
    Some(steps.iter().position(|&s| v <= s).unwrap_or(LEVELS - 1))
}

fn color(theme: &Theme, level: usize) -> Color {
    const RGB: [(u8, u8, u8); LEVELS] = [
        (35, 75, 45),
        (55, 135, 70),
        (150, 180, 60),
        (225, 200, 60),
        (240, 130, 50),
        (230, 50, 40),
    ];
    const INDEXED: [u8; LEVELS] = [22, 28, 100, 178, 208, 196];
    const NAMED: [Color; LEVELS] = [
        Color::DarkGray,
        Color::Green,
        Color::LightGreen,
        Color::Yellow,
        Color::LightRed,
        Color::Red,
    ];
    theme.pick(RGB[level], INDEXED[level], NAMED[level])
}

/// Each time column's level for one layer over `span`.
pub fn row_levels(layer: &LayerState, span: Span, columns: usize) -> Vec<Option<usize>> {
    let (from, to) = (span.from, span.to.saturating_add(1));
    let drift = layer.drift.resample(from, to, columns);
    let floors = layer.drift_floor.resample(from, to, columns);
    let latest_floor = layer.noise_floor();
    drift
        .iter()
        .zip(&floors)
        .map(|(d, f): (&Bucket, &Bucket)| {
            if !d.is_finite_range() {
                return None;
            }
            let worst = f64::from(d.max);
            let floor = if f.is_finite_range() {
                Some(f64::from(f.max))
            } else {
                latest_floor
            };
            match floor.filter(|f| *f > 0.0) {
                Some(floor) => level(worst / floor, &RATIO_STEPS),
                None => level(worst, &DRIFT_STEPS),
            }
        })
        .collect()
}

/// Draw the map into `area`: its first line is the table's title row, then one line per layer.
pub fn draw(buffer: &mut Buffer, area: Rect, layers: &[&LayerState], span: Span, theme: &Theme) {
    let columns = usize::from(area.width);
    if columns < 4 || area.height == 0 {
        return;
    }
    let title = format!(
        "D/D0 by step, {} to {}",
        step_full(span.from),
        step_full(span.to)
    );
    let title: String = title.chars().take(columns).collect();
    buffer.set_string(area.x, area.y, title, theme.dim());
    let colour = theme.mode != ColorMode::None;
    for (row, layer) in layers.iter().enumerate() {
        let y = area.y + 1 + row as u16;
        if y >= area.y + area.height {
            break;
        }
        for (x, level) in row_levels(layer, span, columns).into_iter().enumerate() {
            let Some(cell) = buffer.cell_mut((area.x + x as u16, y)) else {
                continue;
            };
            match level {
                None => {
                    cell.set_symbol(" ");
                }
                Some(l) if colour => {
                    cell.set_symbol(" ")
                        .set_style(Style::default().bg(color(theme, l)));
                }
                Some(l) => {
                    cell.set_symbol(GLYPHS[l]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_the_tables_health_thresholds() {
        // Ξ = (D/D0)^2: 2 is still healthy, past 4 a warning, past 9 a problem (ui::health).
        assert_eq!(level(1.2, &RATIO_STEPS), Some(1));
        assert_eq!(level(2.5, &RATIO_STEPS), Some(3));
        assert_eq!(level(3.5, &RATIO_STEPS), Some(4));
        assert_eq!(level(50.0, &RATIO_STEPS), Some(5));
        assert_eq!(level(f64::INFINITY, &DRIFT_STEPS), Some(5));
        assert_eq!(level(f64::NAN, &DRIFT_STEPS), None);
    }
}
