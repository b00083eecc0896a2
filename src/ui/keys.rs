//! The one key table: it dispatches key presses, and it generates the help overlay, the footer
//! hints and the README's key list, so they cannot disagree.
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SelectPrev,
    SelectNext,
    SortLayers,
    TableView,
    CompareColumn,
    ToggleMode,
    ToggleModeAll,
    MomentumUp,
    MomentumDown,
    MomentumEntry,
    MomentumEntryAll,
    LrUp,
    LrDown,
    PauseResume,
    StepOnce,
    Freeze,
    ResetRunning,
    ResetRunningAll,
    NextChannel,
    PrevChannel,
    HeatmapValue,
    NextPage,
    PrevPage,
    ColumnsLeft,
    ColumnsRight,
    ToggleRecording,
    NextDataOrder,
    FoldCheck,
    PreciseBn,
    ApplyPreciseBn,
    ApplyPreciseBnAll,
    PhantomProbe,
    SaveCheckpoint,
    RestoreCheckpoint,
    Restart,
    ReplayPlayPause,
    ReplayFaster,
    ReplaySlower,
    ReplayStepForward,
    ReplayStepBack,
    ReplayStart,
    ReplayEnd,
    ReplaySeek,
    ReplayNextMark,
    ReplayPrevMark,
    ReplayNextEpoch,
    ReplayPrevEpoch,
    WindowNext,
    WindowEntry,
    CursorToggle,
    CursorLeft,
    CursorRight,
    CursorBack,
    CursorForward,
    MarkersToggle,
    Help,
    Close,
    Quit,
}

impl Action {
    /// Whether the action asks the run for something (a `Control`, or a prompt that ends in one).
    /// A read-only viewer refuses these; the rest act on this dashboard alone: the view (`f`
    /// freezes only what is drawn), the help, quitting (which detaches a viewer), and `w`, which
    /// pauses the session file this process writes, not the run.
    pub fn controls_the_run(self) -> bool {
        match self {
            Action::ToggleMode
            | Action::ToggleModeAll
            | Action::MomentumUp
            | Action::MomentumDown
            | Action::MomentumEntry
            | Action::MomentumEntryAll
            | Action::LrUp
            | Action::LrDown
            | Action::PauseResume
            | Action::StepOnce
            | Action::ResetRunning
            | Action::ResetRunningAll
            | Action::NextDataOrder
            | Action::FoldCheck
            | Action::PreciseBn
            | Action::ApplyPreciseBn
            | Action::ApplyPreciseBnAll
            | Action::PhantomProbe
            | Action::SaveCheckpoint
            | Action::RestoreCheckpoint
            | Action::Restart => true,
            Action::SelectPrev
            | Action::SelectNext
            | Action::SortLayers
            | Action::TableView
            | Action::CompareColumn
            | Action::Freeze
            | Action::NextChannel
            | Action::PrevChannel
            | Action::HeatmapValue
            | Action::NextPage
            | Action::PrevPage
            | Action::ColumnsLeft
            | Action::ColumnsRight
            | Action::ToggleRecording
            | Action::ReplayPlayPause
            | Action::ReplayFaster
            | Action::ReplaySlower
            | Action::ReplayStepForward
            | Action::ReplayStepBack
            | Action::ReplayStart
            | Action::ReplayEnd
            | Action::ReplaySeek
            | Action::ReplayNextMark
            | Action::ReplayPrevMark
            | Action::ReplayNextEpoch
            | Action::ReplayPrevEpoch
            | Action::WindowNext
            | Action::WindowEntry
            | Action::CursorToggle
            | Action::CursorLeft
            | Action::CursorRight
            | Action::CursorBack
            | Action::CursorForward
            | Action::MarkersToggle
            | Action::Help
            | Action::Close
            | Action::Quit => false,
        }
    }
}

