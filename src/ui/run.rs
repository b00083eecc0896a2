//! The dashboard's loop: events from the run, key presses and signals in; controls out; a frame
//! at most every 1/fps seconds and only when something changed.
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{never, select, Receiver, Sender};
use ratatui::crossterm::event::{self, Event as TermEvent};

use crate::protocol::{Command, Control, EndReason, Feed};
use crate::signals::on_stop_signals;

use super::app::{App, StatusKind};
use super::compare::Comparison;
use super::keys::Context;
use super::options::UiOptions;
use super::terminal::TerminalSession;
use super::theme::Theme;
use super::view;

/// How the dashboard ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The signal that closed it (SIGINT, SIGTERM, SIGHUP), if any.
    pub signal: Option<i32>,
    pub frames: u64,
    pub bytes_written: u64,
    pub elapsed: Duration,
    /// The last control sent was `Quit` (the user pressed q or Ctrl-C).
    pub quit_sent: bool,
    /// How the run ended, if its end record arrived while the dashboard was open.
    pub end: Option<(EndReason, Option<String>)>,
}

/// The frame-rate cap: a frame is due when something changed and a full interval has passed since
/// the last one.
struct FrameClock {
    interval: Duration,
    last: Option<Instant>,
}

impl FrameClock {
    fn new(interval: Duration) -> FrameClock {
        FrameClock {
            interval,
            last: None,
        }
    }

    /// When the loop should wake up to draw (or just to expire a status message).
    fn wake_at(&self, now: Instant, dirty: bool) -> Instant {
        match (dirty, self.last) {
            (true, Some(last)) => (last + self.interval).max(now),
            (true, None) => now,
            (false, _) => now + Duration::from_secs(1),
        }
    }

    fn due(&self, now: Instant, dirty: bool) -> bool {
        dirty && self.last.is_none_or(|last| now >= last + self.interval)
    }

