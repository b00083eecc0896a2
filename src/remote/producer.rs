//! An external producer as the source of `bntop serve --source -` (sessions/FORMAT.md,
//! "Producers"): its records arrive as JSON lines on serve's standard input, and the controls
//! viewers send leave on serve's standard output, one `Control` object per line.
//!
//! Input is checked like any other: every line is parsed and held to the limits against the
//! header, records before the header and lines over [`MAX_LINE`] are skipped (a long line is
//! never held), and every bad line is counted and logged, never trusted. Controls go to a writer
//! thread through a short queue: a producer that does not read them fills the queue, and the hub
//! then rejects further controls itself, so serve never waits for the producer.
use std::io::{BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use super::error::RemoteError;
use super::log::log;
use super::source::Source;
use super::wire::{read_line_skipping, LineRead};
use crate::protocol::{parse_record, Control, Event, RecordCheck, FORMAT_VERSION_MAJOR, MAX_LINE};

/// Controls waiting for the producer to read them; beyond this they are rejected.
pub const CONTROL_QUEUE: usize = 256;
/// Why a control is rejected when the queue is full or the producer's input is closed.
pub const NOT_READING: &str = "the producer is not reading its controls";
/// Records waiting for the hub (the hub only records and fans out, so this rarely fills).
const EVENT_QUEUE: usize = 16;
/// Bad lines logged one by one; after that, every `LOG_EVERY`th.
const LOG_FIRST: u64 = 10;
const LOG_EVERY: u64 = 1000;

/// Start reading records from `input` and writing controls to `output`.
pub fn spawn(
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
) -> Result<Source, RemoteError> {
    let (event_tx, events) = crossbeam_channel::bounded(EVENT_QUEUE);
    let (controls, control_rx) = crossbeam_channel::bounded(CONTROL_QUEUE);
    let bad = Arc::new(AtomicU64::new(0));
    let thread_error = |source| RemoteError::Thread {
        what: "producer",
        source,
    };
    {
        let bad = Arc::clone(&bad);
        thread::Builder::new()
            .name("bntop-producer-in".into())
            .spawn(move || read_records(input, &event_tx, &bad))
            .map_err(thread_error)?;
    }
    thread::Builder::new()
        .name("bntop-producer-out".into())
        .spawn(move || write_controls(output, &control_rx))
        .map_err(thread_error)?;
    Ok(Source {
        events,
        controls,
        name: "the producer",
        unreachable: NOT_READING,
        // The threads are not joined: the reader may wait on a producer that never closes its
        // output, the writer on one that never reads. The process ends without them.
        finish: Box::new(move || {
            let bad = bad.load(Ordering::Relaxed);
            if bad > 0 {
                log(format!("{bad} bad lines from the producer were skipped"));
            }
        }),
    })
}

/// Checks the producer's records in order: a header first (and only one), then records that fit
/// it and the limits.
#[derive(Default)]
struct Intake {
    check: RecordCheck,
    has_header: bool,
}

impl Intake {
    fn accept(&mut self, line: &[u8]) -> Result<Event, String> {
        let event = parse_record(line)?;
        match &event {
            Event::Header(_) if self.has_header => return Err("a second header".into()),
            Event::Header(h) if h.version_major > FORMAT_VERSION_MAJOR => {
                return Err(format!(
                "a header of format {}.{}, newer than this bntop reads ({FORMAT_VERSION_MAJOR}.x)",
                h.version_major, h.version_minor
            ))
            }
            Event::Header(_) => {}
            _ if !self.has_header => return Err("a record before the header".into()),
            Event::Unknown => return Err("a record kind this bntop does not know".into()),
            _ => {}
        }
        let event = self.check.event(event)?;
        self.has_header |= matches!(event, Event::Header(_));
        Ok(event)
    }
}

/// A bad line: counted, and logged (the first few, then every thousandth).
fn skip(bad: &AtomicU64, number: u64, why: &str) {
    let count = bad.fetch_add(1, Ordering::Relaxed) + 1;
    if count <= LOG_FIRST || count.is_multiple_of(LOG_EVERY) {
        let why: String = why.chars().take(200).collect();
        log(format!(
            "producer line {number} skipped: {why} ({count} bad lines so far)"
        ));
    }
}

/// Read, check and pass on records until the producer's end record or end of input.
fn read_records(input: impl Read, events: &Sender<Event>, bad: &AtomicU64) {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut intake = Intake::default();
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        number += 1;
        let read = match read_line_skipping(&mut reader, &mut line, MAX_LINE) {
            Ok(read) => read,
            Err(e) => {
                log(format!("cannot read the producer's records: {e}"));
                return;
            }
        };
        let event = match read {
            LineRead::Eof => return,
            LineRead::CutAtEof => {
                skip(bad, number, "cut off by the end of input");
                return;
            }
            LineRead::TooLong => {
                skip(bad, number, &format!("longer than {} MiB", MAX_LINE >> 20));
                continue;
            }
            LineRead::Line if line.iter().all(u8::is_ascii_whitespace) => continue,
            LineRead::Line => match intake.accept(&line) {
                Ok(event) => event,
                Err(why) => {
                    skip(bad, number, &why);
                    continue;
                }
            },
        };
        let is_end = matches!(event, Event::End(_));
        if events.send(event).is_err() || is_end {
            return;
        }
    }
}

/// Write each control as one JSON line, flushed at once. A write error (the producer closed its
/// end) ends the thread; the hub then rejects controls as not read.
fn write_controls(mut output: impl Write, controls: &Receiver<Control>) {
    for control in controls {
        let Ok(mut line) = serde_json::to_vec(&control) else {
            continue;
        };
        line.push(b'\n');
        if let Err(e) = output.write_all(&line).and_then(|()| output.flush()) {
            log(format!("cannot write controls to the producer: {e}"));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(major: u32) -> String {
        let mut h = crate::ui::synthetic::run(1, 1)
            .into_iter()
            .find_map(|e| match e {
                Event::Header(h) => Some(h),
                _ => None,
            })
            .expect("a header");
        h.version_major = major;
        serde_json::to_string(&Event::Header(h)).expect("json")
    }

    const MARKER: &str = r#"{"kind":"marker","step":1,"marker":"epoch","label":"e"}"#;

    #[test]
    fn the_header_comes_first_and_only_once() {
        let mut intake = Intake::default();
        assert_eq!(
            intake.accept(MARKER.as_bytes()),
            Err("a record before the header".into())
        );
        assert!(intake.accept(header(2).as_bytes()).is_err());
        assert!(intake.accept(header(1).as_bytes()).is_ok());
        assert!(intake.accept(MARKER.as_bytes()).is_ok());
        assert_eq!(
            intake.accept(header(1).as_bytes()),
            Err("a second header".into())
        );
        assert!(intake.accept(br#"{"kind":"newfangled","step":1}"#).is_err());
        assert!(intake.accept(b"\xff garbage").is_err());
    }
}
