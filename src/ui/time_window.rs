//! The time charts' window and step cursor: which steps every time chart shows (the whole run, the
//! last 1k, 10k or 100k steps, or a typed window) and the step the cursor reads. Pure arithmetic:
//! the keys change it, the views draw what it says.
use ratatui::layout::Rect;

use super::view::axis::{nice_ceiling, step_label, time_axis_end};

/// The "last N steps" windows `z` cycles through.
pub const PRESETS: [u64; 3] = [1_000, 10_000, 100_000];

/// Which steps the time charts show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Window {
    #[default]
    Whole,
    /// The last N steps of the run.
    Last(u64),
    /// A fixed range of steps, typed with `Z`.
    Range { from: u64, to: u64 },
}

/// The steps `[from, to]` on a time axis; `to > from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub from: u64,
    pub to: u64,
}

impl Span {
    pub fn steps(self) -> u64 {
        self.to - self.from
    }

    pub fn contains(self, step: u64) -> bool {
        (self.from..=self.to).contains(&step)
    }

    pub fn clamp(self, step: u64) -> u64 {
        step.clamp(self.from, self.to)
    }
}

impl Window {
    /// The steps shown for a run whose latest step is `step`. A finished run ends at its last
    /// step; a growing one a round number ahead (1-2-5 steps for the whole run, a tenth of the
    /// window for the last N), so the axis does not move, and redraw everything, every step.
    pub fn span(self, step: u64, finished: bool) -> Span {
        let whole = Span {
            from: 0,
            to: if finished {
                step.max(1)
            } else {
                time_axis_end(step)
            },
        };
        match self {
            Window::Whole => whole,
            Window::Last(n) if step <= n => whole,
            Window::Last(n) => {
                let to = if finished {
                    step
                } else {
                    let unit = nice_ceiling((n / 10).max(1) as f64) as u64;
                    step.div_ceil(unit).saturating_mul(unit)
                };
                Span { from: to - n, to }
            }
            Window::Range { from, to } => Span {
                from,
                to: to.max(from.saturating_add(1)),
            },
        }
    }

    /// The next window of the `z` cycle: whole run, last 1k, 10k, 100k, the typed one (if any),
    /// whole run.
    pub fn next(self, custom: Option<Window>) -> Window {
        let presets = PRESETS.map(Window::Last);
        let mut cycle = vec![Window::Whole];
        cycle.extend(presets);
        cycle.extend(custom.filter(|c| !cycle.contains(c)));
        let here = cycle.iter().position(|w| *w == self);
        here.and_then(|i| cycle.get(i + 1))
            .copied()
            .unwrap_or(Window::Whole)
    }

    /// "whole run", "last 10k", "2k..4k".
    pub fn label(self) -> String {
        match self {
            Window::Whole => "whole run".into(),
            Window::Last(n) => format!("last {}", step_label(n)),
            Window::Range { from, to } => format!("{}..{}", step_label(from), step_label(to)),
        }
    }

    /// A typed window: `500` (the last 500 steps) or `2000..4000` (also `2k..4k`, `2000-4000`).
    pub fn parse(text: &str) -> Result<Window, String> {
        let text = text.trim();
        let bad = || format!("a window is N (the last N steps) or FROM..TO, got {text:?}");
        let range = text.split_once("..").or_else(|| text.split_once('-'));
        match range {
            Some((a, b)) => {
                let (from, to) = (
                    parse_step(a).ok_or_else(bad)?,
                    parse_step(b).ok_or_else(bad)?,
                );
                if from >= to {
                    return Err(format!("a window ends after it starts, got {text:?}"));
                }
                Ok(Window::Range { from, to })
            }
            None => match parse_step(text).ok_or_else(bad)? {
                0 => Err(format!("a window is at least 1 step, got {text:?}")),
                n => Ok(Window::Last(n)),
            },
        }
    }
}

/// `2500`, `2.5k`, `1M`.
fn parse_step(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let (number, scale) = match text.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match text.strip_suffix('m') {
            Some(n) => (n, 1e6),
            None => (text.as_str(), 1.0),
        },
    };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value = number.parse::<f64>().ok()? * scale;
    (value.is_finite() && value >= 0.0 && value < u64::MAX as f64).then_some(value.round() as u64)
}

