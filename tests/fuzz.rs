//! In-process fuzzing of everything that parses input from a file or a peer: the session
//! reader's per-line index (`reader::classify`), the record parse and the limits
//! (`protocol::parse_record`, `limits::check`), `Reader` over whole mutated files, and the remote
//! wire (`wire::read_line_limited`, the hello, control and refusal lines, and the client's
//! `read_records`).
//!
//! Seeds are the lines of the shipped sessions (sessions/*.jsonl) and the wire's own messages.
//! Each case applies one to three deterministic mutations (bit flips, byte inserts and deletes,
//! splices of other records, numbers replaced by huge, negative, non-finite or out-of-range ones,
//! truncation, array elements duplicated, deep nesting, kinds and keys swapped) and runs every
//! parser on the result inside `catch_unwind`. Besides panics it counts broken promises: a record
//! that parses must survive a write and a read unchanged, and the index must not lose it.
//!
//! `cargo test` runs 20,000 cases. At scale (about 1,000,000 in a few minutes):
//!
//!     BNTOP_FUZZ_CASES=1000000 cargo test --release --test fuzz -- --nocapture
//!
//! `BNTOP_FUZZ_SEED` picks another deterministic sequence.
use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use bntop::protocol::{
    limits, parse_record, BnMode, Control, DataOrder, Event, RecordCheck, RunHeader,
};
use bntop::remote::client::read_records;
use bntop::remote::wire::{read_line_limited, Hello, HelloBody, Refused, MAX_CLIENT_LINE};
use bntop::session::reader::{classify, Kind, Line, Reader};

const DEFAULT_CASES: u64 = 20_000;
/// One case in this many is a whole mutated file read through `Reader`.
const FILE_EVERY: u64 = 2_000;

/// What the shipped sessions and the wire give to mutate.
struct Seeds {
    /// Every line of every shipped session.
    lines: Vec<Vec<u8>>,
    /// The indices of whole snapshots (the big lines with per-channel arrays).
    whole: Vec<usize>,
    /// The files, for file cases.
    files: Vec<Vec<u8>>,
    /// Hello, control and refusal lines.
    wire: Vec<Vec<u8>>,
    header: RunHeader,
}

