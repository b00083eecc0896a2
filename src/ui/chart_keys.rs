//! The keys (and the mouse) that change how the time charts read: the window, the step cursor,
//! the control markers. They act on this dashboard alone, live or in a replay.
use std::time::Instant;

use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};

use super::app::{App, PromptKind, StatusKind};
use super::keys::Action;
use super::time_window::{Span, Window};
use super::view::axis::step_full;

impl App {
    /// The steps the time charts show now.
    pub fn chart_span(&self) -> Span {
        let state = self.view();
        self.chart.window.span(state.step, state.end.is_some())
    }

    /// Handle a chart action; false if `action` is not one.
    pub(super) fn chart_action(&mut self, action: Action, now: Instant) -> bool {
        let span = self.chart_span();
        let dot = i64::try_from(self.chart.steps_per_dot(span)).unwrap_or(i64::MAX);
        let tenth = i64::try_from((span.steps() / 10).max(1)).unwrap_or(i64::MAX);
        match action {
            Action::WindowNext => {
                self.chart.window = self.chart.window.next(self.chart.custom);
                self.say_window(now);
            }
            Action::WindowEntry => self.open_prompt(PromptKind::Window),
            Action::CursorToggle => {
                self.chart.cursor = match self.chart.cursor {
                    Some(_) => None,
                    None => Some(span.clamp(self.view().step)),
                };
                let text = match self.chart.cursor {
                    Some(step) => format!(
                        "cursor at step {}: < > move a dot, {{ }} a tenth",
                        step_full(step)
                    ),
                    None => "cursor off".into(),
                };
                self.say(text, StatusKind::Info, now);
            }
            Action::CursorLeft
            | Action::CursorRight
            | Action::CursorBack
            | Action::CursorForward => {
                let by = match action {
                    Action::CursorLeft => -dot,
                    Action::CursorRight => dot,
                    Action::CursorBack => -tenth,
                    _ => tenth,
                };
                self.chart.move_cursor(span, by);
                // The footer follows the cursor (it said where `x` put it).
                self.say_cursor(self.chart.cursor.unwrap_or(span.to), now);
            }
            Action::MarkersToggle => {
                self.chart.markers = !self.chart.markers;
                let text = if self.chart.markers {
                    "control markers shown (i hides them)"
                } else {
                    "control markers hidden (i shows them)"
                };
                self.say(text, StatusKind::Info, now);
            }
            _ => return false,
        }
        true
    }

    fn say_window(&mut self, now: Instant) {
        let span = self.chart_span();
        let text = format!(
            "time window: {}, steps {} to {} (z next, Z type one)",
            self.chart.window.label(),
            step_full(span.from),
            step_full(span.to)
        );
        self.say(text, StatusKind::Info, now);
    }

    /// The `Z` prompt's answer: a window that joins the `z` cycle, or a one-line error.
    pub(super) fn window_entered(&mut self, text: &str, now: Instant) {
        match Window::parse(text) {
            Ok(window) => {
                self.chart.custom = Some(window);
                self.chart.window = window;
                self.say_window(now);
            }
            Err(e) => self.say(e, StatusKind::Error, now),
        }
    }

    /// A left click in a time chart puts the cursor at that step (with `--mouse`).
    pub fn on_mouse(&mut self, event: &MouseEvent, now: Instant) -> bool {
        let click = matches!(
            event.kind,
            MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left)
        );
        let Some(step) = click
            .then(|| self.chart.step_at(event.column, event.row))
            .flatten()
        else {
            return false;
        };
        self.chart.cursor = Some(step);
        self.say_cursor(step, now);
        true
    }

    fn say_cursor(&mut self, step: u64, now: Instant) {
        let text = format!("cursor at step {}", step_full(step));
        self.say(text, StatusKind::Info, now);
    }
}
