//! Parsing one JSON line into an [`Event`], the way every reader of files and streams should.
//!
//! serde's derived parse of an internally tagged enum (`"kind"` inside the object) first buffers
//! the whole object as a tree of generic values, about 16 times the line's size for an array of
//! numbers, before it knows which record it has. [`parse_record`] reads the tag first (a parse
//! that skips every other field without building it), then parses the line once more straight
//! into that record's struct, which ignores the `kind` field.
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::events::Event;
use super::header::RunHeader;
use super::limits;

/// The tag alone; every other field is skipped without being built.
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

fn typed<T: DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    serde_json::from_slice(line).map_err(|e| e.to_string())
}

/// One record from one line (without its newline). A well-formed record of a kind this version
/// does not know is [`Event::Unknown`]. Limits on arrays and layer lists apply while parsing; see
/// [`limits::check`] for the rest.
pub fn parse_record(line: &[u8]) -> Result<Event, String> {
    // Always the tag parse, never a guess from the prefix: it also refuses a second `kind`,
    // which the record's struct would ignore.
    let kind = serde_json::from_slice::<Tag>(line)
        .map_err(|e| e.to_string())?
        .kind;
    Ok(match kind.as_ref() {
        "header" => Event::Header(Box::new(typed(line)?)),
        "snapshot" => Event::Snapshot(typed(line)?),
        "control" => Event::Control(typed(line)?),
        "evaluation" => Event::Evaluation(typed(line)?),
        "marker" => Event::Marker(typed(line)?),
        "folding" => Event::Folding(typed(line)?),
        "population" => Event::Population(typed(line)?),
        "probe" => Event::Probe(typed(line)?),
        "end" => Event::End(typed(line)?),
        _ => Event::Unknown,
    })
}

/// Records arriving in order (a server's stream): each parsed and checked against the latest
/// header that passed, which the dashboard also builds its layers from.
#[derive(Default)]
pub struct RecordCheck {
    header: Option<RunHeader>,
}

impl RecordCheck {
    pub fn new() -> RecordCheck {
        RecordCheck::default()
    }

    /// The record on `line`, or why it is skipped (not a record, or over a limit).
    pub fn line(&mut self, line: &[u8]) -> Result<Event, String> {
        self.event(parse_record(line)?)
    }

    /// `event` if it is within the limits.
    pub fn event(&mut self, event: Event) -> Result<Event, String> {
        limits::check(&event, self.header.as_ref())?;
        if let Event::Header(h) = &event {
            self.header = Some(h.as_ref().clone());
        }
        Ok(event)
    }
}