/// Where a frame drew one time chart: its plotting area (the Braille grid) and its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Graph {
    pub area: Rect,
    pub span: Span,
}

impl Graph {
    /// Braille dot columns across the graph.
    fn dots(&self) -> u64 {
        u64::from(self.area.width.max(1)) * 2
    }

    /// Steps per dot column (at least 1): what `<` and `>` move the cursor by.
    pub fn steps_per_dot(&self) -> u64 {
        (self.span.steps() / self.dots()).max(1)
    }

    /// The terminal column a step is drawn in (as ratatui's Braille grid rounds it).
    pub fn column_of(&self, step: u64) -> Option<u16> {
        if !self.span.contains(step) {
            return None;
        }
        let fraction = (step - self.span.from) as f64 / self.span.steps() as f64;
        let dot = (fraction * (self.dots() - 1) as f64).round() as u64;
        Some(self.area.x + (dot / 2) as u16)
    }

    /// The step under a terminal cell, if it is inside the graph.
    pub fn step_at(&self, column: u16, row: u16) -> Option<u64> {
        let a = self.area;
        let inside = (a.x..a.x + a.width).contains(&column) && (a.y..a.y + a.height).contains(&row);
        if !inside {
            return None;
        }
        // The middle of the cell's two dot columns.
        let dot = u64::from(column - a.x) * 2 + 1;
        let fraction = dot as f64 / (self.dots() - 1).max(1) as f64;
        Some(
            self.span
                .clamp(self.span.from + (fraction * self.span.steps() as f64).round() as u64),
        )
    }
}

/// The charts' view of time: the window, the cursor, whether control markers show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartView {
    pub window: Window,
    /// The window typed with `Z`, which then joins the `z` cycle.
    pub custom: Option<Window>,
    /// The step the cursor reads (`x`), if it is on.
    pub cursor: Option<u64>,
    pub markers: bool,
    /// The time charts of the last frame (set by the run loop): the mouse and the cursor's
    /// one-dot moves use them.
    pub graphs: Vec<Graph>,
}

impl Default for ChartView {
    fn default() -> Self {
        ChartView {
            window: Window::Whole,
            custom: None,
            cursor: None,
            markers: true,
            graphs: Vec::new(),
        }
    }
}

/// Dot columns assumed before any frame was drawn (tests, the first key).
const DEFAULT_DOTS: u64 = 100;

impl ChartView {
    /// Steps one dot column of the first chart covers (in `span`).
    pub fn steps_per_dot(&self, span: Span) -> u64 {
        match self.graphs.first() {
            Some(g) => Graph { span, ..*g }.steps_per_dot(),
            None => (span.steps() / DEFAULT_DOTS).max(1),
        }
    }

    /// Move the cursor by `delta` steps, inside `span` (where the charts draw it).
    pub fn move_cursor(&mut self, span: Span, delta: i64) {
        let at = span.clamp(self.cursor.unwrap_or(span.to));
        let moved = if delta < 0 {
            at.saturating_sub(delta.unsigned_abs())
        } else {
            at.saturating_add(delta as u64)
        };
        self.cursor = Some(span.clamp(moved));
    }

