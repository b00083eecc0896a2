//! A live run behind the dashboard: a relay thread between the engine and the UI records every
//! event, forwards it to the UI, and turns the UI's commands into engine controls or recording
//! switches. When the UI goes away (quit, signal, SIGHUP), the relay stops training and keeps
//! recording until the engine's end record, so the session file closes cleanly.
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::engine::EngineHandle;
use crate::protocol::{Command, Control, Event, Feed, RunEnd};
use crate::session::Recorder;

/// Events queued for the UI before the relay waits (the engine coalesces behind it).
const FEED_CAPACITY: usize = 1024;
/// How long to wait for the end record once training was told to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How often the recording's size is refreshed in the header.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub struct Relay {
    pub feed: Receiver<Feed>,
    pub commands: Sender<Command>,
    /// The run's end record, if it arrived.
    pub thread: JoinHandle<Option<RunEnd>>,
}

pub fn spawn(engine: EngineHandle, recorder: Recorder) -> Result<Relay, String> {
    let (feed_tx, feed) = crossbeam_channel::bounded(FEED_CAPACITY);
    let (commands, command_rx) = crossbeam_channel::unbounded();
    let thread = thread::Builder::new()
        .name("bntop-relay".into())
        .spawn(move || relay(engine, recorder, &feed_tx, &command_rx))
        .map_err(|e| format!("cannot start the relay thread: {e}"))?;
    Ok(Relay {
        feed,
        commands,
        thread,
    })
}

fn relay(
    engine: EngineHandle,
    mut recorder: Recorder,
    feed: &Sender<Feed>,
    commands: &Receiver<Command>,
) -> Option<RunEnd> {
    let _ = feed.send(Feed::Recording(recorder.status()));
    let mut commands = commands.clone();
    let mut stop_by: Option<Instant> = None;
    let mut quit_sent = false;
    let mut last_status = Instant::now();
    let mut end = None;
    loop {
        let deadline = stop_by.unwrap_or_else(|| Instant::now() + STATUS_EVERY);
        select! {
            recv(engine.events) -> event => match event {
                Ok(event) => {
                    recorder.record(&event);
                    if let Event::End(e) = &event {
                        end = Some(e.clone());
                    }
                    let done = end.is_some();
                    // After the UI has gone, sends fail; recording goes on regardless.
                    let _ = feed.send(Feed::Event(event));
                    if done {
                        break;
                    }
                }
                Err(_) => break,
            },
            recv(commands) -> command => match command {
                Ok(Command::Run(control)) => {
                    quit_sent |= control == Control::Quit;
                    let _ = engine.controls.send(control);
                }
                Ok(Command::SetRecording(active)) => {
                    recorder.set_active(active);
                    let _ = feed.send(Feed::Recording(recorder.status()));
                }
                Ok(Command::Replay(_)) => {}
                Err(_) => {
                    // The dashboard closed: stop training, record until its end record.
                    if !quit_sent {
                        let _ = engine.controls.send(Control::Quit);
                    }
                    commands = crossbeam_channel::never();
                    stop_by = Some(Instant::now() + SHUTDOWN_WAIT);
                }
            },
            recv(crossbeam_channel::at(deadline)) -> _ => {
                if stop_by.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
            }
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            let _ = feed.try_send(Feed::Recording(recorder.status()));
        }
    }
    drop(engine.controls);
    let _ = engine.thread.join();
    end
}
