//! UI state and key handling: which layer and channel are selected, freeze, help, typed entry,
//! and the status line that gives every key visible feedback. Keys become `Control`s here; the
//! run loop sends them to whatever source drives the dashboard.
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::protocol::{
    BnMode, Command, Control, DataOrder, EndReason, Event, Feed, LinkStatus, RecordingStatus,
    ReplayCommand, ReplayStatus,
};

use super::compare::{CompareColumn, Comparison};
use super::keys::{action_for, Action, Context};
use super::layer_order::{self, LayerSort};
use super::state::{Notice, RunState};
use super::time_window::ChartView;

/// BN momentum steps for +/-: 1-2-5 per decade, down to 0 (running statistics frozen).
pub const MOMENTUM_LADDER: &[f32] = &[
    0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];
/// The footer's answer to a run control pressed in a read-only viewer.
pub const READONLY_NOTICE: &str = "read-only viewer: controls are not sent";
/// How long a status message stays up.
const STATUS_LIFETIME: Duration = Duration::from_secs(6);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeatmapValue {
    D,
    LogR,
}

/// What the footer prompt is typing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// BN momentum for a layer (`None`: all layers).
    Momentum(Option<usize>),
    /// A step to seek a replay to.
    Seek,
    /// "restart from step 0? y/n": `y` sends the restart, any other key cancels.
    ConfirmRestart,
    /// A time window for the charts (`Z`).
    Window,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

#[derive(Clone, Debug)]
pub struct Status {
    pub text: String,
    pub kind: StatusKind,
    pub since: Instant,
}

pub struct App {
    pub live: RunState,
    /// The view while frozen; `live` keeps taking events.
    pub frozen: Option<Box<RunState>>,
    pub selected: usize,
    pub channel: usize,
    pub heatmap: HeatmapValue,
    /// Chart page and table scroll: views take them modulo what fits.
    pub page: usize,
    pub column_offset: usize,
    pub help: bool,
    /// First help line shown (the key list is longer than a small terminal).
    pub help_scroll: u16,
    pub prompt: Option<Prompt>,
    pub status: Option<Status>,
    pub quit: bool,
    /// Live run or replay: which keys apply.
    pub context: Context,
    /// The session file being written (live runs).
    pub recording: Option<RecordingStatus>,
    /// Where a replay stands.
    pub replay: Option<ReplayStatus>,
    /// A remote viewer's lost connection, while it is being retried (the header's badge).
    pub link_lost: Option<LinkStatus>,
    /// Watch only: run controls are refused here.
    pub readonly: bool,
    /// The layers table's row order, and whether it shows the metric columns or the D/D0 map.
    pub sort: LayerSort,
    pub table_view: TableView,
    /// The charts' time window, step cursor and control markers.
    pub chart: ChartView,
    /// Run B (`--compare`): ghost lines in the charts, and what the table shows of it (`B`).
    pub compare: Option<Comparison>,
    pub compare_column: CompareColumn,
}

