//! The hub of `bntop serve`: one thread owns the run's stream, from the built-in engine or an
//! external producer (a [`Source`]). It records every event, keeps a bounded backlog so a viewer
//! that attaches mid-run gets full charts at once, and fans each event out to the viewers' queues
//! without ever waiting for a viewer. Controls from viewers go to the source; their echoes come
//! back as events, so every viewer and the recording see them.
//!
//! The hub rejects a control itself, with the same kind of echo (a control record with the
//! reason), when it would end the run for everyone (a viewer's `quit`, unless
//! `serve --allow-viewer-quit`), when the producer's header does not list it, or when the source
//! will not take it (a producer that does not read its controls). A source that stops without an
//! end record, or does not end in time after `quit`, gets one from the hub.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};

use super::backlog::Backlog;
use super::error::RemoteError;
use super::log::log;
use super::source::Source;
use crate::protocol::{Control, ControlEvent, EndReason, Event, Producer, RecordingPolicy, RunEnd};
use crate::session::decimator::Decimator;
use crate::session::Recorder;

/// What viewers receive of the live stream: the dashboard draws at most 10 frames a second, so
/// 10 snapshots a second (per-channel arrays every second) keep it full while a viewer over SSH
/// costs tens of KB/s instead of the raw stream's few MB/s. The recording keeps its own policy.
pub const VIEWER_POLICY: RecordingPolicy = RecordingPolicy {
    snapshot_interval_s: 0.1,
    channel_arrays_interval_s: 1.0,
};
/// Events per viewer waiting to be written; beyond this its snapshots are dropped.
pub const VIEWER_QUEUE: usize = 8192;
/// Bytes per viewer waiting to be written, beyond which its snapshots are dropped too: an
/// external producer's snapshots may be megabytes each, and a slow link must not hold hundreds.
pub const VIEWER_BYTES: usize = 16 << 20;
/// How long to wait for the end record once the run was told to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Why a viewer's `quit` is refused.
pub const VIEWER_QUIT_REFUSED: &str =
    "a viewer may not stop the run (start serve with --allow-viewer-quit to allow it)";

/// One serialized record, shared by every viewer's queue.
pub type Line = Arc<str>;

pub struct Viewer {
    pub id: u64,
    pub queue: Sender<Line>,
    /// Bytes queued and not yet written (the writer takes off what it wrote).
    pub queued: Arc<AtomicUsize>,
}

impl Viewer {
    /// Queue `line`, counted before it can be written (so the writer never takes off more).
    fn try_send(&self, line: &Line) -> Result<(), TrySendError<Line>> {
        self.queued.fetch_add(line.len(), Ordering::Relaxed);
        let sent = self.queue.try_send(Arc::clone(line));
        if sent.is_err() {
            self.queued.fetch_sub(line.len(), Ordering::Relaxed);
        }
        sent
    }
}

/// What reaches the hub besides the source's events.
pub enum HubMessage {
    Attach(Viewer),
    Control {
        viewer: u64,
        control: Control,
    },
    /// Stop the run (a signal); the hub records until the end record.
    Stop,
}

pub struct Hub {
    pub inbox: Sender<HubMessage>,
    pub thread: JoinHandle<Option<RunEnd>>,
}

/// Start the hub. `allow_viewer_quit`: a viewer's `quit` stops the run (else it is rejected).
pub fn spawn(
    source: Source,
    recorder: Recorder,
    allow_viewer_quit: bool,
) -> Result<Hub, RemoteError> {
    let (inbox, messages) = crossbeam_channel::unbounded();
    let thread = thread::Builder::new()
        .name("bntop-hub".into())
        .spawn(move || run(source, recorder, &messages, allow_viewer_quit))
        .map_err(|source| RemoteError::Thread {
            what: "hub",
            source,
        })?;
    Ok(Hub { inbox, thread })
}

