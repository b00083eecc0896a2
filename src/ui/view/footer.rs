//! The footer: the momentum prompt while typing, otherwise the latest status message (feedback to
//! the last key or control) followed by the main keys from the key table.
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::charts::Pages;
use crate::ui::app::{App, PromptKind, StatusKind};
use crate::ui::health::Health;
use crate::ui::keys::bindings;
use crate::ui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme, pages: Pages) {
    let mut spans: Vec<Span> = Vec::new();
    if let Some(prompt) = &app.prompt {
        let question = match prompt.kind {
            PromptKind::Momentum(layer) => {
                format!("momentum for {} (0-1, none): ", app.live.layer_name(layer))
            }
            PromptKind::Seek => "seek to step: ".to_string(),
            PromptKind::ConfirmRestart => "restart from step 0? y/n ".to_string(),
            PromptKind::Window => "time window (N = last N steps, or FROM..TO): ".to_string(),
        };
        spans.push(Span::styled(question, theme.title()));
        if prompt.kind == PromptKind::ConfirmRestart {
            spans.push(Span::styled(
                " y restarts (the checkpoint stays), any other key cancels",
                theme.dim(),
            ));
        } else {
            spans.push(Span::raw(format!("{}_", prompt.text)));
            spans.push(Span::styled("  Enter apply  Esc cancel", theme.dim()));
        }
    } else {
        spans = keys_line(app, theme, pages, usize::from(area.width));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Hints that stay whatever the width: the one key a newcomer needs, and the way out.
const ESSENTIAL: [&str; 2] = ["? help", "q quit"];

/// The status, the chart page and the key hints in `width` cells: other hints give way first
/// (the last of them first), then the status is shortened with `…`; `? help` and `q quit` stay.
fn keys_line(app: &App, theme: &Theme, pages: Pages, width: usize) -> Vec<Span<'static>> {
    let hints: Vec<&str> = bindings(app.context).filter_map(|b| b.footer).collect();
    let (essential, mut others): (Vec<&str>, Vec<&str>) =
        hints.into_iter().partition(|h| ESSENTIAL.contains(h));
    let hint_width = |hs: &[&str]| hs.iter().map(|h| h.chars().count() + 1).sum::<usize>();
    let page = (pages.pages > 1).then(|| format!("charts {}/{} ", pages.page + 1, pages.pages));
    let page_width = page.as_ref().map_or(0, |p| p.chars().count());
    let status_width = app
        .status
        .as_ref()
        .map_or(0, |s| s.text.chars().count() + 2);
    while !others.is_empty()
        && status_width + page_width + hint_width(&others) + hint_width(&essential) > width
    {
        others.pop();
    }
    let mut spans = Vec::new();
    if let Some(status) = &app.status {
        let style = match status.kind {
            StatusKind::Info => theme.status(),
            StatusKind::Error => theme.health(Health::Bad),
        };
        let room = width.saturating_sub(page_width + hint_width(&essential) + 2);
        spans.push(Span::styled(shorten_end(&status.text, room), style));
        spans.push(Span::raw("  "));
    }
    if let Some(page) = page {
        spans.push(Span::styled(page, theme.title()));
    }
    for hint in others.iter().chain(&essential) {
        let (key, what) = hint.split_once(' ').unwrap_or((hint, ""));
        spans.push(Span::styled(key.to_string(), theme.title()));
        spans.push(Span::styled(format!(" {what} "), theme.dim()));
    }
    spans
}

/// `text` in at most `room` characters, ending in `…` when it had to be cut.
fn shorten_end(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let kept: String = text.chars().take(room.saturating_sub(1)).collect();
    format!("{kept}…")
}