/// Where a binding applies: a live run takes run controls, a replay takes replay controls, and
/// the view keys work in both (so one key can mean "pause" live and "play/pause" in a replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Both,
    Live,
    Replay,
}

impl Context {
    fn includes(self, other: Context) -> bool {
        self == Context::Both || other == Context::Both || self == other
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Ctrl(char),
    Up,
    Down,
    Left,
    Right,
    Tab,
    BackTab,
    Esc,
    Home,
    End,
}

pub struct Binding {
    pub context: Context,
    pub keys: &'static [Key],
    pub action: Action,
    pub help: &'static str,
    /// Footer hint, key included ("t train/eval"), for the main keys only.
    pub footer: Option<&'static str>,
}

use Context::{Both, Live, Replay};
use Key::*;

#[rustfmt::skip]
pub const BINDINGS: &[Binding] = &[
    Binding { context: Both, keys: &[Up, Char('k')], action: Action::SelectPrev, help: "select the layer above", footer: None },
    Binding { context: Both, keys: &[Down, Char('j')], action: Action::SelectNext, help: "select the layer below", footer: Some("↑↓ layer") },
    Binding { context: Both, keys: &[Char('S')], action: Action::SortLayers, help: "sort the layers: network order -> worst drift (Ξ) -> name", footer: Some("S sort") },
    Binding { context: Both, keys: &[Char('v')], action: Action::TableView, help: "layers table: metric columns <-> map of D/D0 over time", footer: Some("v D/D0 map") },
    Binding { context: Both, keys: &[Char('B')], action: Action::CompareColumn, help: "layers table with --compare: B's D, ‖w‖, θ -> A−B -> none", footer: None },
    Binding { context: Live, keys: &[Char('t')], action: Action::ToggleMode, help: "selected layer: TRAIN (batch stats) <-> EVAL (running stats)", footer: Some("t train/eval") },
    Binding { context: Live, keys: &[Char('T')], action: Action::ToggleModeAll, help: "all layers: EVAL, or TRAIN if all are EVAL already", footer: None },
    Binding { context: Live, keys: &[Char('+'), Char('=')], action: Action::MomentumUp, help: "BN momentum of the selected layer: up a 1-2-5 step", footer: Some("+- momentum") },
    Binding { context: Live, keys: &[Char('-'), Char('_')], action: Action::MomentumDown, help: "BN momentum of the selected layer: down a 1-2-5 step", footer: None },
    Binding { context: Live, keys: &[Char('m')], action: Action::MomentumEntry, help: "type an exact BN momentum for the selected layer", footer: Some("m set m") },
    Binding { context: Live, keys: &[Char('M')], action: Action::MomentumEntryAll, help: "type an exact BN momentum for all layers", footer: None },
    Binding { context: Live, keys: &[Char(']')], action: Action::LrUp, help: "learning rate x2", footer: Some("[] lr") },
    Binding { context: Live, keys: &[Char('[')], action: Action::LrDown, help: "learning rate /2", footer: None },
    Binding { context: Live, keys: &[Char(' '), Char('p')], action: Action::PauseResume, help: "pause / resume training", footer: Some("space pause") },
    Binding { context: Live, keys: &[Char('s')], action: Action::StepOnce, help: "one training step (while paused)", footer: Some("s step") },
    Binding { context: Both, keys: &[Char('f')], action: Action::Freeze, help: "freeze the view (training goes on); again to catch up", footer: Some("f freeze") },
    Binding { context: Live, keys: &[Char('r')], action: Action::ResetRunning, help: "reset the selected layer's running stats (mean 0, var 1)", footer: None },
    Binding { context: Live, keys: &[Char('R')], action: Action::ResetRunningAll, help: "reset the running statistics of all layers", footer: None },
    Binding { context: Both, keys: &[Char('c')], action: Action::NextChannel, help: "next channel in the mean and variance charts", footer: None },
    Binding { context: Both, keys: &[Char('C')], action: Action::PrevChannel, help: "previous channel in the mean and variance charts", footer: None },
    Binding { context: Both, keys: &[Char('d')], action: Action::HeatmapValue, help: "heatmap shows d or log r", footer: None },
    Binding { context: Both, keys: &[Tab], action: Action::NextPage, help: "next page of charts (when they do not all fit)", footer: Some("Tab charts") },
    Binding { context: Both, keys: &[BackTab], action: Action::PrevPage, help: "previous page of charts", footer: None },
    Binding { context: Both, keys: &[Left, Char('h')], action: Action::ColumnsLeft, help: "scroll the layers table left (narrow terminals)", footer: None },
    Binding { context: Both, keys: &[Right, Char('l')], action: Action::ColumnsRight, help: "scroll the layers table right", footer: None },
    Binding { context: Both, keys: &[Char('z')], action: Action::WindowNext, help: "time window of the charts: whole run -> last 1k -> 10k -> 100k -> the typed one", footer: Some("z window") },
    Binding { context: Both, keys: &[Char('Z')], action: Action::WindowEntry, help: "type a time window: N (the last N steps) or FROM..TO", footer: None },
    Binding { context: Both, keys: &[Char('x')], action: Action::CursorToggle, help: "step cursor on/off: every chart shows its values at the cursor's step", footer: Some("x cursor") },
    Binding { context: Both, keys: &[Char('<')], action: Action::CursorLeft, help: "step cursor one dot column left", footer: None },
    Binding { context: Both, keys: &[Char('>')], action: Action::CursorRight, help: "step cursor one dot column right", footer: None },
    Binding { context: Both, keys: &[Char('{')], action: Action::CursorBack, help: "step cursor a tenth of the window left", footer: None },
    Binding { context: Both, keys: &[Char('}')], action: Action::CursorForward, help: "step cursor a tenth of the window right", footer: None },
    Binding { context: Both, keys: &[Char('i')], action: Action::MarkersToggle, help: "show / hide the control markers in the charts", footer: None },
    Binding { context: Live, keys: &[Char('o')], action: Action::NextDataOrder, help: "data order: shuffled -> class_sorted -> clips -> drifting", footer: Some("o order") },
    Binding { context: Live, keys: &[Char('F')], action: Action::FoldCheck, help: "fold each conv + BN into one conv: check it on the held-out set and time it", footer: None },
    Binding { context: Live, keys: &[Char('P')], action: Action::PreciseBn, help: "PreciseBN: population statistics now, and a three-way held-out evaluation", footer: None },
    Binding { context: Live, keys: &[Char('a')], action: Action::ApplyPreciseBn, help: "write PreciseBN statistics into the selected layer's running stats", footer: None },
    Binding { context: Live, keys: &[Char('A')], action: Action::ApplyPreciseBnAll, help: "write PreciseBN statistics into every layer's running stats", footer: None },
    Binding { context: Live, keys: &[Char('b')], action: Action::PhantomProbe, help: "phantom-gradient probe now: bias gradient in train / stop-gradient / eval mode", footer: None },
    Binding { context: Live, keys: &[Char('K')], action: Action::SaveCheckpoint, help: "save a checkpoint: weights, optimizer state, running stats, modes, lr, data position (in memory)", footer: None },
    Binding { context: Live, keys: &[Char('U')], action: Action::RestoreCheckpoint, help: "restore the latest checkpoint: the run goes back to its step", footer: None },
    Binding { context: Live, keys: &[Char('!')], action: Action::Restart, help: "restart the run from step 0 with the same configuration (asks y/n)", footer: None },
    Binding { context: Live, keys: &[Char('w')], action: Action::ToggleRecording, help: "pause / resume recording the session file", footer: Some("w rec") },
    Binding { context: Replay, keys: &[Char(' '), Char('p')], action: Action::ReplayPlayPause, help: "play / pause the replay", footer: Some("space play") },
    Binding { context: Replay, keys: &[Char(']')], action: Action::ReplayFaster, help: "replay speed x2 (up to 64x)", footer: Some("[] speed") },
    Binding { context: Replay, keys: &[Char('[')], action: Action::ReplaySlower, help: "replay speed /2 (down to 0.25x)", footer: None },
    Binding { context: Replay, keys: &[Char('.')], action: Action::ReplayStepForward, help: "step forward one recorded snapshot (pauses)", footer: Some("., step") },
    Binding { context: Replay, keys: &[Char(',')], action: Action::ReplayStepBack, help: "step back one recorded snapshot (pauses)", footer: None },
    Binding { context: Replay, keys: &[Char('g'), Home], action: Action::ReplayStart, help: "jump to the start", footer: None },
    Binding { context: Replay, keys: &[Char('G'), End], action: Action::ReplayEnd, help: "jump to the end", footer: Some("gG ends") },
    Binding { context: Replay, keys: &[Char(':')], action: Action::ReplaySeek, help: "type a step to seek to", footer: Some(": seek") },
    Binding { context: Replay, keys: &[Char('n')], action: Action::ReplayNextMark, help: "jump to the next applied control (mode, momentum, lr, reset, ...)", footer: Some("nN controls") },
    Binding { context: Replay, keys: &[Char('N')], action: Action::ReplayPrevMark, help: "jump to the previous applied control", footer: None },
    Binding { context: Replay, keys: &[Char('e')], action: Action::ReplayNextEpoch, help: "jump to the next epoch marker", footer: None },
    Binding { context: Replay, keys: &[Char('E')], action: Action::ReplayPrevEpoch, help: "jump to the previous epoch marker", footer: None },
    Binding { context: Both, keys: &[Char('?')], action: Action::Help, help: "this help (j/k scroll it; q, Esc or any other key closes it)", footer: Some("? help") },
    Binding { context: Both, keys: &[Esc], action: Action::Close, help: "close the help or cancel typing", footer: None },
    Binding { context: Both, keys: &[Char('q'), Ctrl('c')], action: Action::Quit, help: "quit (a live run stops and ends cleanly; an attached viewer detaches)", footer: Some("q quit") },
];

impl Key {
    fn matches(self, event: &KeyEvent) -> bool {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let alt = event.modifiers.contains(KeyModifiers::ALT);
        match (self, event.code) {
            (Char(c), KeyCode::Char(got)) => !ctrl && !alt && c == got,
            (Ctrl(c), KeyCode::Char(got)) => ctrl && c.eq_ignore_ascii_case(&got),
            (Up, KeyCode::Up) | (Down, KeyCode::Down) | (Left, KeyCode::Left) => true,
            (Right, KeyCode::Right) | (Esc, KeyCode::Esc) | (BackTab, KeyCode::BackTab) => true,
            (Tab, KeyCode::Tab) => !event.modifiers.contains(KeyModifiers::SHIFT),
            (Home, KeyCode::Home) | (End, KeyCode::End) => true,
            _ => false,
        }
    }

