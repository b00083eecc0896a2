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
        if let Some(status) = &app.status {
            let style = match status.kind {
                StatusKind::Info => theme.status(),
                StatusKind::Error => theme.health(Health::Bad),
            };
            spans.push(Span::styled(status.text.clone(), style));
            spans.push(Span::raw("  "));
        }
        if pages.pages > 1 {
            spans.push(Span::styled(
                format!("charts {}/{} ", pages.page + 1, pages.pages),
                theme.title(),
            ));
        }
        for hint in bindings(app.context).filter_map(|b| b.footer) {
            let (key, what) = hint.split_once(' ').unwrap_or((hint, ""));
            spans.push(Span::styled(key, theme.title()));
            spans.push(Span::styled(format!(" {what} "), theme.dim()));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