    /// The step under a click, in whichever chart it landed.
    pub fn step_at(&self, column: u16, row: u16) -> Option<u64> {
        self.graphs.iter().find_map(|g| g.step_at(column, row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run_ends_at_its_last_step() {
        assert_eq!(
            Window::Whole.span(10_536, true),
            Span {
                from: 0,
                to: 10_536
            }
        );
        // A growing run: 1-2-5 steps ahead.
        assert_eq!(
            Window::Whole.span(10_536, false),
            Span {
                from: 0,
                to: 20_000
            }
        );
        assert_eq!(Window::Whole.span(0, true), Span { from: 0, to: 1 });
    }

    #[test]
    fn last_n_windows() {
        let last_1k = Window::Last(1_000);
        assert_eq!(
            last_1k.span(10_536, true),
            Span {
                from: 9_536,
                to: 10_536
            }
        );
        // Growing: the end moves in tenths of the window.
        assert_eq!(
            last_1k.span(10_536, false),
            Span {
                from: 9_600,
                to: 10_600
            }
        );
        assert_eq!(
            last_1k.span(10_600, false),
            Span {
                from: 9_600,
                to: 10_600
            }
        );
        assert_eq!(
            last_1k.span(10_601, false),
            Span {
                from: 9_700,
                to: 10_700
            }
        );
        // A run shorter than the window shows whole.
        assert_eq!(last_1k.span(700, true), Window::Whole.span(700, true));
        let range = Window::Range {
            from: 2_000,
            to: 4_000,
        };
        assert_eq!(
            range.span(10_536, true),
            Span {
                from: 2_000,
                to: 4_000
            }
        );
    }

    #[test]
    fn z_cycles_through_the_presets_and_the_typed_window() {
        let mut w = Window::Whole;
        let mut seen = Vec::new();
        for _ in 0..5 {
            w = w.next(None);
            seen.push(w);
        }
        use Window::*;
        assert_eq!(
            seen,
            [Last(1_000), Last(10_000), Last(100_000), Whole, Last(1_000)]
        );
        let custom = Some(Range { from: 5, to: 50 });
        assert_eq!(Last(100_000).next(custom), Range { from: 5, to: 50 });
        assert_eq!(Range { from: 5, to: 50 }.next(custom), Whole);
        // A typed "last 10k" is the preset: no second stop.
        assert_eq!(Last(100_000).next(Some(Last(10_000))), Whole);
    }

    #[test]
    fn typed_windows() {
        assert_eq!(Window::parse("500"), Ok(Window::Last(500)));
        assert_eq!(
            Window::parse(" 2000..4000 "),
            Ok(Window::Range {
                from: 2_000,
                to: 4_000
            })
        );
        assert_eq!(
            Window::parse("2k-4.5k"),
            Ok(Window::Range {
                from: 2_000,
                to: 4_500
            })
        );
        assert_eq!(Window::parse("1M"), Ok(Window::Last(1_000_000)));
        for bad in [
            "",
            "0",
            "abc",
            "4000..2000",
            "5..5",
            "..9",
            "1e3",
            "-5",
            "1..2..3",
            "99999999999999999999999",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Window::Range {
                from: 2_000,
                to: 4_500
            }
            .label(),
            "2k..4.5k"
        );
        assert_eq!(Window::Last(10_000).label(), "last 10k");
    }

    #[test]
    fn graph_columns_and_clicks_agree() {
        let graph = Graph {
            area: Rect::new(10, 5, 50, 8),
            span: Span {
                from: 1_000,
                to: 2_000,
            },
        };
        assert_eq!(graph.steps_per_dot(), 10);
        assert_eq!(graph.column_of(1_000), Some(10));
        assert_eq!(graph.column_of(2_000), Some(59));
        assert_eq!(graph.column_of(2_001), None);
        for column in 10..60 {
            let step = graph.step_at(column, 6).unwrap_or(0);
            assert_eq!(
                graph.column_of(step),
                Some(column),
                "column {column} -> step {step}"
            );
        }
        assert_eq!(graph.step_at(9, 6), None);
        assert_eq!(graph.step_at(20, 13), None);
    }

    #[test]
    fn the_cursor_stays_in_the_window() {
        let span = Span { from: 100, to: 200 };
        let mut view = ChartView::default();
        view.move_cursor(span, -1);
        assert_eq!(view.cursor, Some(199));
        view.move_cursor(span, -1_000);
        assert_eq!(view.cursor, Some(100));
        view.move_cursor(span, 30);
        assert_eq!(view.cursor, Some(130));
        // A cursor left outside a new window moves from the edge it is drawn at.
        view.move_cursor(Span { from: 500, to: 600 }, 10);
        assert_eq!(view.cursor, Some(510));
        assert_eq!(view.steps_per_dot(span), 1);
    }
}