    /// A press of this key, as a terminal reports it (tests drive the dashboard with these).
    pub fn press(self) -> KeyEvent {
        let (code, modifiers) = match self {
            Char(c) => (KeyCode::Char(c), KeyModifiers::NONE),
            Ctrl(c) => (KeyCode::Char(c), KeyModifiers::CONTROL),
            Up => (KeyCode::Up, KeyModifiers::NONE),
            Down => (KeyCode::Down, KeyModifiers::NONE),
            Left => (KeyCode::Left, KeyModifiers::NONE),
            Right => (KeyCode::Right, KeyModifiers::NONE),
            Tab => (KeyCode::Tab, KeyModifiers::NONE),
            BackTab => (KeyCode::BackTab, KeyModifiers::SHIFT),
            Esc => (KeyCode::Esc, KeyModifiers::NONE),
            Home => (KeyCode::Home, KeyModifiers::NONE),
            End => (KeyCode::End, KeyModifiers::NONE),
        };
        KeyEvent::new(code, modifiers)
    }

    pub fn label(self, ascii: bool) -> String {
        match self {
            Char(' ') => "space".into(),
            Char(c) => c.to_string(),
            Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            Up => if ascii { "Up" } else { "↑" }.into(),
            Down => if ascii { "Down" } else { "↓" }.into(),
            Left => if ascii { "Left" } else { "←" }.into(),
            Right => if ascii { "Right" } else { "→" }.into(),
            Tab => "Tab".into(),
            BackTab => "Shift-Tab".into(),
            Esc => "Esc".into(),
            Home => "Home".into(),
            End => "End".into(),
        }
    }
}

/// The action bound to a key press in `context`, if any. Key releases are ignored (terminals that
/// report them would otherwise apply every control twice).
pub fn action_for(event: &KeyEvent, context: Context) -> Option<Action> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    bindings(context)
        .find(|b| b.keys.iter().any(|k| k.matches(event)))
        .map(|b| b.action)
}

