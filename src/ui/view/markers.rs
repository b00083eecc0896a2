//! Control markers on the time charts: each kind of control has its own glyph and colour, drawn at
//! the top of its vertical line, and a legend names the kinds on screen. Pauses, single steps and
//! quitting change nothing a chart shows, so they are not drawn.
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use crate::protocol::{BnMode, Control};
use crate::ui::state::{ControlMark, RunState};
use crate::ui::theme::Theme;
use crate::ui::time_window::Span as Steps;

/// How one kind of control is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkKind {
    pub glyph: &'static str,
    pub ascii: &'static str,
    /// For the legend: "E eval".
    pub what: &'static str,
    rgb: (u8, u8, u8),
    indexed: u8,
    named: Color,
}

const fn kind(
    glyph: &'static str,
    ascii: &'static str,
    what: &'static str,
    rgb: (u8, u8, u8),
    indexed: u8,
    named: Color,
) -> MarkKind {
    MarkKind {
        glyph,
        ascii,
        what,
        rgb,
        indexed,
        named,
    }
}

const EVAL: MarkKind = kind("E", "E", "eval", (255, 150, 50), 208, Color::LightRed);
const TRAIN: MarkKind = kind("T", "T", "train", (120, 220, 120), 114, Color::Green);
const MOMENTUM: MarkKind = kind("m", "m", "momentum", (230, 110, 230), 170, Color::Magenta);
const LR: MarkKind = kind("η", "l", "lr", (120, 200, 255), 81, Color::Cyan);
const RESET: MarkKind = kind("R", "R", "reset", (255, 90, 90), 203, Color::Red);
const PRECISE: MarkKind = kind("P", "P", "PreciseBN", (240, 220, 90), 221, Color::Yellow);
const APPLY: MarkKind = kind(
    "A",
    "A",
    "PreciseBN applied",
    (240, 220, 90),
    221,
    Color::Yellow,
);
const ORDER: MarkKind = kind(
    "o",
    "o",
    "data order",
    (180, 160, 255),
    141,
    Color::LightBlue,
);
const FOLD: MarkKind = kind("F", "F", "fold check", (170, 170, 170), 248, Color::Gray);
const PROBE: MarkKind = kind("b", "b", "probe", (170, 170, 170), 248, Color::Gray);
const SAVE: MarkKind = kind(
    "K",
    "K",
    "checkpoint saved",
    (120, 200, 120),
    114,
    Color::Green,
);
const RESTORE: MarkKind = kind(
    "U",
    "U",
    "checkpoint restored",
    (230, 120, 120),
    174,
    Color::Red,
);
const RESTART: MarkKind = kind("!", "!", "restarted", (230, 120, 120), 174, Color::Red);

/// Every kind, in legend order.
pub const KINDS: [MarkKind; 13] = [
    EVAL, TRAIN, MOMENTUM, LR, RESET, PRECISE, APPLY, ORDER, FOLD, PROBE, SAVE, RESTORE, RESTART,
];

impl MarkKind {
    /// The kind of a control, `None` for those not drawn.
    pub fn of(control: &Control) -> Option<MarkKind> {
        Some(match control {
            Control::SetMode {
                mode: BnMode::Eval, ..
            } => EVAL,
            Control::SetMode {
                mode: BnMode::Train,
                ..
            } => TRAIN,
            Control::SetMomentum { .. } | Control::SetMomentumCumulative { .. } => MOMENTUM,
            Control::SetLr { .. } => LR,
            Control::ResetRunningStats { .. } => RESET,
            Control::PreciseBn => PRECISE,
            Control::ApplyPreciseBn { .. } => APPLY,
            Control::SetDataOrder { .. } => ORDER,
            Control::FoldCheck => FOLD,
            Control::PhantomProbe => PROBE,
            Control::SaveCheckpoint => SAVE,
            Control::RestoreCheckpoint { .. } => RESTORE,
            Control::Restart { .. } => RESTART,
            Control::Pause | Control::Resume | Control::Step | Control::Quit => return None,
        })
    }

    pub fn glyph(&self, theme: &Theme) -> &'static str {
        theme.glyph(self.glyph, self.ascii)
    }

    /// The vertical line.
    pub fn line_style(&self, theme: &Theme) -> Style {
        Style::default().fg(theme.pick(self.rgb, self.indexed, self.named))
    }

    /// The glyph at the top of the line.
    pub fn glyph_style(&self, theme: &Theme) -> Style {
        self.line_style(theme).add_modifier(Modifier::BOLD)
    }
}

/// Markers drawn per chart: the most recent controls.
const MAX_MARKERS: usize = 24;

/// The applied, drawn controls inside `span` (the most recent `MAX_MARKERS`), oldest first.
pub fn visible(state: &RunState, span: Steps) -> Vec<(&ControlMark, MarkKind)> {
    let mut marks: Vec<(&ControlMark, MarkKind)> = state
        .controls
        .iter()
        .rev()
        .filter(|m| m.rejected.is_none() && span.contains(m.step))
        .filter_map(|m| Some((m, MarkKind::of(&m.control)?)))
        .take(MAX_MARKERS)
        .collect();
    marks.reverse();
    marks
}

/// One line naming the kinds on screen: "markers: E eval  m momentum  (i hides)".
pub fn legend<'a>(kinds: &[MarkKind], theme: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled("markers: ", theme.dim())];
    for k in KINDS.iter().filter(|k| kinds.contains(k)) {
        spans.push(Span::styled(k.glyph(theme), k.glyph_style(theme)));
        spans.push(Span::styled(format!(" {}  ", k.what), theme.dim()));
    }
    spans.push(Span::styled("(i hides)", theme.dim()));
    Line::from(spans)
}

/// The help overlay's lines: every kind.
pub fn help_lines<'a>(theme: &Theme) -> Vec<Line<'a>> {
    let mut spans = Vec::new();
    for k in KINDS {
        spans.push(Span::styled(k.glyph(theme), k.glyph_style(theme)));
        spans.push(Span::raw(format!(" {}  ", k.what)));
    }
    vec![
        Line::styled("control markers (i hides them)", theme.title()),
        Line::from(spans),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_drawn_kind_has_its_own_glyph() {
        for (i, a) in KINDS.iter().enumerate() {
            for b in &KINDS[i + 1..] {
                assert_ne!(a.glyph, b.glyph);
                assert_ne!(a.ascii, b.ascii);
            }
            assert!(a.ascii.is_ascii());
        }
        assert_eq!(MarkKind::of(&Control::Step), None);
        let eval = Control::SetMode {
            layer: Some(1),
            mode: BnMode::Eval,
        };
        assert_eq!(MarkKind::of(&eval).map(|k| k.glyph), Some("E"));
    }
}
