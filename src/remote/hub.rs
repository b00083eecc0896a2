//! The hub of `bntop serve`: one thread owns the engine's stream. It records every event, keeps
//! a bounded backlog so a viewer that attaches mid-run gets full charts at once, and fans each
//! event out to the viewers' queues without ever waiting for a viewer. Controls from viewers go
//! to the engine; their echoes come back as events, so every viewer and the recording see them.
//! A viewer's `quit` would end the run for everyone: unless `serve --allow-viewer-quit`, the hub
//! rejects it itself, with the same kind of echo (a control record with the reason).
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};

use super::error::RemoteError;
use super::log::log;
use crate::engine::EngineHandle;
use crate::protocol::{Control, ControlEvent, Event, MarkerKind, RecordingPolicy, RunEnd};
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
/// Every recent event (about 15 s at full speed), and a longer, thinner history.
const RECENT_EVENTS: usize = 2048;
const THIN_SNAPSHOTS: usize = 2048;
const THIN_EVERY: u64 = 4;
const KEPT_RECORDS: usize = 2048;
/// How long to wait for the end record once training was told to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Why a viewer's `quit` is refused.
pub const VIEWER_QUIT_REFUSED: &str =
    "a viewer may not stop the run (start serve with --allow-viewer-quit to allow it)";

/// One serialized record, shared by every viewer's queue.
pub type Line = Arc<str>;

pub struct Viewer {
    pub id: u64,
    pub queue: Sender<Line>,
}

/// What reaches the hub besides the engine's events.
pub enum HubMessage {
    Attach(Viewer),
    Control {
        viewer: u64,
        control: Control,
    },
    /// Stop training (a signal); the hub records until the end record.
    Stop,
}

pub struct Hub {
    pub inbox: Sender<HubMessage>,
    pub thread: JoinHandle<Option<RunEnd>>,
}

/// The history a new viewer receives before the live stream.
#[derive(Default)]
struct Backlog {
    header: Option<Line>,
    recent: VecDeque<(u64, Line)>,
    thin: VecDeque<(u64, Line)>,
    /// Controls, evaluations, lab results and non-epoch markers: few, and each one matters.
    records: VecDeque<(u64, Line)>,
    seq: u64,
}

impl Backlog {
    fn push(&mut self, event: &Event, line: &Line) {
        self.seq += 1;
        let item = (self.seq, Arc::clone(line));
        let push = |q: &mut VecDeque<(u64, Line)>, cap: usize, item| {
            if q.len() == cap {
                q.pop_front();
            }
            q.push_back(item);
        };
        match event {
            Event::Header(_) => self.header = Some(Arc::clone(line)),
            Event::Snapshot(s) if s.step % THIN_EVERY == 0 => {
                push(&mut self.thin, THIN_SNAPSHOTS, item.clone());
                push(&mut self.recent, RECENT_EVENTS, item);
            }
            Event::Control(_)
            | Event::Evaluation(_)
            | Event::Folding(_)
            | Event::Population(_)
            | Event::Probe(_)
            | Event::End(_) => {
                push(&mut self.records, KEPT_RECORDS, item.clone());
                push(&mut self.recent, RECENT_EVENTS, item);
            }
            Event::Marker(m) if m.kind != MarkerKind::Epoch => {
                push(&mut self.records, KEPT_RECORDS, item.clone());
                push(&mut self.recent, RECENT_EVENTS, item);
            }
            _ => push(&mut self.recent, RECENT_EVENTS, item),
        }
    }

    /// Header first, then everything kept, in stream order, once.
    fn lines(&self) -> Vec<Line> {
        let mut items: Vec<&(u64, Line)> = self
            .thin
            .iter()
            .chain(&self.records)
            .chain(&self.recent)
            .collect();
        items.sort_by_key(|(seq, _)| *seq);
        items.dedup_by_key(|(seq, _)| *seq);
        self.header
            .iter()
            .cloned()
            .chain(items.into_iter().map(|(_, line)| Arc::clone(line)))
            .collect()
    }
}

/// Start the hub. `allow_viewer_quit`: a viewer's `quit` stops the run (else it is rejected).
pub fn spawn(
    engine: EngineHandle,
    recorder: Recorder,
    allow_viewer_quit: bool,
) -> Result<Hub, RemoteError> {
    let (inbox, messages) = crossbeam_channel::unbounded();
    let thread = thread::Builder::new()
        .name("bntop-hub".into())
        .spawn(move || run(engine, recorder, &messages, allow_viewer_quit))
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
    viewers.retain(|v| match v.queue.try_send(Arc::clone(&line)) {
        Ok(()) => true,
        // A slow viewer loses snapshots; one that cannot even take the rare records is stalled
        // and is dropped.
        Err(TrySendError::Full(_)) if droppable => true,
        Err(TrySendError::Full(_)) => {
            log(format!("viewer {} is not reading; dropped", v.id));
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    });
}

fn run(
    engine: EngineHandle,
    mut recorder: Recorder,
    messages: &Receiver<HubMessage>,
    allow_viewer_quit: bool,
) -> Option<RunEnd> {
    let mut viewers: Vec<Viewer> = Vec::new();
    let mut backlog = Backlog::default();
    let mut wire_filter = Decimator::new(VIEWER_POLICY);
    let mut end = None;
    let mut stop_by: Option<Instant> = None;
    let mut step = 0;
    loop {
        let deadline = stop_by.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut event = None;
        select! {
            recv(engine.events) -> received => {
                let Ok(received) = received else { break };
                event = Some(received);
            },
            recv(messages) -> message => match message {
                Ok(HubMessage::Attach(viewer)) => {
                    for line in backlog.lines() {
                        if viewer.queue.try_send(line).is_err() {
                            break;
                        }
                    }
                    viewers.push(viewer);
                }
                Ok(HubMessage::Control { viewer, control }) => {
                    if control == Control::Quit && !allow_viewer_quit {
                        log(format!("viewer {viewer} asked to stop training: refused"));
                        event = Some(Event::Control(ControlEvent {
                            step,
                            control,
                            rejected: Some(VIEWER_QUIT_REFUSED.into()),
                        }));
                    } else {
                        if control == Control::Quit {
                            log(format!("viewer {viewer} asked to stop training"));
                            stop_by.get_or_insert(Instant::now() + SHUTDOWN_WAIT);
                        }
                        let _ = engine.controls.send(control);
                    }
                }
                Ok(HubMessage::Stop) | Err(_) => {
                    if stop_by.is_none() {
                        let _ = engine.controls.send(Control::Quit);
                        stop_by = Some(Instant::now() + SHUTDOWN_WAIT);
                    }
                }
            },
            recv(crossbeam_channel::at(deadline)) -> _ => {
                if stop_by.is_some_and(|t| Instant::now() >= t) {
                    log("training did not end in time; the recording has no end record");
                    break;
                }
            }
        }
        // An event of the run, or the hub's own rejection: recorded, then sent to every viewer.
        if let Some(event) = event {
            step = event.step().unwrap_or(step).max(step);
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
    drop(engine.controls);
    let _ = engine.thread.join();
    end
}