/// The bindings that apply in `context`.
pub fn bindings(context: Context) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| b.context.includes(context))
}

/// "↑ k" style label of every key of a binding.
pub fn keys_label(binding: &Binding, ascii: bool) -> String {
    let labels: Vec<String> = binding.keys.iter().map(|k| k.label(ascii)).collect();
    labels.join(" ")
}

/// The key list as Markdown table rows (the README embeds this; a test keeps them equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| keys | in | action |\n|---|---|---|\n");
    for b in BINDINGS {
        let keys: Vec<String> = b
            .keys
            .iter()
            .map(|k| format!("`{}`", k.label(false)))
            .collect();
        let context = match b.context {
            Both => "both",
            Live => "live",
            Replay => "replay",
        };
        out.push_str(&format!(
            "| {} | {context} | {} |\n",
            keys.join(" "),
            b.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn every_key_is_bound_once_per_context() {
        for context in [Live, Replay] {
            let all: Vec<Key> = bindings(context)
                .flat_map(|b| b.keys.iter().copied())
                .collect();
            for (i, a) in all.iter().enumerate() {
                assert!(
                    !all[i + 1..].contains(a),
                    "{a:?} is bound twice in {context:?}"
                );
            }
        }
    }

    #[test]
    fn dispatch_reads_the_table() {
        for b in BINDINGS {
            for k in b.keys {
                let event = k.press();
                let context = if b.context == Both { Live } else { b.context };
                assert_eq!(action_for(&event, context), Some(b.action), "{k:?}");
            }
        }
    }

    #[test]
    fn shifted_letters_modifiers_and_releases() {
        // Terminals report 'T' with SHIFT; it must still be T, not t.
        let shift_t = press(KeyCode::Char('T'), KeyModifiers::SHIFT);
        assert_eq!(action_for(&shift_t, Live), Some(Action::ToggleModeAll));
        // The same key means different things live and in a replay.
        let space = press(KeyCode::Char(' '), KeyModifiers::NONE);
        assert_eq!(action_for(&space, Live), Some(Action::PauseResume));
        assert_eq!(action_for(&space, Replay), Some(Action::ReplayPlayPause));
        assert_eq!(
            action_for(&press(KeyCode::Char('t'), KeyModifiers::NONE), Replay),
            None
        );
        let ctrl_t = press(KeyCode::Char('t'), KeyModifiers::CONTROL);
        assert_eq!(action_for(&ctrl_t, Live), None);
        let mut release = press(KeyCode::Char('t'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(&release, Live), None);
        assert_eq!(
            action_for(&press(KeyCode::Char('Y'), KeyModifiers::NONE), Live),
            None
        );
    }

    #[test]
    fn readme_lists_the_key_table() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md's key table is out of date; paste keys::markdown_table():\n{}",
            markdown_table()
        );
    }
}
