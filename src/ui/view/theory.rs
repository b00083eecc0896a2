//! The lab panel: for the selected layer, each measured quantity beside the theory's prediction
//! (`ui::theory`), with a one-line reading.
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::ui::format::num;
use crate::ui::state::{LayerState, RunState};
use crate::ui::theme::Theme;
use crate::ui::theory::comparisons;

pub fn draw(frame: &mut Frame, area: Rect, state: &RunState, layer: &LayerState, theme: &Theme) {
    let mut lines = Vec::new();
    for row in comparisons(state, layer) {
        let predicted = row.predicted.map_or_else(|| "-".to_string(), |p| num(p, 3));
        lines.push(Line::from(vec![
            Span::styled(format!("{}: ", row.quantity), theme.title()),
            Span::raw(num(row.measured, 3)),
            Span::styled(" vs ", theme.dim()),
            Span::raw(predicted),
        ]));
        lines.push(Line::styled(format!("  {}", row.note), theme.dim()));
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
            Span::styled(format!(" {} lab ", layer.name), theme.title()),
            Span::styled("measured vs theory ", theme.dim()),
        ]));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        area,
    );
}
