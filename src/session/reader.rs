//! Reading a session: an index of the records (byte offset, length, step, kind) built incrementally,
//! so a replay can show its first frame before a 500 MB file is indexed and a follower picks up the
//! lines another bntop appends; records are parsed in full only when read.
//!
//! Indexing looks at each line cheaply: the prefix serde writes (`{"kind":"snapshot","step":123,`)
//! when it is there, else a small peek parse of `kind` and `step` that ignores every other field.
//! So a line whose body is damaged past its prefix may be indexed and found bad only when read;
//! [`Reader::read`] then counts it in [`Skipped`] (once per line) and returns an error.
//!
//! Bad input never panics and never stops the reading: garbage, binary junk and lines longer than
//! [`MAX_LINE`] are skipped and counted; a partial last line (a writer in mid-write, or one that
//! was killed) stays pending until its newline arrives. Records of kinds this version does not
//! know are counted in `Skipped::unknown_kinds` and not indexed (forward compatibility), so
//! [`Kind::Unknown`] never appears in the index; [`Kind::of`] uses it for parsed events.
use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::SessionError;
use crate::protocol::{limits, parse_record, Event, RunHeader, FORMAT_NAME, FORMAT_VERSION_MAJOR};

/// Longer lines are skipped unread: no record within the limits (sessions/FORMAT.md) comes near
/// it, and it bounds the memory one line can take.
pub const MAX_LINE: usize = crate::protocol::MAX_LINE;

/// Sequential indexing reads in large blocks: few system calls per MB.
const READ_BUFFER: usize = 1 << 20;

/// `open` indexes at most this much while looking for the first good record.
const OPEN_BUDGET: usize = 1 << 20;

/// What a record is, as far as the index knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Header,
    /// `whole`: the layers carry their per-channel arrays (else summary-only, or no layers).
    Snapshot {
        whole: bool,
    },
    Control,
    Evaluation,
    Marker,
    /// PreciseBN and probe results: periodic, so not marks to jump between.
    Lab,
    End,
    /// Never in the index (unknown kinds are counted and skipped); for [`Kind::of`] an unknown event.
    Unknown,
}

impl Kind {
    /// The kind of a parsed event (a snapshot is whole if any layer has its `batch_mean`).
    pub fn of(event: &Event) -> Kind {
        match event {
            Event::Header(_) => Kind::Header,
            Event::Snapshot(s) => Kind::Snapshot {
                whole: s.layers.iter().any(|l| !l.batch_mean.is_empty()),
            },
            Event::Control(_) => Kind::Control,
            Event::Evaluation(_) => Kind::Evaluation,
            // A folding check answers a control, a point-in-time result like a marker.
            Event::Marker(_) | Event::Folding(_) => Kind::Marker,
            Event::Population(_) | Event::Probe(_) => Kind::Lab,
            Event::End(_) => Kind::End,
            Event::Unknown => Kind::Unknown,
        }
    }

    fn same_variant(self, other: Kind) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// One indexed record: the line at `offset`, `len` bytes without its newline. The header's step is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub len: u32,
    pub step: u64,
    pub kind: Kind,
}

/// Lines that were not records. `lines` counts bad lines (found while indexing, or when a read
/// fails to parse an indexed line or finds it over a limit of `protocol::limits`); `unknown_kinds`
/// counts well-formed records of unknown kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub lines: u64,
    pub unknown_kinds: u64,
    pub last_problem: Option<String>,
}

/// What one [`Reader::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poll {
    /// Entries added since the previous poll (including any `open` indexed); after a reset, all of them.
    pub new_entries: usize,
    /// The file shrank or was replaced: the index was rebuilt from the start.
    pub reset: bool,
    /// Every complete line currently in the file is indexed (a partial last line may be pending).
    pub at_end: bool,
}