/// What the layers table shows right of the drift column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TableView {
    /// The metric columns (r, d, ReLU, weights, ...), scrolled sideways with ←/→.
    #[default]
    Columns,
    /// Each layer's D/D0 over the run, one row per layer: the overview of layers x time.
    DriftMap,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// A dashboard for a live run.
    pub fn new() -> App {
        App::for_context(Context::Live)
    }

    pub fn for_context(context: Context) -> App {
        App {
            live: RunState::new(),
            frozen: None,
            selected: 0,
            channel: 0,
            heatmap: HeatmapValue::D,
            page: 0,
            column_offset: 0,
            help: false,
            help_scroll: 0,
            prompt: None,
            status: None,
            quit: false,
            context,
            recording: None,
            link_lost: None,
            replay: None,
            readonly: false,
            sort: LayerSort::Network,
            table_view: TableView::Columns,
            chart: ChartView::default(),
            compare: None,
            compare_column: CompareColumn::default(),
        }
    }

    /// The state the views draw: frozen or live.
    pub fn view(&self) -> &RunState {
        self.frozen.as_deref().unwrap_or(&self.live)
    }

    pub fn on_feed(&mut self, feed: &Feed, now: Instant) {
        match feed {
            Feed::Event(event) => self.on_event(event, now),
            Feed::Reset => {
                self.live = RunState::new();
                self.frozen = None;
            }
            Feed::Replay(status) => self.replay = Some(status.clone()),
            Feed::Link(status) => self.on_link(status, now),
            Feed::Recording(status) => {
                if let Some(error) = &status.error {
                    self.say(
                        format!("recording stopped: {error}"),
                        StatusKind::Error,
                        now,
                    );
                }
                self.recording = Some(status.clone());
            }
        }
    }

    /// A remote viewer's connection: the header's badge, and the footer says why and when the
    /// next try is.
    fn on_link(&mut self, status: &LinkStatus, now: Instant) {
        match status {
            LinkStatus::Lost {
                retry_in_ms,
                reason,
                ..
            } => {
                // The retry first: a narrow footer cuts the end of a long reason.
                let text = format!(
                    "connection lost, retry in {:.1} s (q quits): {reason}",
                    *retry_in_ms as f64 / 1000.0
                );
                self.say(text, StatusKind::Error, now);
                self.link_lost = Some(status.clone());
            }
            LinkStatus::Connected => {
                self.say("reconnected", StatusKind::Info, now);
                self.link_lost = None;
            }
        }
    }

    pub fn on_event(&mut self, event: &Event, now: Instant) {
        let Some(notice) = self.live.apply(event) else {
            return;
        };
        let (text, kind) = match notice {
            Notice::Control(mark) => match mark.rejected {
                None => (
                    format!("step {}: {}", mark.step, mark.label),
                    StatusKind::Info,
                ),
                Some(why) => (format!("rejected {}: {why}", mark.label), StatusKind::Error),
            },
            Notice::Divergence(label) => (label, StatusKind::Error),
            Notice::Folding(f) => (
                format!(
                    "folded conv+BN: max |Δlogit| {:.1e} over {} images; {:.0} vs {:.0} µs/image ({:.2}x)",
                    f.max_abs_diff,
                    f.samples,
                    f.folded_us_per_image,
                    f.unfolded_us_per_image,
                    f.unfolded_us_per_image / f.folded_us_per_image
                ),
                StatusKind::Info,
            ),
            Notice::End(end) => {
                let what = match end.reason {
                    EndReason::Completed => "run completed".to_string(),
                    EndReason::Quit => "run stopped".to_string(),
                    EndReason::Diverged => "run diverged".to_string(),
                    EndReason::Error => "run failed".to_string(),
                };
                let detail = end.message.map(|m| format!(": {m}")).unwrap_or_default();
                let kind = match end.reason {
                    EndReason::Completed | EndReason::Quit => StatusKind::Info,
                    _ => StatusKind::Error,
                };
                (
                    format!("{what} at step {}{detail}; q quits", end.step),
                    kind,
                )
            }
        };
        self.say(text, kind, now);
    }

    pub(super) fn say(&mut self, text: impl Into<String>, kind: StatusKind, now: Instant) {
        self.status = Some(Status {
            text: text.into(),
            kind,
            since: now,
        });
    }

    /// Drop a status message once it has been up long enough.
    pub fn expire_status(&mut self, now: Instant) -> bool {
        let expired = self
            .status
            .as_ref()
            .is_some_and(|s| now.duration_since(s.since) > STATUS_LIFETIME);
        if expired {
            self.status = None;
        }
        expired
    }

    /// Handle one key press; returns the commands for the source (run controls live, replay
    /// controls in a replay).
    pub fn on_key(&mut self, key: &KeyEvent, now: Instant) -> Vec<Command> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        if self.prompt.is_some() {
            return self.on_prompt_key(key, now);
        }
        let Some(action) = action_for(key, self.context) else {
            return Vec::new();
        };
        if self.help {
            match action {
                Action::SelectNext => self.help_scroll = self.help_scroll.saturating_add(1),
                Action::SelectPrev => self.help_scroll = self.help_scroll.saturating_sub(1),
                // Ctrl-C quits from anywhere; q closes the help, as in htop and btop.
                Action::Quit if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    return self.on_action(action, now)
                }
                // Any other key closes the help, as in htop.
                _ => self.help = false,
            }
            return Vec::new();
        }
        self.on_action(action, now)
    }

    fn on_action(&mut self, action: Action, now: Instant) -> Vec<Command> {
        if let Some(command) = self.replay_command(action) {
            return command.into_iter().collect();
        }
        if self.chart_action(action, now) {
            return Vec::new();
        }
        if action == Action::Quit {
            // Quitting always works and needs no feedback (it also detaches a viewer).
            self.quit = true;
            return vec![Command::Run(Control::Quit)];
        }
        if action.controls_the_run() {
            // Refused before anything else: no prompt, no "sent", no ladder-end or pause hints.
            if self.refused_read_only(now) {
                return Vec::new();
            }
            return match self.request(action) {
                Request::Send(controls) => self.send(controls, now),
                Request::Prompt(kind) => {
                    self.open_prompt(kind);
                    Vec::new()
                }
                Request::Refuse(why) => {
                    self.say(why, StatusKind::Error, now);
                    Vec::new()
                }
            };
        }
        self.on_view_action(action, now)
    }

    /// What a run-control key asks for, from the action and the state alone.
    fn request(&self, action: Action) -> Request {
        let layers = self.live.layers.len();
        let selected = self.selected.min(layers.saturating_sub(1));
        let one = |control: Control| Request::Send(vec![control]);
        match action {
            Action::ToggleMode => self.mode_toggle(Some(selected)),
            Action::ToggleModeAll => self.mode_toggle(None),
            Action::MomentumUp | Action::MomentumDown => {
                self.momentum_step(selected, action == Action::MomentumUp)
            }
            Action::MomentumEntry | Action::MomentumEntryAll => {
                let layer = (action == Action::MomentumEntry).then_some(selected);
                let probe = Control::SetMomentum {
                    layer,
                    momentum: 0.1,
                };
                match self.unsupported(&probe) {
                    Some(refusal) => Request::Refuse(refusal),
                    None => Request::Prompt(PromptKind::Momentum(layer)),
                }
            }
            Action::LrUp => one(Control::SetLr {
                lr: self.live.lr * 2.0,
            }),
            Action::LrDown => one(Control::SetLr {
                lr: self.live.lr / 2.0,
            }),
            Action::PauseResume => one(if self.live.paused {
                Control::Resume
            } else {
                Control::Pause
            }),
            Action::StepOnce if self.live.paused => one(Control::Step),
            Action::StepOnce => {
                Request::Refuse("single steps work while paused: press space first".into())
            }
            Action::ResetRunning => one(Control::ResetRunningStats {
                layer: Some(selected),
            }),
            Action::ResetRunningAll => one(Control::ResetRunningStats { layer: None }),
            Action::NextDataOrder => {
                let current =
                    DataOrder::from_name(&self.live.data_order).unwrap_or(DataOrder::Shuffled);
                one(Control::SetDataOrder {
                    order: current.next(),
                })
            }
            Action::FoldCheck => one(Control::FoldCheck),
            Action::PreciseBn => one(Control::PreciseBn),
            Action::ApplyPreciseBn => one(Control::ApplyPreciseBn {
                layer: Some(selected),
            }),
            Action::ApplyPreciseBnAll => one(Control::ApplyPreciseBn { layer: None }),
            Action::PhantomProbe => one(Control::PhantomProbe),
            Action::SaveCheckpoint => one(Control::SaveCheckpoint),
            Action::RestoreCheckpoint => one(Control::RestoreCheckpoint { from: None }),
            Action::Restart => match self.unsupported(&Control::Restart { from: None }) {
                Some(refusal) => Request::Refuse(refusal),
                None => Request::Prompt(PromptKind::ConfirmRestart),
            },
            // Not run controls (`controls_the_run` is false): handled by `on_view_action`.
            _ => Request::Send(Vec::new()),
        }
    }

    /// The other mode for one layer; for all (`None`): EVAL, or TRAIN if all are EVAL already.
    fn mode_toggle(&self, layer: Option<usize>) -> Request {
        let layers = &self.live.layers;
        let eval_now = match layer {
            Some(i) => layers.get(i).map(|l| l.mode == BnMode::Eval),
            None => Some(!layers.is_empty() && layers.iter().all(|l| l.mode == BnMode::Eval)),
        };
        let Some(eval_now) = eval_now else {
            return Request::Send(Vec::new());
        };
        let mode = if eval_now {
            BnMode::Train
        } else {
            BnMode::Eval
        };
        Request::Send(vec![Control::SetMode { layer, mode }])
    }

    /// The selected layer's momentum one step up or down the ladder, or why not.
    fn momentum_step(&self, selected: usize, up: bool) -> Request {
        let Some(layer) = self.live.layers.get(selected) else {
            return Request::Send(Vec::new());
        };
        match next_on_ladder(layer.momentum, up) {
            Some(momentum) => Request::Send(vec![Control::SetMomentum {
                layer: Some(selected),
                momentum,
            }]),
            None => {
                let end = if up { "largest (1)" } else { "smallest (0)" };
                let name = self.live.layer_name(Some(selected));
                Request::Refuse(format!("{name} momentum is already the {end}"))
            }
        }
    }

    /// The one way controls leave the dashboard, from keys and prompts alike: a read-only viewer
    /// refuses them, a control the producer does not handle is not sent, and the footer says
    /// what happened.
    fn send(&mut self, controls: Vec<Control>, now: Instant) -> Vec<Command> {
        if controls.is_empty() || self.refused_read_only(now) {
            return Vec::new();
        }
        if let Some(refusal) = controls.iter().find_map(|c| self.unsupported(c)) {
            self.say(refusal, StatusKind::Error, now);
            return Vec::new();
        }
        let labels: Vec<String> = controls.iter().map(|c| self.live.describe(c)).collect();
        self.say(
            format!("sent: {}", labels.join(", ")),
            StatusKind::Info,
            now,
        );
        controls.into_iter().map(Command::Run).collect()
    }

    /// A read-only viewer sends no run control; true (and the footer says so) if this is one.
    fn refused_read_only(&mut self, now: Instant) -> bool {
        if self.readonly {
            self.say(READONLY_NOTICE, StatusKind::Error, now);
        }
        self.readonly
    }

    /// Keys that act on this dashboard alone: selection, sorting, the view, the help, and the
    /// session file this process writes.
    fn on_view_action(&mut self, action: Action, now: Instant) -> Vec<Command> {
        match action {
            Action::SelectPrev | Action::SelectNext => {
                self.select_row(action == Action::SelectNext);
            }
            Action::SortLayers => {
                self.sort = self.sort.next();
                let text = format!("layers: {}", self.sort.label(false));
                self.say(text, StatusKind::Info, now);
            }
            Action::TableView => {
                self.table_view = match self.table_view {
                    TableView::Columns => TableView::DriftMap,
                    TableView::DriftMap => TableView::Columns,
                };
                let text = match self.table_view {
                    TableView::Columns => "layers table: metric columns (v: D/D0 map)",
                    TableView::DriftMap => {
                        "layers table: D/D0 of each layer over time (D where D0 is unknown)"
                    }
                };
                self.say(text, StatusKind::Info, now);
            }
            Action::Freeze => self.toggle_freeze(now),
            Action::CompareColumn => match self.compare {
                Some(_) => {
                    self.compare_column = self.compare_column.next();
                    self.say(self.compare_column.describe(), StatusKind::Info, now);
                }
                None => self.say(
                    "no run to compare with: start with --compare B.jsonl",
                    StatusKind::Error,
                    now,
                ),
            },
            Action::NextChannel | Action::PrevChannel => {
                self.step_channel(action == Action::NextChannel, now);
            }
            Action::HeatmapValue => {
                self.heatmap = match self.heatmap {
                    HeatmapValue::D => HeatmapValue::LogR,
                    HeatmapValue::LogR => HeatmapValue::D,
                };
            }
            Action::NextPage => self.page = self.page.wrapping_add(1),
            Action::PrevPage => self.page = self.page.wrapping_sub(1),
            Action::ColumnsLeft => self.column_offset = self.column_offset.saturating_sub(1),
            Action::ColumnsRight => self.column_offset = self.column_offset.saturating_add(1),
            Action::Help => {
                self.help = true;
                self.help_scroll = 0;
            }
            Action::Close => self.help = false,
            Action::ToggleRecording => return self.toggle_recording(now),
            // Run controls (`request`), replay controls (`replay_command`), chart keys
            // (`chart_action`) and quitting are handled before this.
            _ => {}
        }
        Vec::new()
    }

    /// Up or down the rows as shown (sorted or not).
    fn select_row(&mut self, down: bool) {
        let selected = self.selected.min(self.live.layers.len().saturating_sub(1));
        let order = layer_order::order(self.view(), self.sort);
        let row = order.iter().position(|&i| i == selected).unwrap_or(0);
        let row = if down {
            (row + 1).min(order.len().saturating_sub(1))
        } else {
            row.saturating_sub(1)
        };
        self.selected = order.get(row).copied().unwrap_or(0);
    }

    fn toggle_freeze(&mut self, now: Instant) {
        if self.frozen.take().is_some() {
            self.say("view live again", StatusKind::Info, now);
        } else {
            self.frozen = Some(Box::new(self.live.clone()));
            let text = format!(
                "view frozen at step {}; training goes on (f)",
                self.live.step
            );
            self.say(text, StatusKind::Info, now);
        }
    }

    /// The next or previous charted channel (`channel` indexes the charted channels: all of a
    /// narrow layer's).
    fn step_channel(&mut self, next: bool, now: Instant) {
        let selected = self.selected.min(self.live.layers.len().saturating_sub(1));
        let name = self.live.layer_name(Some(selected));
        let layer = self.live.layers.get(selected);
        let charted = layer.map_or(1, |l| l.channel_history.len().max(1));
        let c = self.channel.min(charted - 1);
        self.channel = if next {
            (c + 1) % charted
        } else {
            (c + charted - 1) % charted
        };
        let text = match layer {
            Some(l) => {
                let unit = super::view::unit(l.kind);
                let index = l.channel_history.get(self.channel).map_or(0, |h| h.channel);
                if charted < l.channels {
                    format!(
                        "{name}: {unit} {index} ({} of {charted} charted, evenly spaced over {})",
                        self.channel + 1,
                        l.channels
                    )
                } else {
                    format!("{name}: {unit} {index}")
                }
            }
            None => format!("{name}: channel {}", self.channel),
        };
        self.say(text, StatusKind::Info, now);
    }

    /// Only a dashboard that writes a session file has one to pause: not one run with
    /// --no-record, after a write failed, or an attached viewer (the server records).
    fn toggle_recording(&mut self, now: Instant) -> Vec<Command> {
        let Some(recording) = self
            .recording
            .as_ref()
            .filter(|r| r.path.is_some() && r.error.is_none())
        else {
            self.say(
                "this dashboard writes no session file: nothing to pause",
                StatusKind::Error,
                now,
            );
            return Vec::new();
        };
        let active = !recording.active;
        let what = if active { "resumed" } else { "paused" };
        self.say(format!("recording {what}"), StatusKind::Info, now);
        vec![Command::SetRecording(active)]
    }

    /// Why `control` is not sent, if the producer does not handle it (format 1.4: its header
    /// lists the controls it handles by their `"control"` names).
    pub fn unsupported(&self, control: &Control) -> Option<String> {
        let producer = self.live.header.as_ref()?.producer.as_ref()?;
        let name = control.name();
        (!producer.handles(name)).then(|| {
            format!(
                "{} does not handle {name} ({}): not sent",
                producer.name,
                self.live.describe(control)
            )
        })
    }

    pub(super) fn open_prompt(&mut self, kind: PromptKind) {
        self.prompt = Some(Prompt {
            kind,
            text: String::new(),
        });
    }

    /// The command for a replay action (`Some(None)`: handled here, nothing to send; `None`: not
    /// a replay action).
    fn replay_command(&mut self, action: Action) -> Option<Option<Command>> {
        let command = match action {
            Action::ReplayPlayPause => ReplayCommand::PlayPause,
            Action::ReplayFaster => ReplayCommand::Faster,
            Action::ReplaySlower => ReplayCommand::Slower,
            Action::ReplayStepForward => ReplayCommand::StepForward,
            Action::ReplayStepBack => ReplayCommand::StepBack,
            Action::ReplayStart => ReplayCommand::ToStart,
            Action::ReplayEnd => ReplayCommand::ToEnd,
            Action::ReplayNextMark => ReplayCommand::NextMark,
            Action::ReplayPrevMark => ReplayCommand::PrevMark,
            Action::ReplayNextEpoch => ReplayCommand::NextEpoch,
            Action::ReplayPrevEpoch => ReplayCommand::PrevEpoch,
            Action::ReplaySeek => {
                self.open_prompt(PromptKind::Seek);
                return Some(None);
            }
            _ => return None,
        };
        Some(Some(Command::Replay(command)))
    }

    fn on_prompt_key(&mut self, key: &KeyEvent, now: Instant) -> Vec<Command> {
        let Some(prompt) = self.prompt.as_mut() else {
            return Vec::new();
        };
        if prompt.kind == PromptKind::ConfirmRestart {
            self.prompt = None;
            if key.code == KeyCode::Char('y') {
                return self.send(vec![Control::Restart { from: None }], now);
            }
            self.say("restart cancelled", StatusKind::Info, now);
            return Vec::new();
        }
        match key.code {
            KeyCode::Esc => {
                self.prompt = None;
                self.say("entry cancelled", StatusKind::Info, now);
            }
            KeyCode::Backspace => {
                prompt.text.pop();
            }
            // Digits, and "none" for PyTorch's cumulative average (a window: 2.5k..10k); other
            // letters (q) do nothing.
            KeyCode::Char(c) if prompt_accepts(prompt.kind, c) && prompt.text.len() < 24 => {
                prompt.text.push(c);
            }
            KeyCode::Enter => {
                let kind = prompt.kind;
                let text = std::mem::take(&mut prompt.text);
                self.prompt = None;
                return self.submit_prompt(kind, text.trim(), now);
            }
            _ => {}
        }
        Vec::new()
    }

    /// What typed text asks for: a replay seek, or a momentum sent like any key's control.
    fn submit_prompt(&mut self, kind: PromptKind, text: &str, now: Instant) -> Vec<Command> {
        let parsed = match kind {
            // Answered by its first key (`on_prompt_key`).
            PromptKind::ConfirmRestart => return Vec::new(),
            PromptKind::Window => {
                self.window_entered(text, now);
                return Vec::new();
            }
            PromptKind::Seek => match text.parse::<u64>() {
                Ok(step) => return vec![Command::Replay(ReplayCommand::Seek(step))],
                Err(_) => Err(format!("a step is a whole number, got {text:?}")),
            },
            PromptKind::Momentum(layer) if text == "none" => {
                Ok(Control::SetMomentumCumulative { layer })
            }
            PromptKind::Momentum(layer) => match text.parse::<f32>() {
                Ok(momentum) if (0.0..=1.0).contains(&momentum) => {
                    Ok(Control::SetMomentum { layer, momentum })
                }
                _ => Err(format!(
                    "momentum must be a number in [0, 1] or none, got {text:?}"
                )),
            },
        };
        match parsed {
            Ok(control) => self.send(vec![control], now),
            Err(why) => {
                self.say(why, StatusKind::Error, now);
                Vec::new()
            }
        }
    }
}