    fn drawn(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

/// Read terminal input on its own thread, so the loop can wait on input, events and signals at once.
fn spawn_input_reader() -> Receiver<std::io::Result<TermEvent>> {
    let (tx, rx) = crossbeam_channel::bounded(64);
    thread::Builder::new()
        .name("bntop-input".into())
        .spawn(move || loop {
            let event = event::read();
            let failed = event.is_err();
            if tx.send(event).is_err() || failed {
                break;
            }
        })
        .map_or_else(|_| never(), |_| rx)
}

/// Turn SIGINT, SIGTERM and SIGHUP into messages, so they end the loop and the terminal is restored
/// on the normal path.
fn spawn_signal_forwarder() -> Result<Receiver<i32>, String> {
    let (tx, rx) = crossbeam_channel::bounded(4);
    // After the dashboard has gone nobody listens; a late signal is dropped.
    on_stop_signals(move |signal| {
        let _ = tx.try_send(signal);
    })?;
    Ok(rx)
}

/// Run the dashboard until the user quits or a signal arrives. Key presses become `commands` for
/// the source: run controls for a live run (`Context::Live`), replay controls for a replay.
pub fn run(
    feed: &Receiver<Feed>,
    commands: &Sender<Command>,
    options: UiOptions,
    context: Context,
) -> Result<RunOutcome, String> {
    run_comparing(feed, commands, options, context, None)
}

/// [`run`], with run B (`--compare`) drawn behind the run the feed brings.
pub fn run_comparing(
    feed: &Receiver<Feed>,
    commands: &Sender<Command>,
    options: UiOptions,
    context: Context,
    compare: Option<Comparison>,
) -> Result<RunOutcome, String> {
    let signals = spawn_signal_forwarder()?;
    let mut session = TerminalSession::enter(options.mouse)?;
    let input = spawn_input_reader();
    let theme = Theme::new(&options);
    let mut app = App::for_context(context);
    app.readonly = options.readonly;
    app.compare = compare;
    let started = Instant::now();
    let mut clock = FrameClock::new(options.frame_interval());
    let mut feed = feed.clone();
    let mut outcome = RunOutcome {
        signal: None,
        frames: 0,
        bytes_written: 0,
        elapsed: Duration::ZERO,
        quit_sent: false,
        end: None,
    };
    let mut dirty = true;
    let mut source_open = true;
    loop {
        let wake = clock.wake_at(Instant::now(), dirty);
        select! {
            recv(feed) -> message => match message {
                Ok(message) => {
                    app.on_feed(&message, Instant::now());
                    dirty = true;
                }
                Err(_) => {
                    feed = never();
                    source_open = false;
                    on_source_closed(&mut app);
                    dirty = true;
                }
            },
            recv(input) -> message => match message {
                Ok(Ok(event)) => {
                    let quit_sent = &mut outcome.quit_sent;
                    dirty |= on_terminal(event, &mut app, &mut session, commands, source_open, quit_sent)?;
                }
                Ok(Err(e)) => return Err(format!("cannot read the terminal: {e}")),
                Err(_) => return Err("terminal input closed".into()),
            },
            recv(signals) -> signal => {
                outcome.signal = signal.ok();
                break;
            },
            recv(crossbeam_channel::at(wake)) -> _ => {},
        }
        if app.quit {
            break;
        }
        let now = Instant::now();
        dirty |= app.expire_status(now);
        if clock.due(now, dirty) {
            let mut graphs = Vec::new();
            session
                .draw(|frame| graphs = view::draw_measured(frame, &app, &theme))
                .map_err(|e| format!("cannot draw: {e}"))?;
            app.chart.graphs = graphs;
            outcome.frames += 1;
            clock.drawn(now);
            dirty = false;
        }
    }
    outcome.end = app.live.end.as_ref().map(|e| (e.reason, e.message.clone()));
    outcome.bytes_written = session.bytes_written.load(Ordering::Relaxed);
    outcome.elapsed = started.elapsed();
    drop(session);
    Ok(outcome)
}

/// The feed closed: say so unless the run's end record came first.
fn on_source_closed(app: &mut App) {
    if app.live.end.is_none() {
        app.status = Some(super::app::Status {
            text:
                "the source closed without an end record (run stopped or connection lost); q quits"
                    .into(),
            kind: StatusKind::Error,
            since: Instant::now(),
        });
    }
}

/// One terminal event: keys become commands for the source, mouse and resize events change the
/// view (commands reach the source only while it is open). Returns whether the frame changed;
/// `quit_sent` records whether the last command was Quit.
fn on_terminal(
    event: TermEvent,
    app: &mut App,
    session: &mut TerminalSession,
    commands: &Sender<Command>,
    source_open: bool,
    quit_sent: &mut bool,
) -> Result<bool, String> {
    match event {
        TermEvent::Key(key) => {
            for command in app.on_key(&key, Instant::now()) {
                *quit_sent = command == Command::Run(Control::Quit);
                send(commands, command, source_open, app);
            }
            Ok(true)
        }
        TermEvent::Mouse(mouse) => Ok(app.on_mouse(&mouse, Instant::now())),
        TermEvent::Resize(_, _) => {
            session
                .terminal
                .autoresize()
                .map_err(|e| format!("cannot resize: {e}"))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn send(commands: &Sender<Command>, command: Command, source_open: bool, app: &mut App) {
    let delivered = source_open && commands.send(command).is_ok();
    if !delivered && !app.quit {
        app.status = Some(super::app::Status {
            text: "the source is not taking commands any more (it ended)".into(),
            kind: StatusKind::Error,
            since: Instant::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events arriving every millisecond for a second give at most fps frames.
    #[test]
    fn frames_are_capped_at_the_frame_rate() {
        let mut clock = FrameClock::new(UiOptions::default().frame_interval());
        let start = Instant::now();
        let mut frames = 0;
        for ms in 0..1000 {
            let now = start + Duration::from_millis(ms);
            if clock.due(now, true) {
                clock.drawn(now);
                frames += 1;
            }
        }
        assert_eq!(frames, 10);
        // Nothing changed: no frame, and the loop sleeps instead of spinning.
        let later = start + Duration::from_secs(5);
        assert!(!clock.due(later, false));
        assert!(clock.wake_at(later, false) > later);
        assert_eq!(clock.wake_at(later, true), later);
    }
}