/// An incrementally read, indexed session file.
pub struct Reader {
    path: PathBuf,
    file: BufReader<File>,
    identity: Option<(u64, u64)>,
    header: Option<RunHeader>,
    entries: Vec<Entry>,
    skipped: Skipped,
    /// End of the complete lines consumed (indexed or skipped).
    pos: u64,
    /// How far the file has been read: `pos` plus a pending partial line or a long line being skipped.
    scanned: u64,
    /// The pending partial line (bytes `pos..scanned`), unless a too-long line is being skipped.
    line: Vec<u8>,
    /// Start of a line longer than MAX_LINE whose newline has not been reached yet.
    skipping_from: Option<u64>,
    /// `read` moved the file position: the next poll must seek back to `scanned`.
    reposition: bool,
    /// File length when a poll last reached the end: an unchanged file needs no reading.
    at_end_len: Option<u64>,
    /// Entries already reported by a poll.
    reported: usize,
    /// Offsets of indexed lines that failed to parse when read (each counted once).
    bad_reads: HashSet<u64>,
}

/// The peek parse: the tag and the step, every other field skipped without being built.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    step: Step,
}

/// A step if the value is one (a non-negative integer); anything else is skipped, not built.
#[derive(Default)]
struct Step(Option<u64>);

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        struct StepVisitor;

        impl<'de> Visitor<'de> for StepVisitor {
            type Value = Step;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value")
            }

            fn visit_u64<E: de::Error>(self, x: u64) -> Result<Step, E> {
                Ok(Step(Some(x)))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Step, E> {
                Ok(Step(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Step, E> {
                Ok(Step(None))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Step, E> {
                Ok(Step(None))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Step, E> {
                Ok(Step(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Step, E> {
                Ok(Step(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Step, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Step(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Step(None))
            }
        }

        d.deserialize_any(StepVisitor)
    }
}

/// A header's identity, read before the full header so a newer format is reported as such even
/// when the rest of its header no longer parses.
#[derive(Deserialize)]
struct HeaderPeek<'a> {
    #[serde(borrow)]
    format: Cow<'a, str>,
    version_major: u32,
    version_minor: u32,
}

/// How one complete line was classified by the index (see [`classify`]).
pub enum Line {
    Record(Kind, u64, Option<Box<RunHeader>>),
    Unknown,
    Bad(String),
    /// A header this version must not read: another format, or a newer major version.
    Refused(String),
}

#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn open_file(path: &Path) -> Result<(File, Option<(u64, u64)>), String> {
    let file = File::open(path)
        .map_err(|e| format!("cannot open session file {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read session file {}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!(
            "{}: is a directory, not a session file",
            path.display()
        ));
    }
    Ok((file, identity(&meta)))
}

impl Reader {
    /// Opens the file and indexes up to its first good record (at most about 1 MB), so a header of
    /// a newer format is reported here. An empty file or one without a header is not an error.
    pub fn open(path: &Path) -> Result<Reader, SessionError> {
        Self::open_indexed(path).map_err(SessionError::Input)
    }

    fn open_indexed(path: &Path) -> Result<Reader, String> {
        let (file, identity) = open_file(path)?;
        let mut reader = Reader {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(READ_BUFFER, file),
            identity,
            header: None,
            entries: Vec::new(),
            skipped: Skipped::default(),
            pos: 0,
            scanned: 0,
            line: Vec::new(),
            skipping_from: None,
            reposition: false,
            at_end_len: None,
            reported: 0,
            bad_reads: HashSet::new(),
        };
        reader.index(OPEN_BUDGET, true)?;
        Ok(reader)
    }

    /// Indexes about `budget_bytes` of complete lines appended since the last poll (at least one
    /// line when there is one and the budget is not 0). Starts over (`reset`) if the file shrank
    /// below what was read or the path now names another file.
    pub fn poll(&mut self, budget_bytes: usize) -> Result<Poll, SessionError> {
        self.poll_indexing(budget_bytes)
            .map_err(SessionError::Input)
    }

    fn poll_indexing(&mut self, budget_bytes: usize) -> Result<Poll, String> {
        let mut reset = false;
        if let Ok(meta) = fs::metadata(&self.path) {
            let now = identity(&meta);
            if now != self.identity && !meta.is_dir() {
                // Replaced (e.g. renamed over): follow the path. If it cannot be opened right now,
                // keep the old file and try again next poll.
                if let Ok((file, now)) = open_file(&self.path) {
                    self.file = BufReader::with_capacity(READ_BUFFER, file);
                    self.identity = now;
                    self.reset();
                    reset = true;
                }
            }
        }
        let len = self.len()?;
        if len < self.scanned {
            self.reset();
            reset = true;
        }
        let at_end = if self.at_end_len == Some(len) {
            true
        } else {
            self.index(budget_bytes, false)? || self.scanned >= len
        };
        self.at_end_len = at_end.then_some(self.scanned.max(len));
        let new_entries = self.entries.len() - self.reported;
        self.reported = self.entries.len();
        Ok(Poll {
            new_entries,
            reset,
            at_end,
        })
    }

    /// The header record, once seen (the first header in the file).
    pub fn header(&self) -> Option<&RunHeader> {
        self.header.as_ref()
    }

    /// The indexed records in file order; bad lines and unknown kinds are not in it.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads and fully parses one indexed record. A record that does not parse (or no longer
    /// matches its entry) is counted in `skipped()` the first time and returned as an error.
    pub fn read(&mut self, entry: &Entry) -> Result<Event, String> {
        if entry.len as usize > MAX_LINE {
            return Err(format!(
                "{}: no record at byte {} is that long",
                self.path.display(),
                entry.offset
            ));
        }
        let mut bytes = vec![0u8; entry.len as usize];
        self.reposition = true;
        let file = self.file.get_mut();
        file.seek(SeekFrom::Start(entry.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| {
                format!(
                    "{}: cannot read the record at byte {}: {e}",
                    self.path.display(),
                    entry.offset
                )
            })?;
        let problem = match parse_record(&bytes) {
            Ok(event) => {
                let kind = Kind::of(&event);
                let step = event.step().unwrap_or(0);
                if !kind.same_variant(entry.kind) || step != entry.step {
                    format!("now holds a {kind:?} record of step {step}, not the indexed one")
                } else {
                    match limits::check(&event, self.header.as_ref()) {
                        Ok(()) => return Ok(event),
                        Err(e) => format!("over a limit: {e}"),
                    }
                }
            }
            Err(e) => format!("not a valid record: {e}"),
        };
        let problem = format!("line at byte {}: {problem}", entry.offset);
        if self.bad_reads.insert(entry.offset) {
            self.skipped.lines += 1;
            self.skipped.last_problem = Some(problem.clone());
        }
        Err(format!("{}: {problem}", self.path.display()))
    }

    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Bytes of complete lines consumed so far (indexed or skipped).
    pub fn bytes_indexed(&self) -> u64 {
        self.pos
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64, String> {
        self.file
            .get_ref()
            .metadata()
            .map(|m| m.len())
            .map_err(|e| format!("cannot read session file {}: {e}", self.path.display()))
    }

    fn reset(&mut self) {
        self.header = None;
        self.entries.clear();
        self.skipped = Skipped::default();
        self.pos = 0;
        self.scanned = 0;
        self.line = Vec::new();
        self.skipping_from = None;
        self.reposition = true;
        self.at_end_len = None;
        self.reported = 0;
        self.bad_reads.clear();
    }

    fn io_error(&self, e: std::io::Error) -> String {
        format!("cannot read session file {}: {e}", self.path.display())
    }

    /// Consumes complete lines until `budget` bytes were read, the end of the file, or (with
    /// `until_first`) the first indexed record. Returns whether the end of the file was reached.
    fn index(&mut self, budget: usize, until_first: bool) -> Result<bool, String> {
        if self.reposition {
            self.file
                .seek(SeekFrom::Start(self.scanned))
                .map_err(|e| self.io_error(e))?;
            self.reposition = false;
        }
        let start = self.scanned;
        let budget = budget as u64;
        while self.scanned - start < budget && (!until_first || self.entries.is_empty()) {
            if let Some(from) = self.skipping_from {
                // Stream through a too-long line in buffer-sized pieces, keeping none of it.
                self.line.clear();
                let n = (&mut self.file)
                    .take(READ_BUFFER as u64)
                    .read_until(b'\n', &mut self.line)
                    .map_err(|e| self.io_error(e))?;
                self.scanned += n as u64;
                let ended = self.line.last() == Some(&b'\n');
                self.line.clear();
                if n == 0 {
                    return Ok(true);
                }
                if ended {
                    self.skipping_from = None;
                    self.pos = self.scanned;
                    self.bad_line(from, format!("longer than {} MiB", MAX_LINE >> 20));
                }
                continue;
            }
            let room = (MAX_LINE + 1 - self.line.len()) as u64;
            let n = (&mut self.file)
                .take(room)
                .read_until(b'\n', &mut self.line)
                .map_err(|e| self.io_error(e))?;
            self.scanned += n as u64;
            if n == 0 {
                // The end of the file; a partial line stays in `line` until its newline arrives.
                return Ok(true);
            }
            if self.line.last() == Some(&b'\n') {
                let offset = self.pos;
                let line = std::mem::take(&mut self.line);
                let result = self.line_read(offset, &line[..line.len() - 1]);
                self.line = line;
                self.line.clear();
                // Keep the buffer of an ordinary line, not of a MAX_LINE one.
                self.line.shrink_to(READ_BUFFER);
                if let Err(e) = result {
                    // Not consumed: every later poll reports the same error (until a reset).
                    self.line.clear();
                    self.scanned = self.pos;
                    self.reposition = true;
                    return Err(e);
                }
                self.pos = self.scanned;
            } else if self.line.len() > MAX_LINE {
                self.skipping_from = Some(self.pos);
                self.line = Vec::new();
            }
        }
        Ok(false)
    }

    /// Indexes or counts one complete line (without its newline). Errs only for a header this
    /// version cannot read.
    fn line_read(&mut self, offset: u64, line: &[u8]) -> Result<(), String> {
        match classify(line) {
            Line::Record(kind, step, header) => {
                if let Some(header) = header {
                    if self.header.is_none() {
                        self.header = Some(*header);
                    }
                }
                self.entries.push(Entry {
                    offset,
                    len: line.len() as u32,
                    step,
                    kind,
                });
            }
            Line::Unknown => self.skipped.unknown_kinds += 1,
            // Only as the first good record: a file that starts another way is read for what it has.
            Line::Refused(problem) if self.entries.is_empty() => {
                return Err(format!("{}: {problem}", self.path.display()));
            }
            // A header after other records: just a line this reader cannot use.
            Line::Bad(problem) | Line::Refused(problem) => self.bad_line(offset, problem),
        }
        Ok(())
    }

    fn bad_line(&mut self, offset: u64, problem: String) {
        self.skipped.lines += 1;
        self.skipped.last_problem = Some(format!("line at byte {offset}: {problem}"));
    }
}

fn kind_with_step(name: &[u8], line: &[u8]) -> Option<Kind> {
    Some(match name {
        b"snapshot" => Kind::Snapshot {
            whole: contains(line, b"\"batch_mean\""),
        },
        b"control" => Kind::Control,
        b"evaluation" => Kind::Evaluation,
        b"marker" | b"folding" => Kind::Marker,
        b"population" | b"probe" => Kind::Lab,
        b"end" => Kind::End,
        _ => return None,
    })
}

/// Substring search. Whole snapshots have `"batch_mean"` within their first few hundred bytes, and
/// the lines scanned to the end are small (summary-only snapshots and the other records).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + i + 1;
        if haystack[at..].starts_with(rest) {
            return true;
        }
        from = at;
    }
    false
}

/// The fast path: `{"kind":"<name>","step":<digits>,` as serde writes every record with a step,
/// and a line that ends like an object. Anything else goes to the peek parse.
fn scan_prefix(line: &[u8]) -> Option<(Kind, u64)> {
    let rest = line.strip_prefix(b"{\"kind\":\"")?;
    let quote = rest.iter().take(16).position(|&b| b == b'"')?;
    let (name, rest) = rest.split_at(quote);
    let rest = rest.strip_prefix(b"\",\"step\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !matches!(rest.get(digits), Some(b',') | Some(b'}')) {
        return None;
    }
    if line.trim_ascii_end().last() != Some(&b'}') {
        return None;
    }
    let step = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((kind_with_step(name, line)?, step))
}

/// What the index makes of one complete line (without its newline): a record's kind and step
/// (and the parsed header, checked against the limits), a record of an unknown kind, a bad line,
/// or a header this version must refuse. Records other than headers are parsed in full only when
/// read ([`Reader::read`]).
pub fn classify(line: &[u8]) -> Line {
    if let Some((kind, step)) = scan_prefix(line) {
        return Line::Record(kind, step, None);
    }
    let peek: Peek = match serde_json::from_slice(line) {
        Ok(peek) => peek,
        Err(e) => return Line::Bad(format!("not a record: {e}")),
    };
    if peek.kind == "header" {
        return header_line(line);
    }
    let Some(kind) = kind_with_step(peek.kind.as_bytes(), line) else {
        return Line::Unknown;
    };
    match peek.step.0 {
        Some(step) => Line::Record(kind, step, None),
        None => Line::Bad(format!("a {} record without a step", peek.kind)),
    }
}

fn header_line(line: &[u8]) -> Line {
    let peek: HeaderPeek = match serde_json::from_slice(line) {
        Ok(peek) => peek,
        Err(e) => return Line::Bad(format!("not a valid header: {e}")),
    };
    if peek.format != FORMAT_NAME {
        return Line::Refused(format!(
            "not a bntop session (format \"{}\")",
            peek.format
                .chars()
                .take(40)
                .collect::<String>()
                .escape_debug()
        ));
    }
    if peek.version_major > FORMAT_VERSION_MAJOR {
        return Line::Refused(format!(
            "session format {FORMAT_NAME} {}.{} is newer than this bntop reads ({FORMAT_VERSION_MAJOR}.x); upgrade bntop",
            peek.version_major, peek.version_minor
        ));
    }
    match parse_record(line) {
        Ok(Event::Header(header)) => match limits::check_header(&header) {
            Ok(()) => Line::Record(Kind::Header, 0, Some(header)),
            Err(e) => Line::Bad(format!("a header over a limit: {e}")),
        },
        Ok(_) => Line::Bad("a header that is not a header".into()),
        Err(e) => Line::Bad(format!("not a valid header: {e}")),
    }
}

/// Index of the last entry with step <= `step` among entries satisfying `pred`: a binary search
/// when steps are non-decreasing (as in every session), else a linear scan.
pub fn last_at_or_before(
    entries: &[Entry],
    step: u64,
    pred: impl Fn(&Entry) -> bool,
) -> Option<usize> {
    if entries.is_sorted_by_key(|e| e.step) {
        let end = entries.partition_point(|e| e.step <= step);
        entries[..end].iter().rposition(pred)
    } else {
        entries.iter().rposition(|e| e.step <= step && pred(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(line: &str) -> (Kind, u64) {
        match classify(line.as_bytes()) {
            Line::Record(kind, step, _) => (kind, step),
            Line::Unknown => panic!("{line}: unknown"),
            Line::Bad(p) | Line::Refused(p) => panic!("{line}: {p}"),
        }
    }

    fn is_bad(line: &[u8]) -> bool {
        matches!(classify(line), Line::Bad(_))
    }

    #[test]
    fn the_prefix_gives_kind_and_step_and_other_orders_fall_back_to_a_peek() {
        let whole = r#"{"kind":"snapshot","step":12,"layers":[{"mode":"train","batch_mean":[1]}]}"#;
        assert_eq!(record(whole), (Kind::Snapshot { whole: true }, 12));
        assert_eq!(
            scan_prefix(whole.as_bytes()),
            Some((Kind::Snapshot { whole: true }, 12))
        );
        let summary = r#"{"kind":"snapshot","step":3,"layers":[{"mode":"eval"}]}"#;
        assert_eq!(record(summary), (Kind::Snapshot { whole: false }, 3));
        // Another field order, whitespace, an escaped tag: no prefix, the peek parse finds them.
        let reordered =
            r#" { "step" : 7, "control": {"control":"pause"}, "kind" : "con\u0074rol" } "#;
        assert_eq!(scan_prefix(reordered.as_bytes()), None);
        assert_eq!(record(reordered), (Kind::Control, 7));
        assert_eq!(
            record(r#"{"kind":"end","step":18446744073709551615}"#).1,
            u64::MAX
        );
        assert_eq!(record(r#"{"kind":"marker","step":0}"#), (Kind::Marker, 0));
        assert_eq!(record(r#"{"kind":"probe","step":100}"#), (Kind::Lab, 100));
        assert_eq!(record(r#"{"kind":"population","step":9}"#), (Kind::Lab, 9));
        assert_eq!(
            record(r#"{"kind":"evaluation","step":50}"#),
            (Kind::Evaluation, 50)
        );
    }

    #[test]
    fn lines_that_are_not_records_are_bad_and_unknown_kinds_are_not() {
        assert!(is_bad(b""));
        assert!(is_bad(b"   "));
        assert!(is_bad(b"null"));
        assert!(is_bad(b"{\"step\":1}"));
        assert!(is_bad(b"{\"kind\":\"snapshot\",\"step\":1"));
        assert!(is_bad(
            b"{\"kind\":\"snapshot\",\"step\":18446744073709551616}"
        ));
        assert!(is_bad(b"{\"kind\":\"snapshot\",\"step\":\"1\"}"));
        assert!(is_bad(b"{\"kind\":\"header\",\"format\":\"bntop\"}"));
        assert!(is_bad(&[0xff, 0xfe, b'{', b'}']));
        assert!(matches!(
            classify(b"{\"kind\":\"future\",\"step\":\"whenever\"}"),
            Line::Unknown
        ));
        assert!(matches!(
            classify(b"{\"kind\":\"header\",\"format\":\"bntop\",\"version_major\":2,\"version_minor\":0}"),
            Line::Refused(p) if p.contains("bntop 2.0 is newer")
        ));
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"ab\"batch_mean\"", b"\"batch_mean\""));
        assert!(contains(b"\"\"batch_mean\"x", b"\"batch_mean\""));
        assert!(!contains(b"\"batch_mea\"", b"\"batch_mean\""));
        assert!(!contains(b"", b"x"));
        assert!(contains(b"", b""));
    }

    fn entry(step: u64, kind: Kind) -> Entry {
        Entry {
            offset: 0,
            len: 0,
            step,
            kind,
        }
    }

    #[test]
    fn last_at_or_before_searches_sorted_steps_and_scans_unsorted_ones() {
        let whole = Kind::Snapshot { whole: true };
        let part = Kind::Snapshot { whole: false };
        let sorted = [
            entry(0, Kind::Header),
            entry(1, whole),
            entry(2, part),
            entry(2, Kind::Control),
            entry(3, part),
            entry(5, whole),
            entry(5, Kind::End),
        ];
        let is_whole = |e: &Entry| e.kind == whole;
        assert_eq!(last_at_or_before(&sorted, 4, is_whole), Some(1));
        assert_eq!(last_at_or_before(&sorted, 5, is_whole), Some(5));
        assert_eq!(last_at_or_before(&sorted, 2, |_| true), Some(3));
        assert_eq!(last_at_or_before(&sorted, 0, is_whole), None);
        assert_eq!(last_at_or_before(&[], 9, |_| true), None);
        let unsorted = [
            entry(4, whole),
            entry(9, whole),
            entry(2, whole),
            entry(7, part),
        ];
        assert_eq!(last_at_or_before(&unsorted, 5, is_whole), Some(2));
        assert_eq!(last_at_or_before(&unsorted, 3, is_whole), Some(2));
        assert_eq!(last_at_or_before(&unsorted, 1, is_whole), None);
    }
}