/// What a run-control key asks for (`App::request`), before the read-only gate.
#[derive(Clone, Debug, PartialEq)]
enum Request {
    /// Controls to send (none: nothing to do, e.g. no layers yet).
    Send(Vec<Control>),
    /// A prompt whose answer ends in a control.
    Prompt(PromptKind),
    /// Nothing to send; the footer says why (the ladder's end, a step while running).
    Refuse(String),
}

/// Whether the prompt takes the typed character `c`.
fn prompt_accepts(kind: PromptKind, c: char) -> bool {
    let letters = match kind {
        PromptKind::Window => ".-kKmM",
        PromptKind::Momentum(_) | PromptKind::Seek => ".eE-+no",
        // Answered by its first key (`on_prompt_key`).
        PromptKind::ConfirmRestart => "",
    };
    c.is_ascii_digit() || letters.contains(c)
}

/// The next momentum up or down the ladder from `m` (which need not be on it).
pub fn next_on_ladder(m: f32, up: bool) -> Option<f32> {
    const TOLERANCE: f32 = 1e-6;
    if up {
        MOMENTUM_LADDER.iter().copied().find(|&x| x > m + TOLERANCE)
    } else {
        MOMENTUM_LADDER
            .iter()
            .rev()
            .copied()
            .find(|&x| x < m - TOLERANCE)
    }
}