/// Send one event to every viewer (and the backlog) without waiting for any of them.
fn broadcast(event: &Event, backlog: &mut Backlog, viewers: &mut Vec<Viewer>) {
    let line: Line = match serde_json::to_string(event) {
        Ok(mut s) => {
            s.push('\n');
            s.into()
        }
        Err(_) => return,
    };
    backlog.push(event, &line);
    let droppable = matches!(event, Event::Snapshot(_));
    viewers.retain(|v| {
        if droppable && v.queued.load(Ordering::Relaxed) + line.len() > VIEWER_BYTES {
            return true;
        }
        match v.try_send(&line) {
            Ok(()) => true,
            // A slow viewer loses snapshots; one that cannot even take the rare records is
            // stalled and is dropped.
            Err(TrySendError::Full(_)) if droppable => true,
            Err(TrySendError::Full(_)) => {
                log(format!("viewer {} is not reading; dropped", v.id));
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    });
}

/// Where the hub's own decisions about the run are kept.
struct Run {
    source: Source,
    allow_viewer_quit: bool,
    /// The producer named by the header, if any (none: the built-in engine, every control).
    producer: Option<Producer>,
    step: u64,
    started: Instant,
    /// When the run was told to stop: the end record is due by then.
    stop_by: Option<Instant>,
    /// The source stopped taking controls (logged once until it takes one again).
    unreachable: bool,
}

impl Run {
    fn rejected(&self, control: Control, reason: String) -> Event {
        Event::Control(ControlEvent {
            step: self.step,
            control,
            rejected: Some(reason),
        })
    }

    /// Hand a viewer's control to the source, or the echo that rejects it.
    fn control(&mut self, viewer: u64, control: Control) -> Option<Event> {
        let quit = control == Control::Quit;
        if quit && !self.allow_viewer_quit {
            log(format!("viewer {viewer} asked to stop the run: refused"));
            return Some(self.rejected(control, VIEWER_QUIT_REFUSED.into()));
        }
        if let Some(producer) = self.producer.as_ref() {
            let name = control.name();
            if !producer.handles(name) {
                let reason = format!("{} does not handle {name}", producer.name);
                return Some(self.rejected(control, reason));
            }
        }
        match self.source.controls.try_send(control) {
            Ok(()) => {
                self.unreachable = false;
                if quit {
                    log(format!("viewer {viewer} asked to stop the run"));
                    self.stop_by.get_or_insert(Instant::now() + SHUTDOWN_WAIT);
                }
                None
            }
            Err(e) => {
                if !self.unreachable {
                    log(format!("controls rejected: {}", self.source.unreachable));
                }
                self.unreachable = true;
                Some(self.rejected(e.into_inner(), self.source.unreachable.into()))
            }
        }
    }

    /// Stop the run (a signal): `quit` to the source, whatever its header lists.
    fn stop(&mut self) {
        if self.stop_by.is_none() {
            let _ = self.source.controls.try_send(Control::Quit);
            self.stop_by = Some(Instant::now() + SHUTDOWN_WAIT);
        }
    }

    /// The end record the source did not send: `why` it is written by the hub.
    fn end(&self, reason: EndReason, why: String) -> Event {
        log(&why);
        Event::End(RunEnd {
            step: self.step,
            reason,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            message: Some(why),
        })
    }
}

fn run(
    source: Source,
    mut recorder: Recorder,
    messages: &Receiver<HubMessage>,
    allow_viewer_quit: bool,
) -> Option<RunEnd> {
    let mut viewers: Vec<Viewer> = Vec::new();
    let mut backlog = Backlog::default();
    let mut wire_filter = Decimator::new(VIEWER_POLICY);
    let mut end = None;
    let mut run = Run {
        source,
        allow_viewer_quit,
        producer: None,
        step: 0,
        started: Instant::now(),
        stop_by: None,
        unreachable: false,
    };
    let name = run.source.name;
    loop {
        let deadline = run
            .stop_by
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let event = select! {
            recv(run.source.events) -> received => match received {
                Ok(event) => Some(event),
                // Gone without an end record: after `quit` it stopped as asked, else it failed.
                Err(_) => Some(match run.stop_by {
                    Some(_) => run.end(
                        EndReason::Quit,
                        format!("{name} stopped after quit without an end record"),
                    ),
                    None => run.end(
                        EndReason::Error,
                        format!("{name} stopped without an end record"),
                    ),
                }),
            },
            recv(messages) -> message => match message {
                Ok(HubMessage::Attach(viewer)) => {
                    for line in backlog.lines() {
                        if viewer.try_send(&line).is_err() {
                            break;
                        }
                    }
                    viewers.push(viewer);
                    None
                }
                Ok(HubMessage::Control { viewer, control }) => run.control(viewer, control),
                Ok(HubMessage::Stop) | Err(_) => {
                    run.stop();
                    None
                }
            },
            recv(crossbeam_channel::at(deadline)) -> _ => match run.stop_by {
                Some(t) if Instant::now() >= t => Some(run.end(
                    EndReason::Error,
                    format!("{name} did not end within {} s of quit", SHUTDOWN_WAIT.as_secs()),
                )),
                _ => None,
            },
        };
        // An event of the run, or the hub's own: recorded, then sent to every viewer.
        if let Some(event) = event {
            run.step = event.step().unwrap_or(run.step).max(run.step);
            if let Event::Header(h) = &event {
                run.producer = h.producer.clone();
            }
            recorder.record(&event);
            for event in wire_filter.filter(&event) {
                broadcast(&event, &mut backlog, &mut viewers);
                if let Event::End(e) = event {
                    end = Some(e);
                }
            }
            if end.is_some() {
                break;
            }
        }
    }
    drop(viewers);
    let Source {
        controls, finish, ..
    } = run.source;
    drop(controls);
    finish();
    end
}
