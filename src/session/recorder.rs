//! A live run's recording: a [`SessionWriter`] that can be paused and resumed (the dashboard's `w`
//! key), and that stops with a reported error instead of failing the run when the disk does.
use std::path::Path;

use super::writer::SessionWriter;
use super::SessionError;
use crate::protocol::{Event, RecordingPolicy, RecordingStatus};

pub struct Recorder {
    writer: Option<SessionWriter>,
    path: Option<String>,
    active: bool,
    error: Option<String>,
    /// Held so that resuming a paused recording starts with the header it would have had.
    header_written: bool,
}

impl Recorder {
    /// A recorder writing to a new file at `path`, keeping what `policy` says of the stream.
    pub fn create(path: &Path, policy: RecordingPolicy) -> Result<Recorder, SessionError> {
        Ok(Recorder::recording(SessionWriter::create(path, policy)?))
    }

    /// Records to a new file under `dir` named by the date and time (`SessionWriter::create_dated`).
    pub fn create_dated(
        dir: &Path,
        unix_seconds: u64,
        policy: RecordingPolicy,
    ) -> Result<Recorder, SessionError> {
        Ok(Recorder::recording(SessionWriter::create_dated(
            dir,
            unix_seconds,
            policy,
        )?))
    }

    fn recording(writer: SessionWriter) -> Recorder {
        Recorder {
            path: Some(writer.path().display().to_string()),
            writer: Some(writer),
            active: true,
            error: None,
            header_written: false,
        }
    }

    /// A recorder that records nothing (`--no-record`).
    pub fn off() -> Recorder {
        Recorder {
            writer: None,
            path: None,
            active: false,
            error: None,
            header_written: false,
        }
    }

    /// Record `event` if recording; the header is always written, so a paused-from-the-start
    /// file is still a valid session.
    pub fn record(&mut self, event: &Event) {
        let is_header = matches!(event, Event::Header(_));
        if !(self.active || is_header && !self.header_written) {
            return;
        }
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        match writer.record(event) {
            Ok(()) => self.header_written |= is_header,
            Err(e) => {
                self.error = Some(format!("cannot write {}: {e}", writer.path().display()));
                self.active = false;
                self.writer = None;
            }
        }
    }

    /// Pause or resume; returns false when there is nothing to resume (off, or failed).
    pub fn set_active(&mut self, active: bool) -> bool {
        if self.writer.is_none() {
            return false;
        }
        self.active = active;
        true
    }

    pub fn status(&self) -> RecordingStatus {
        RecordingStatus {
            path: self.path.clone(),
            active: self.active,
            bytes: self.writer.as_ref().map_or(0, |w| w.bytes_written()),
            error: self.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::synthetic;

    #[test]
    fn paused_recording_keeps_the_header_and_skips_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run.jsonl");
        let mut recorder = Recorder::create(&path, super::super::DEFAULT_POLICY).expect("create");
        let events = synthetic::run(100, 1);
        recorder.set_active(false);
        recorder.record(&events[0]);
        for e in &events[1..50] {
            recorder.record(e);
        }
        let paused_size = recorder.status().bytes;
        assert!(paused_size > 0, "the header is written");
        recorder.set_active(true);
        for e in &events[50..] {
            recorder.record(e);
        }
        assert!(recorder.status().bytes > paused_size);
        let text = std::fs::read_to_string(&path).expect("read");
        let steps: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Event>(l).ok())
            .filter_map(|e| e.step())
            .collect();
        let last_skipped = events[1..50].iter().filter_map(Event::step).max();
        assert!(steps.iter().all(|&s| Some(s) >= last_skipped), "{steps:?}");
        assert!(!Recorder::off().set_active(true));
    }
}
