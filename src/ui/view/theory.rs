//! The lab panel: for the selected layer, each measured quantity beside the theory's prediction
//! (`ui::theory`), with a one-line reading when there is room for all of them.
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::ui::format::num;
use crate::ui::state::{LayerState, RunState};
use crate::ui::theme::{Role, Theme};
use crate::ui::theory::comparisons;

pub fn draw(frame: &mut Frame, area: Rect, state: &RunState, layer: &LayerState, theme: &Theme) {
    let (mut values, mut lines) = (Vec::new(), Vec::new());
    for row in comparisons(state, layer) {
        let predicted = row.predicted.map_or_else(|| "-".to_string(), |p| num(p, 3));
        let mut spans = vec![Span::styled(format!("{}: ", row.quantity), theme.title())];
        if let Some(fraction) = row.bar {
            spans.push(Span::styled(bar(fraction), theme.series(Role::Primary)));
            spans.push(Span::raw(" "));
        }
        spans.extend([
            Span::raw(value(row.measured)),
            Span::styled(" vs ", theme.dim()),
            Span::raw(predicted),
        ]);
        values.push(Line::from(spans.clone()));
        lines.push(Line::from(spans));
        lines.push(Line::styled(format!("  {}", row.note), theme.dim()));
    }
    // Every number matters more than the readings: without room for both, numbers only.
    let inner = (area.width.saturating_sub(2), area.height.saturating_sub(2));
    if wrapped_rows(&lines, inner.0) > usize::from(inner.1) {
        lines = values;
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            "waiting for the layer's statistics",
            theme.dim(),
        ));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_set(theme.borders())
        .border_style(theme.border())
        .title(Line::from(vec![
            Span::styled(
                format!(" {} lab ", super::charts::title_name(&layer.name, area)),
                theme.title(),
            ),
            Span::styled("measured vs theory ", theme.dim()),
        ]));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}

/// A measurement: counts (dead channels) as integers, the rest to three significant digits.
fn value(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e5 {
        format!("{x:.0}")
    } else {
        num(x, 3)
    }
}

/// Rows `lines` take when wrapped at `width` (at least; word wrapping may need a few more).
fn wrapped_rows(lines: &[Line], width: u16) -> usize {
    let width = usize::from(width.max(1));
    lines.iter().map(|l| l.width().div_ceil(width).max(1)).sum()
}

/// Cells of the probe's bars at full length.
const BAR_CELLS: usize = 12;

/// A bar of `fraction` (0..1) of [`BAR_CELLS`] in eighth-cell steps, padded to full width; a
/// value that rounds to nothing still shows as a thin mark, so "about 0" reads as measured.
fn bar(fraction: f64) -> String {
    const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    let eighths = (fraction.clamp(0.0, 1.0) * (BAR_CELLS * 8) as f64).round() as usize;
    let (full, part) = (eighths / 8, eighths % 8);
    let mut s = "█".repeat(full);
    if part > 0 {
        s.push(EIGHTHS[part - 1]);
    } else if full == 0 {
        s.push(EIGHTHS[0]);
    }
    let used = s.chars().count();
    s + &" ".repeat(BAR_CELLS.saturating_sub(used))
}
