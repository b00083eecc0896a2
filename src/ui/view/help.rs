//! The help overlay, generated from the key table that dispatches keys, then a glossary of the
//! symbols and the thresholds of the highlighted values.
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::ui::glossary::{self, GLOSSARY};
use crate::ui::health::LEGEND;
use crate::ui::keys::{bindings, keys_label, Context};
use crate::ui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, scroll: u16, context: Context, theme: &Theme) {
    let key_width = bindings(context)
        .map(|b| keys_label(b, theme.ascii).chars().count())
        .max()
        .unwrap_or(0);
    let mut lines: Vec<Line> = bindings(context)
        .map(|b| {
            Line::from(vec![
                Span::styled(
                    format!("{:>key_width$}  ", keys_label(b, theme.ascii)),
                    theme.title(),
                ),
                Span::raw(b.help),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.extend(super::markers::help_lines(theme));
    lines.push(Line::styled("what the numbers mean", theme.title()));
    lines.extend(
        GLOSSARY
            .iter()
            .map(|e| Line::raw(glossary::line(e, theme.ascii))),
    );
    lines.push(Line::raw(""));
    lines.push(Line::styled("highlighted values", theme.title()));
    lines.extend(LEGEND.iter().map(|l| Line::raw(*l)));
    let width = area.width.saturating_sub(4).min(96);
    let height = area.height.saturating_sub(2).min(lines.len() as u16 + 2);
    // Wrapped lines make the text taller than `lines`; scrolling stops at the last screenful.
    let text_rows = lines.len() as u16;
    let visible = height.saturating_sub(2);
    let scroll = scroll.min(text_rows.saturating_sub(visible));
    let more = if scroll + visible < text_rows {
        theme.glyph(" ↓ more (j) ", " more below (j) ")
    } else {
        ""
    };
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .border_set(theme.borders())
                .border_style(theme.title())
                .title(Span::styled(" keys (any key closes) ", theme.title()))
                .title_bottom(Span::styled(more, theme.dim())),
        ),
        popup,
    );
}