fn seeds() -> Seeds {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("sessions/")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    names.sort();
    let mut lines = Vec::new();
    let mut files = Vec::new();
    for path in names {
        let bytes = std::fs::read(&path).expect("a shipped session");
        lines.extend(
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
        files.push(bytes);
    }
    let whole = (0..lines.len())
        .filter(|&i| contains(&lines[i], b"\"batch_mean\""))
        .collect();
    let header = match parse_record(&lines[0]) {
        Ok(Event::Header(h)) => *h,
        other => panic!("the first line is a header: {other:?}"),
    };
    let hello = |token: Option<&str>, readonly| Hello {
        hello: HelloBody {
            token: token.map(String::from),
            readonly,
        },
    };
    let controls = [
        Control::SetMode {
            layer: Some(1),
            mode: BnMode::Eval,
        },
        Control::SetMomentum {
            layer: None,
            momentum: 0.01,
        },
        Control::SetLr { lr: 0.025 },
        Control::SetDataOrder {
            order: DataOrder::ClassSorted,
        },
        Control::FoldCheck,
        Control::PreciseBn,
        Control::ApplyPreciseBn { layer: Some(2) },
        Control::PhantomProbe,
        Control::Pause,
        Control::Resume,
        Control::Step,
        Control::ResetRunningStats { layer: None },
        Control::Quit,
        Control::SaveCheckpoint,
        Control::RestoreCheckpoint { from: Some(300) },
        Control::Restart { from: None },
    ];
    let mut wire: Vec<Vec<u8>> = vec![
        to_json(&hello(Some("s3cret-token"), false)),
        to_json(&hello(None, true)),
        to_json(&Refused::new("a wrong token")),
    ];
    wire.extend(controls.iter().map(to_json));
    Seeds {
        lines,
        whole,
        files,
        wire,
        header,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialise")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Numbers a hostile writer might put anywhere a number goes.
const NUMBERS: [&str; 18] = [
    "1e999",
    "-1e999",
    "1e-400",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "-9223372036854775809",
    "4294967296",
    "9007199254740993",
    "\"NaN\"",
    "\"inf\"",
    "\"-inf\"",
    "null",
    "-0",
    "0.0",
    "1.7976931348623157e308",
    "123456789012345678901234567890",
    "\"12\"",
];

/// JSON's structural characters, and a few that start or break tokens.
const STRUCTURAL: &[u8] = b"{}[]\",:0-.e\\\n ";

const KINDS: [&str; 11] = [
    "header",
    "snapshot",
    "control",
    "evaluation",
    "marker",
    "folding",
    "population",
    "probe",
    "end",
    "future",
    "",
];

/// A random position of a byte in `set`, if there is one (searching from a random start).
fn find_any(rng: &mut ChaCha8Rng, data: &[u8], set: &[u8]) -> Option<usize> {
    if data.is_empty() {
        return None;
    }
    let start = rng.gen_range(0..data.len());
    (start..data.len())
        .chain(0..start)
        .find(|&i| set.contains(&data[i]))
}

/// The byte range of the number starting at or after `at`.
fn number_at(data: &[u8], at: usize) -> Option<(usize, usize)> {
    let is_num = |b: u8| b.is_ascii_digit() || b"-+.eE".contains(&b);
    let start = (at..data.len()).find(|&i| data[i].is_ascii_digit())?;
    let start = (0..start)
        .rev()
        .take_while(|&i| is_num(data[i]))
        .last()
        .unwrap_or(start);
    let end = (start..data.len())
        .find(|&i| !is_num(data[i]))
        .unwrap_or(data.len());
    Some((start, end))
}

/// One deterministic mutation of `data`; `other` is another seed to splice from.
fn mutate(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, other: &[u8]) {
    if data.is_empty() {
        data.extend_from_slice(other);
        return;
    }
    let at = rng.gen_range(0..data.len());
    match rng.gen_range(0..11) {
        // Bit flips.
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..data.len());
                data[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        // Bytes inserted: random, or JSON's structural characters.
        1 => {
            let n = rng.gen_range(1..16);
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.gen_bool(0.5) {
                        STRUCTURAL[rng.gen_range(0..STRUCTURAL.len())]
                    } else {
                        rng.gen()
                    }
                })
                .collect();
            data.splice(at..at, bytes);
        }
        // Bytes deleted.
        2 => {
            let end = (at + rng.gen_range(1..64)).min(data.len());
            data.drain(at..end);
        }
        // A splice: a piece of another record in place of a piece of this one.
        3 => {
            if other.is_empty() {
                return;
            }
            let from = rng.gen_range(0..other.len());
            let to = (from + rng.gen_range(1..4096)).min(other.len());
            let end = (at + rng.gen_range(0..4096)).min(data.len());
            data.splice(at..end, other[from..to].iter().copied());
        }
        // A number replaced by a hostile one.
        4 => {
            if let Some((start, end)) = number_at(data, at) {
                let n = NUMBERS[rng.gen_range(0..NUMBERS.len())];
                data.splice(start..end, n.bytes());
            }
        }
        // Truncation.
        5 => data.truncate(at),
        // Array elements duplicated: an array's contents repeated up to thousands of times.
        6 => duplicate_array(rng, data),
        // Deep nesting where a value starts.
        7 => nest(rng, data),
        // The kind swapped for another.
        8 => {
            let tag = b"\"kind\":\"";
            if let Some(i) = data.windows(tag.len()).position(|w| w == tag) {
                let start = i + tag.len();
                if let Some(len) = data[start..].iter().position(|&b| b == b'"') {
                    let kind = KINDS[rng.gen_range(0..KINDS.len())];
                    data.splice(start..start + len, kind.bytes());
                }
            }
        }
        // A key renamed, or a key and its value removed (up to the next comma).
        9 => rename_or_drop_key(rng, data),
        // A whole other record glued on, with or without a newline between.
        _ => {
            if rng.gen_bool(0.5) {
                data.push(b'\n');
            }
            data.extend_from_slice(other);
        }
    }
}

/// Mutation 6: an array's contents repeated up to thousands of times.
fn duplicate_array(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if let Some(open) = find_any(rng, data, b"[") {
        if let Some(len) = data[open + 1..].iter().position(|&b| b == b']') {
            let inner = data[open + 1..open + 1 + len].to_vec();
            if !inner.is_empty() {
                // Now and then past every limit; mostly small, so cases stay quick.
                let budget = if rng.gen_bool(0.01) {
                    6 << 20
                } else {
                    16 << 10
                };
                let copies = rng.gen_range(1..=(budget / (inner.len() + 1)).max(1));
                let mut grown = Vec::with_capacity((inner.len() + 1) * copies);
                for _ in 0..copies {
                    grown.push(b',');
                    grown.extend_from_slice(&inner);
                }
                let end = open + 1 + len;
                data.splice(end..end, grown);
            }
        }
    }
}

/// Mutation 7: deep nesting where a value starts.
fn nest(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if let Some(colon) = find_any(rng, data, b":") {
        let depth = rng.gen_range(1..400);
        let (open, close) = if rng.gen_bool(0.5) {
            ("[", "]")
        } else {
            ("{\"a\":", "}")
        };
        let mut nest = open.repeat(depth);
        nest.push('1');
        nest.push_str(&close.repeat(depth));
        data.splice(colon + 1..colon + 1, nest.bytes());
    }
}

/// Mutation 9: a key renamed, or a key and its value removed (up to the next comma).
fn rename_or_drop_key(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if let Some(q) = find_any(rng, data, b"\"") {
        if let Some(len) = data[q + 1..].iter().position(|&b| b == b'"') {
            if rng.gen_bool(0.5) {
                let names: [&[u8]; 6] = [b"step", b"layers", b"kind", b"batch_mean", b"x", b""];
                let name = names[rng.gen_range(0..names.len())];
                data.splice(q + 1..q + 1 + len, name.iter().copied());
            } else if let Some(comma) = data[q..].iter().position(|&b| b == b',') {
                data.drain(q..q + comma + 1);
            }
        }
    }
}

/// The kind's variant, ignoring `whole` (the index guesses it from the text).
fn variant(kind: Kind) -> std::mem::Discriminant<Kind> {
    std::mem::discriminant(&kind)
}

/// One line through the index, the parse and the limits. Broken promises are returned.
fn session_line(line: &[u8], header: &RunHeader) -> Result<(), String> {
    let indexed = classify(line);
    let Ok(event) = parse_record(line) else {
        return Ok(());
    };
    let with_header = limits::check(&event, Some(header));
    let _ = limits::check(&event, None);
    // What parses writes and reads back the same.
    let json = serde_json::to_vec(&event).map_err(|e| format!("does not serialise: {e}"))?;
    let again = parse_record(&json).map_err(|e| format!("written, does not read back: {e}"))?;
    if serde_json::to_vec(&again).ok().as_ref() != Some(&json) {
        return Err("a second round trip changed it".into());
    }
    if limits::check(&again, Some(header)).is_ok() != with_header.is_ok() {
        return Err("the limits judge the round trip differently".into());
    }
    // The index does not lose a record that reads.
    if let Some(step) = event.step() {
        match indexed {
            Line::Record(kind, s, _) if variant(kind) == variant(Kind::of(&event)) && s == step => {
            }
            Line::Record(kind, s, _) => {
                return Err(format!(
                    "indexed as {kind:?} at step {s}, reads as {:?} at {step}",
                    Kind::of(&event)
                ))
            }
            _ => return Err("reads as a record, but the index skips it".into()),
        }
    }
    Ok(())
}

/// Bytes from a viewer, as the server reads them: hello first, then controls.
fn client_bytes(bytes: &[u8]) -> Result<(), String> {
    let mut input = Cursor::new(bytes);
    let mut first = true;
    loop {
        match read_line_limited(&mut input, MAX_CLIENT_LINE) {
            Ok(Some(line)) => {
                if line.len() > MAX_CLIENT_LINE || line.contains('\n') {
                    return Err("read_line_limited returned a line past its limit".into());
                }
                if first {
                    let _ = serde_json::from_str::<Hello>(&line);
                    first = false;
                }
                if let Ok(control) = serde_json::from_str::<Control>(&line) {
                    let json = serde_json::to_string(&control).map_err(|e| e.to_string())?;
                    // Compared as JSON: NaN is not equal to itself.
                    let again = serde_json::from_str::<Control>(&json)
                        .ok()
                        .and_then(|c| serde_json::to_string(&c).ok());
                    if again.as_ref() != Some(&json) {
                        return Err("a control does not round-trip".into());
                    }
                }
            }
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// Bytes from a server, as attach reads them: a refusal or the first record, then the stream.
fn server_bytes(bytes: &[u8]) -> Result<(), String> {
    let mut input = Cursor::new(bytes);
    let Ok(Some(first)) = read_line_limited(&mut input, limits::MAX_LINE) else {
        return Ok(());
    };
    let _ = serde_json::from_str::<Refused>(&first);
    let mut check = RecordCheck::new();
    let _ = check.line(first.as_bytes());
    let mut passed = Vec::new();
    read_records(&mut check, &mut input, |event| {
        passed.push(event);
        true
    });
    let mut check = RecordCheck::new();
    for event in passed {
        // What it passes on is within the limits.
        if let Event::Header(_) = &event {
            check = RecordCheck::new();
        }
        let _ = check.event(event);
    }
    Ok(())
}

/// A piece of a shipped session, mutated, read through `Reader` with small budgets.
fn session_file(rng: &mut ChaCha8Rng, seeds: &Seeds, dir: &Path, case: u64) -> Result<(), String> {
    let file = &seeds.files[rng.gen_range(0..seeds.files.len())];
    let start = if rng.gen_bool(0.5) {
        0
    } else {
        rng.gen_range(0..file.len())
    };
    let end = (start + rng.gen_range(1..400_000)).min(file.len());
    let mut data = file[start..end].to_vec();
    for _ in 0..rng.gen_range(1..8) {
        let other = &seeds.lines[rng.gen_range(0..seeds.lines.len())];
        mutate(rng, &mut data, other);
    }
    let path = dir.join(format!("case{case}.jsonl"));
    std::fs::write(&path, &data).map_err(|e| e.to_string())?;
    if let Ok(mut reader) = Reader::open(&path) {
        while let Ok(poll) = reader.poll(rng.gen_range(1..100_000)) {
            if poll.at_end {
                break;
            }
        }
        let entries = reader.entries().to_vec();
        let mut read = 0u64;
        for e in &entries {
            if reader.read(e).is_ok() {
                read += 1;
            }
        }
        let complete = data.iter().filter(|&&b| b == b'\n').count() as u64;
        let skipped = reader.skipped();
        if read + skipped.lines + skipped.unknown_kinds > complete {
            return Err(format!(
                "{read} read + {skipped:?} for {complete} complete lines"
            ));
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

static PANIC: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Inside a case: a panic is caught and counted, its message kept for the report.
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn fuzz_session_and_wire_parsers() {
    let cases: u64 = std::env::var("BNTOP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("BNTOP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11);
    let seeds = seeds();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let started = Instant::now();
    // A case's panic is caught and counted; its message is kept for the report, not printed.
    let default_hook = std::sync::Arc::new(panic::take_hook());
    let hook = std::sync::Arc::clone(&default_hook);
    panic::set_hook(Box::new(move |info| {
        if !IN_CASE.with(|c| c.get()) {
            return hook(info);
        }
        if let Ok(mut last) = PANIC.lock() {
            *last = Some(info.to_string());
        }
    }));
    let mut panics = 0u64;
    let mut broken = 0u64;
    let mut reports: Vec<String> = Vec::new();
    let mut bytes = 0u64;
    for case in 0..cases {
        let (what, input) = if case % FILE_EVERY == FILE_EVERY - 1 {
            ("file", Vec::new())
        } else {
            let r = rng.gen_range(0..100);
            let pool = if r < 75 {
                "session"
            } else if r < 90 {
                "client"
            } else {
                "server"
            };
            let mut data = match pool {
                "client" => seeds.wire[rng.gen_range(0..seeds.wire.len())].clone(),
                _ if rng.gen_bool(0.1) => {
                    seeds.lines[seeds.whole[rng.gen_range(0..seeds.whole.len())]].clone()
                }
                _ => seeds.lines[rng.gen_range(0..seeds.lines.len())].clone(),
            };
            if pool == "server" {
                // A stream: the header, then a few records.
                let mut stream = seeds.lines[0].clone();
                stream.push(b'\n');
                for _ in 0..rng.gen_range(0..4) {
                    stream.extend_from_slice(&seeds.lines[rng.gen_range(0..seeds.lines.len())]);
                    stream.push(b'\n');
                }
                stream.extend_from_slice(&data);
                data = stream;
            }
            for _ in 0..rng.gen_range(1..4) {
                let other = if pool == "client" {
                    &seeds.wire[rng.gen_range(0..seeds.wire.len())]
                } else {
                    &seeds.lines[rng.gen_range(0..seeds.lines.len())]
                };
                mutate(&mut rng, &mut data, other);
            }
            (pool, data)
        };
        bytes += input.len() as u64;
        IN_CASE.with(|c| c.set(true));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| match what {
            "session" => session_line(&input, &seeds.header),
            "client" => client_bytes(&input),
            "server" => server_bytes(&input),
            _ => session_file(&mut rng, &seeds, dir.path(), case),
        }));
        IN_CASE.with(|c| c.set(false));
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(promise)) => {
                broken += 1;
                promise
            }
            Err(_) => {
                panics += 1;
                let message = PANIC.lock().ok().and_then(|mut m| m.take());
                format!("panic: {}", message.unwrap_or_default())
            }
        };
        if reports.len() < 10 {
            let shown = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
            reports.push(format!("case {case} ({what}): {problem}\n  input: {shown}"));
        }
    }
    drop(panic::take_hook());
    if let Ok(hook) = std::sync::Arc::try_unwrap(default_hook) {
        panic::set_hook(hook);
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz: {cases} cases ({} MB of input) in {elapsed:.1} s, {:.0} cases/s: {panics} panics, {broken} broken promises",
        bytes >> 20,
        cases as f64 / elapsed
    );
    assert!(
        panics == 0 && broken == 0,
        "{panics} panics and {broken} broken promises in {cases} cases (seed {seed}):\n{}",
        reports.join("\n")
    );
}
