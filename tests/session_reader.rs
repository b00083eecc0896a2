//! Session reading: round trips of every record kind, a killed writer, following a growing file,
//! truncation and replacement, forward compatibility, bad input of every kind, a mutation fuzz
//! test, and the CSV export.
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use bntop::protocol::{
    limits, parse_record, BnMode, Control, ControlEvent, DataOrder, EndReason, EvalScore,
    Evaluation, Event, FoldingReport, LayerSnapshot, Marker, MarkerKind, PopulationLayer,
    PopulationReport, ProbeLayer, ProbeReport, RecordingPolicy, RunEnd, Snapshot,
};
use bntop::session::export::{write_csv, COLUMNS};
use bntop::session::reader::{last_at_or_before, Entry, Kind, Reader, MAX_LINE};
use bntop::session::{SessionWriter, DEFAULT_POLICY};
use bntop::ui::synthetic;

const EVERY_SNAPSHOT_WHOLE: RecordingPolicy = RecordingPolicy {
    snapshot_interval_s: 0.0,
    channel_arrays_interval_s: 0.0,
};

fn end(step: u64) -> Event {
    Event::End(RunEnd {
        step,
        reason: EndReason::Completed,
        elapsed_s: step as f64 / 150.0,
        message: None,
    })
}

/// A synthetic run of `steps` recorded with `policy`, ended.
fn record(path: &Path, steps: u64, policy: RecordingPolicy) {
    let mut writer = SessionWriter::create(path, policy).expect("create");
    let mut events = synthetic::run(steps, 1);
    events.push(end(steps));
    for e in &events {
        writer.record(e).expect("record");
    }
}

/// The file's complete lines: (offset, bytes without the newline).
fn lines(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            out.push((start as u64, &bytes[start..i]));
            start = i + 1;
        }
    }
    out
}

fn poll_to_end(reader: &mut Reader) -> usize {
    let mut new = 0;
    loop {
        let poll = reader.poll(usize::MAX).expect("poll");
        new += poll.new_entries;
        if poll.at_end {
            return new;
        }
    }
}

fn read_all(reader: &mut Reader) -> Vec<Event> {
    let entries = reader.entries().to_vec();
    entries
        .iter()
        .map(|e| reader.read(e).expect("every indexed record reads"))
        .collect()
}

/// Equality that holds for NaN: both serialise the same way.
fn json(e: &Event) -> String {
    serde_json::to_string(e).expect("serialise")
}

/// The line as serde_json parses it. (Not compared with the bytes: without serde_json's
/// `float_roundtrip` feature an f64 such as `time_s` may come back one ulp off.)
fn parse(line: &[u8]) -> Event {
    serde_json::from_slice(line).expect("a record")
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).expect("open");
    f.write_all(bytes).expect("append");
}

fn snapshot_of(events: &[Event], step: u64) -> Snapshot {
    events
        .iter()
        .find_map(|e| match e {
            Event::Snapshot(s) if s.step == step => Some(s.clone()),
            _ => None,
        })
        .expect("snapshot")
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn every_record_kind_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kinds.jsonl");
    let run = synthetic::run(3, 2);
    let mut header = match &run[0] {
        Event::Header(h) => h.clone(),
        _ => panic!("header first"),
    };
    let mut whole = snapshot_of(&run, 1);
    whole.loss = f32::NAN;
    whole.layers[0].batch_mean[0] = f32::INFINITY;
    whole.layers[1].d[2] = f32::NEG_INFINITY;
    whole.layers[2].summary.r_max = f32::NAN;
    whole.layers[2].bias_grad = Some(vec![f32::NAN, 1.0]);
    let mut summary = snapshot_of(&run, 2);
    for l in &mut summary.layers {
        // Mode, momentum and summary only, as the writer decimates.
        let only =
            serde_json::json!({"mode": l.mode, "momentum": l.momentum, "summary": l.summary});
        *l = serde_json::from_value(only).expect("summary-only layer");
    }
    summary.layers[1].mode = BnMode::Eval;
    let events = vec![
        Event::Header(header.clone()),
        Event::Snapshot(whole),
        Event::Control(ControlEvent {
            step: 1,
            control: Control::SetMomentum {
                layer: Some(1),
                momentum: 0.01,
            },
            rejected: None,
        }),
        Event::Control(ControlEvent {
            step: 1,
            control: Control::SetLr { lr: f32::INFINITY },
            rejected: Some("lr must be finite and positive".into()),
        }),
        Event::Snapshot(summary),
        Event::Evaluation(Evaluation {
            step: 2,
            samples: 360,
            precise_stats: None,
            batch_stats: EvalScore {
                loss: 0.5,
                accuracy: 0.9,
            },
            running_stats: EvalScore {
                loss: f32::NAN,
                accuracy: f32::NEG_INFINITY,
            },
        }),
        Event::Marker(Marker {
            step: 2,
            kind: MarkerKind::Epoch,
            label: "epoch 1 \"quoted\" é".into(),
        }),
        Event::Marker(Marker {
            step: 3,
            kind: MarkerKind::Divergence,
            label: "loss NaN".into(),
        }),
        Event::End(RunEnd {
            step: 3,
            reason: EndReason::Diverged,
            elapsed_s: 0.02,
            message: Some("loss became NaN".into()),
        }),
    ];
    let mut writer = SessionWriter::create(&path, EVERY_SNAPSHOT_WHOLE).expect("create");
    for e in &events {
        writer.record(e).expect("record");
    }
    drop(writer);

    let mut reader = Reader::open(&path).expect("open");
    assert_eq!(poll_to_end(&mut reader), events.len());
    header.recording = Some(EVERY_SNAPSHOT_WHOLE);
    assert_eq!(reader.header(), Some(&*header));
    let kinds: Vec<Kind> = reader.entries().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Header,
            Kind::Snapshot { whole: true },
            Kind::Control,
            Kind::Control,
            Kind::Snapshot { whole: false },
            Kind::Evaluation,
            Kind::Marker,
            Kind::Marker,
            Kind::End
        ]
    );
    let steps: Vec<u64> = reader.entries().iter().map(|e| e.step).collect();
    assert_eq!(steps, [0, 1, 1, 1, 2, 2, 2, 3, 3]);
    let read = read_all(&mut reader);
    let mut expected = events.clone();
    expected[0] = Event::Header(header);
    for (i, (got, want)) in read.iter().zip(&expected).enumerate() {
        assert_eq!(json(got), json(want), "record {i}");
        assert_eq!(Kind::of(got), kinds[i]);
    }
    let Event::Snapshot(s) = &read[1] else {
        panic!("a snapshot")
    };
    assert!(s.loss.is_nan() && s.layers[0].batch_mean[0] == f32::INFINITY);
    assert_eq!(reader.skipped(), &Default::default());
    assert_eq!(
        reader.bytes_indexed(),
        fs::metadata(&path).expect("meta").len()
    );
}

#[test]
fn a_writer_killed_mid_record_loses_only_that_record_until_it_is_finished() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full_path = dir.path().join("full.jsonl");
    record(&full_path, 300, DEFAULT_POLICY);
    let full = fs::read(&full_path).expect("read");
    let all = lines(&full);
    let (cut_line, (offset, line)) = (12, all[12]);
    let cut = offset as usize + line.len() / 2;

    let path = dir.path().join("killed.jsonl");
    fs::write(&path, &full[..cut]).expect("write");
    let mut reader = Reader::open(&path).expect("open");
    let poll = reader.poll(usize::MAX).expect("poll");
    assert!(poll.at_end && !poll.reset);
    assert_eq!(poll.new_entries, cut_line);
    assert_eq!(reader.entries().len(), cut_line);
    assert_eq!(reader.bytes_indexed(), offset);
    assert_eq!(
        reader.skipped(),
        &Default::default(),
        "a partial line is not bad"
    );
    // Nothing changes while the file does not.
    assert_eq!(reader.poll(usize::MAX).expect("poll").new_entries, 0);

    append(&path, &full[cut..offset as usize + line.len() + 1]);
    let poll = reader.poll(usize::MAX).expect("poll");
    assert_eq!((poll.new_entries, poll.at_end), (1, true));
    let entry = reader.entries()[cut_line];
    assert_eq!((entry.offset, entry.len as usize), (offset, line.len()));
    let event = reader.read(&entry).expect("the finished record reads");
    assert_eq!(json(&event), json(&parse(line)));

    append(&path, &full[offset as usize + line.len() + 1..]);
    assert_eq!(poll_to_end(&mut reader), all.len() - cut_line - 1);
    assert_eq!(read_all(&mut reader).len(), all.len());
    assert_eq!(reader.skipped().lines, 0);
}

#[test]
fn a_follower_sees_lines_as_they_are_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.jsonl");
    record(&src, 200, DEFAULT_POLICY);
    let full = fs::read(&src).expect("read");
    let all = lines(&full);
    let path = dir.path().join("growing.jsonl");
    fs::write(&path, b"").expect("create");
    let mut reader = Reader::open(&path).expect("open on an empty file");
    assert!(reader.header().is_none());
    let poll = reader.poll(1 << 16).expect("poll");
    assert_eq!((poll.new_entries, poll.at_end), (0, true));

    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (i, (offset, line)) in all.iter().enumerate() {
        let bytes = &full[*offset as usize..*offset as usize + line.len() + 1];
        // Half the lines arrive in two pieces with a poll in between.
        if rng.gen_bool(0.5) {
            let split = rng.gen_range(0..bytes.len());
            append(&path, &bytes[..split]);
            let poll = reader.poll(1 << 16).expect("poll");
            assert_eq!((poll.new_entries, poll.at_end), (0, true), "line {i}");
            append(&path, &bytes[split..]);
        } else {
            append(&path, bytes);
        }
        let poll = reader.poll(1 << 16).expect("poll");
        assert_eq!((poll.new_entries, poll.reset), (1, false), "line {i}");
        let entry = *reader.entries().last().expect("entry");
        assert_eq!(entry.offset, *offset);
        // Reads between polls must not disturb the indexing position.
        let event = reader.read(&entry).expect("read");
        assert_eq!(json(&event), json(&parse(line)));
    }
    assert!(reader.header().is_some());
    assert_eq!(reader.entries().len(), all.len());
    assert_eq!(reader.skipped(), &Default::default());
}

#[test]
fn small_budgets_index_in_pieces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    record(&path, 300, EVERY_SNAPSHOT_WHOLE);
    let size = fs::metadata(&path).expect("meta").len();
    let mut reader = Reader::open(&path).expect("open");
    assert_eq!(reader.entries().len(), 1, "open reads just the header");
    let mut polls = 0;
    let mut total = 0;
    loop {
        let poll = reader.poll(100_000).expect("poll");
        polls += 1;
        total += poll.new_entries;
        // Read the newest entry each time, as a replay showing the latest frame would.
        let last = *reader.entries().last().expect("entries");
        reader.read(&last).expect("read");
        if poll.at_end {
            break;
        }
    }
    assert_eq!(total, reader.entries().len());
    assert!(
        polls >= (size / 130_000) as usize,
        "{polls} polls for {size} bytes"
    );
    assert_eq!(reader.bytes_indexed(), size);
    let expected = synthetic::run(300, 1).len() + 1;
    assert_eq!(reader.entries().len(), expected);
}

#[test]
fn truncation_and_replacement_start_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    record(&path, 200, DEFAULT_POLICY);
    let full = fs::read(&path).expect("read");
    let all = lines(&full);
    let mut reader = Reader::open(&path).expect("open");
    poll_to_end(&mut reader);
    assert_eq!(reader.entries().len(), all.len());

    // Truncated in place (same inode) to its first five lines.
    let keep = all[5].0;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(keep)
        .expect("truncate");
    let poll = reader.poll(usize::MAX).expect("poll");
    assert!(poll.reset && poll.at_end);
    assert_eq!(poll.new_entries, 5);
    assert_eq!(reader.entries().len(), 5);
    assert!(reader.header().is_some());
    assert_eq!(read_all(&mut reader).len(), 5);

    // Replaced: another recording renamed over the path.
    let other = dir.path().join("other.jsonl");
    record(&other, 60, EVERY_SNAPSHOT_WHOLE);
    let other_lines = lines(&fs::read(&other).expect("read")).len();
    fs::rename(&other, &path).expect("rename");
    let poll = reader.poll(usize::MAX).expect("poll");
    assert!(poll.reset);
    poll_to_end(&mut reader);
    assert_eq!(reader.entries().len(), other_lines);
    assert_eq!(
        reader.header().and_then(|h| h.recording.clone()),
        Some(EVERY_SNAPSHOT_WHOLE)
    );
    let events = read_all(&mut reader);
    assert!(matches!(events.last(), Some(Event::End(e)) if e.step == 60));
    // No further reset while the file stays the same.
    assert!(!reader.poll(usize::MAX).expect("poll").reset);
}

fn header_json(major: u32, minor: u32, format: &str) -> String {
    let mut v = serde_json::to_value(Event::Header(Box::new(synthetic::header()))).expect("json");
    v["version_major"] = major.into();
    v["version_minor"] = minor.into();
    v["format"] = format.into();
    v.to_string()
}

#[test]
fn a_newer_major_version_or_another_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("future.jsonl");
    // A 2.0 header whose layout has changed: refused for its version, not as a bad line.
    let mut v: serde_json::Value = serde_json::from_str(&header_json(2, 0, "bntop")).expect("v");
    v["config"] = "changed".into();
    fs::write(&path, format!("{v}\n")).expect("write");
    let err = Reader::open(&path).err().expect("refused").to_string();
    assert_eq!(
        err,
        format!(
            "{}: session format bntop 2.0 is newer than this bntop reads (1.x); upgrade bntop",
            path.display()
        )
    );
    // Also when a garbage line comes first: the header is still the first good record.
    fs::write(&path, format!("garbage\n{v}\n")).expect("write");
    assert!(Reader::open(&path)
        .err()
        .expect("refused")
        .to_string()
        .contains("upgrade bntop"));

    fs::write(&path, format!("{}\n", header_json(1, 0, "other"))).expect("write");
    let err = Reader::open(&path).err().expect("refused").to_string();
    assert!(
        err.starts_with(&path.display().to_string()) && err.contains("other"),
        "{err}"
    );
    assert!(!err.contains('\n'));

    // Newer minor versions are read.
    fs::write(&path, format!("{}\n", header_json(1, 99, "bntop"))).expect("write");
    let reader = Reader::open(&path).expect("a newer minor version reads");
    assert_eq!(reader.header().map(|h| h.version_minor), Some(99));

    let missing = dir.path().join("missing.jsonl");
    let err = Reader::open(&missing).err().expect("missing").to_string();
    assert!(
        err.contains("missing.jsonl") && !err.contains('\n'),
        "{err}"
    );
    let err = Reader::open(dir.path())
        .err()
        .expect("a directory")
        .to_string();
    assert!(err.contains("directory") && err.contains(&dir.path().display().to_string()));
}

#[test]
fn a_newer_header_appearing_in_a_followed_file_is_an_error_on_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("later.jsonl");
    fs::write(&path, b"").expect("write");
    let mut reader = Reader::open(&path).expect("empty is fine");
    append(
        &path,
        format!("{}\n", header_json(3, 1, "bntop")).as_bytes(),
    );
    let err = reader.poll(usize::MAX).expect_err("refused").to_string();
    assert!(err.contains("bntop 3.1 is newer"), "{err}");
    // It stays refused: the line is not consumed as if it were garbage.
    assert!(reader.poll(usize::MAX).is_err());
}

#[test]
fn unknown_record_kinds_are_skipped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.jsonl");
    record(&src, 100, DEFAULT_POLICY);
    let full = fs::read(&src).expect("read");
    let all = lines(&full);
    let mut text = Vec::new();
    for (i, (_, line)) in all.iter().enumerate() {
        text.extend_from_slice(line);
        text.push(b'\n');
        if i == 3 {
            text.extend_from_slice(
                b"{\"kind\":\"annotation\",\"step\":7,\"text\":\"from bntop 1.9\"}\n",
            );
            text.extend_from_slice(b"{\"note\":{\"nested\":[1,2]},\"kind\":\"weights\"}\n");
        }
    }
    let path = dir.path().join("future.jsonl");
    fs::write(&path, &text).expect("write");
    let mut reader = Reader::open(&path).expect("open");
    poll_to_end(&mut reader);
    assert_eq!(reader.entries().len(), all.len());
    assert_eq!(reader.skipped().unknown_kinds, 2);
    assert_eq!(reader.skipped().lines, 0);
    assert!(reader.entries().iter().all(|e| e.kind != Kind::Unknown));
    assert_eq!(read_all(&mut reader).len(), all.len());
}

#[test]
fn bad_input_is_skipped_and_counted_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");

    let empty = dir.path().join("empty.jsonl");
    fs::write(&empty, b"").expect("write");
    let mut reader = Reader::open(&empty).expect("empty opens");
    let poll = reader.poll(usize::MAX).expect("poll");
    assert_eq!((poll.new_entries, poll.at_end), (0, true));
    assert!(reader.header().is_none() && reader.entries().is_empty());

    let src = dir.path().join("src.jsonl");
    record(&src, 100, DEFAULT_POLICY);
    let full = fs::read(&src).expect("read");
    let good = lines(&full);

    // No header: the records are still read.
    let headless = dir.path().join("headless.jsonl");
    fs::write(&headless, &full[good[1].0 as usize..]).expect("write");
    let mut reader = Reader::open(&headless).expect("open");
    poll_to_end(&mut reader);
    assert!(reader.header().is_none());
    assert_eq!(read_all(&mut reader).len(), good.len() - 1);

    // Garbage of every sort between the good lines, including one that only fails when read.
    let garbage: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        b"".to_vec(),
        b"{".to_vec(),
        b"[1,2,3]".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01, 0x80, b'{', 0xc3],
        b"{\"kind\":\"snapshot\"}".to_vec(),
        b"{\"kind\":\"snapshot\",\"step\":5,\"epoch\":".to_vec(),
        b"{\"kind\":\"snapshot\",\"step\":5,\"x\":}".to_vec(),
        b"{\"kind\":\"control\",\"step\":-1}".to_vec(),
        b"{\"kind\":7,\"step\":1}".to_vec(),
    ];
    let mut text = Vec::new();
    for (i, (_, line)) in good.iter().enumerate() {
        if let Some(g) = garbage.get(i) {
            text.extend_from_slice(g);
            text.push(b'\n');
        }
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let path = dir.path().join("garbage.jsonl");
    fs::write(&path, &text).expect("write");
    let mut reader = Reader::open(&path).expect("open");
    poll_to_end(&mut reader);
    assert!(
        reader.header().is_some(),
        "the header is found after garbage"
    );
    let entries = reader.entries().to_vec();
    let mut read = 0;
    for e in &entries {
        if reader.read(e).is_ok() {
            read += 1;
        }
    }
    // Reading the bad one again does not count it twice.
    for e in &entries {
        let _ = reader.read(e);
    }
    assert_eq!(read, good.len());
    assert_eq!(reader.skipped().lines, garbage.len() as u64);
    assert_eq!(reader.skipped().unknown_kinds, 0);
    let problem = reader.skipped().last_problem.clone().expect("a problem");
    assert!(problem.contains("byte "), "{problem}");
}

#[test]
fn an_enormous_line_is_streamed_past() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.jsonl");
    record(&src, 60, DEFAULT_POLICY);
    let full = fs::read(&src).expect("read");
    let good = lines(&full);
    let split = good[3].0 as usize;
    let huge_at = split as u64;
    let mut text = full[..split].to_vec();
    text.extend(std::iter::repeat_n(b'x', MAX_LINE + 1000));
    text.push(b'\n');
    text.extend_from_slice(&full[split..]);
    // An enormous last line with no newline yet: pending, not bad.
    text.extend(std::iter::repeat_n(b'y', MAX_LINE + 10));
    let path = dir.path().join("huge.jsonl");
    fs::write(&path, &text).expect("write");

    let mut reader = Reader::open(&path).expect("open");
    poll_to_end(&mut reader);
    assert_eq!(read_all(&mut reader).len(), good.len());
    assert_eq!(reader.skipped().lines, 1);
    let problem = reader.skipped().last_problem.clone().expect("problem");
    assert!(problem.contains(&format!("byte {huge_at}")), "{problem}");
    assert_eq!(
        reader.bytes_indexed(),
        (full.len() + MAX_LINE + 1001) as u64
    );

    // Its newline arrives, then a good record.
    append(&path, b"\n");
    append(&path, &full[good[1].0 as usize..good[2].0 as usize]);
    let poll = reader.poll(usize::MAX).expect("poll");
    assert_eq!((poll.new_entries, poll.at_end), (1, true));
    assert_eq!(reader.skipped().lines, 2);
    let last = *reader.entries().last().expect("entry");
    reader
        .read(&last)
        .expect("the record after the enormous line reads");
}

/// Applies one random mutation of the kinds a damaged or concatenated file shows.
fn mutate(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        data.extend((0..rng.gen_range(1..50)).map(|_| rng.gen::<u8>()));
        return;
    }
    let at = rng.gen_range(0..data.len());
    match rng.gen_range(0..6) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..data.len());
                data[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 => {
            let end = (at + rng.gen_range(1..2000)).min(data.len());
            data.drain(at..end);
        }
        2 => {
            let end = (at + rng.gen_range(1..5000)).min(data.len());
            let copy = data[at..end].to_vec();
            let to = rng.gen_range(0..=data.len());
            data.splice(to..to, copy);
        }
        3 => {
            let junk: Vec<u8> = (0..rng.gen_range(1..64))
                .map(|_| if rng.gen_bool(0.2) { b'\n' } else { rng.gen() })
                .collect();
            data.splice(at..at, junk);
        }
        4 => data.truncate(at),
        _ => {
            // Replace a byte with one of JSON's structural characters.
            data[at] = *b"{}[]\",:0\n".get(rng.gen_range(0..9)).expect("in range");
        }
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn mutated_sessions_never_panic_and_every_indexed_line_is_accounted_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.jsonl");
    record(&src, 300, DEFAULT_POLICY);
    let original = fs::read(&src).expect("read");
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut refused = 0;
    for case in 0..150 {
        let mut data = original.clone();
        for _ in 0..rng.gen_range(1..6) {
            mutate(&mut rng, &mut data);
        }
        let path = dir.path().join(format!("case{case}.jsonl"));
        fs::write(&path, &data).expect("write");
        let mut reader = match Reader::open(&path) {
            Ok(r) => r,
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("upgrade bntop") || e.contains("not a bntop session"),
                    "{e}"
                );
                refused += 1;
                continue;
            }
        };
        // Random budgets, with reads in between.
        let mut failed = false;
        loop {
            match reader.poll(rng.gen_range(1..40_000)) {
                Ok(p) if p.at_end => break,
                Ok(_) => {}
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains("upgrade bntop") || e.contains("not a bntop"),
                        "{e}"
                    );
                    failed = true;
                    break;
                }
            }
            if let Some(e) = reader.entries().last().copied() {
                let _ = reader.read(&e);
            }
        }
        if failed {
            refused += 1;
            continue;
        }
        let complete = lines(&data);
        let entries: Vec<Entry> = reader.entries().to_vec();
        let mut read_ok = 0u64;
        for e in &entries {
            let end = (e.offset + u64::from(e.len)) as usize;
            assert_eq!(
                data.get(end),
                Some(&b'\n'),
                "case {case}: an entry ends a line"
            );
            assert!(e.offset == 0 || data[e.offset as usize - 1] == b'\n');
            if let Ok(event) = reader.read(e) {
                read_ok += 1;
                let parsed: Event =
                    serde_json::from_slice(&data[e.offset as usize..end]).expect("parses");
                assert_eq!(json(&event), json(&parsed));
                assert_eq!(event.step().unwrap_or(0), e.step);
            }
        }
        // Every complete line is read, counted bad (when indexed or when read, once), or counted
        // as an unknown kind.
        let skipped = reader.skipped();
        assert_eq!(
            read_ok + skipped.lines + skipped.unknown_kinds,
            complete.len() as u64,
            "case {case}: {skipped:?}"
        );
        // No good record is lost.
        let indexed: std::collections::HashSet<u64> = entries.iter().map(|e| e.offset).collect();
        for (offset, line) in &complete {
            if let Ok(event) = serde_json::from_slice::<Event>(line) {
                if !matches!(event, Event::Unknown | Event::Header(_)) {
                    assert!(
                        indexed.contains(offset),
                        "case {case}: good line at {offset} lost"
                    );
                }
            }
        }
        let _ = fs::remove_file(&path);
    }
    assert!(refused < 20, "{refused} of 150 cases refused");
}

#[test]
fn last_at_or_before_finds_the_newest_whole_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    record(&path, 1000, DEFAULT_POLICY);
    let mut reader = Reader::open(&path).expect("open");
    poll_to_end(&mut reader);
    let whole = |e: &Entry| e.kind == Kind::Snapshot { whole: true };
    let entries = reader.entries().to_vec();
    for step in [1, 2, 299, 300, 301, 650, 1000, 5000] {
        let i = last_at_or_before(&entries, step, whole).expect("found");
        let linear = entries
            .iter()
            .rposition(|e| e.step <= step && whole(e))
            .expect("linear");
        assert_eq!(i, linear, "step {step}");
        let Event::Snapshot(s) = reader.read(&entries[i]).expect("read") else {
            panic!("a snapshot")
        };
        assert!(s.step <= step && !s.layers[0].batch_mean.is_empty());
    }
    assert_eq!(last_at_or_before(&entries, 0, whole), None);
    assert_eq!(
        last_at_or_before(&entries, 0, |_| true),
        Some(0),
        "the header"
    );
}

#[test]
fn csv_export_has_one_row_per_snapshot_and_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    record(&path, 300, DEFAULT_POLICY);
    let mut reader = Reader::open(&path).expect("open");
    let mut out = Vec::new();
    let stats = write_csv(&mut reader, None, &mut out).expect("export");
    let text = String::from_utf8(out).expect("utf8");
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], COLUMNS);
    let snapshots = reader
        .entries()
        .iter()
        .filter(|e| matches!(e.kind, Kind::Snapshot { .. }))
        .count();
    assert_eq!(stats.rows, snapshots as u64 * 3);
    assert_eq!(rows.len(), 1 + snapshots * 3);
    assert_eq!(stats.skipped_lines, 0);
    let columns = COLUMNS.split(',').count();
    assert!(rows.iter().all(|r| r.split(',').count() == columns));
    let first: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(&first[..2], ["1", "0"]);
    assert_eq!(first[6], "block1");
    assert_eq!(first[7], "train");
    assert!(first[20].parse::<f32>().is_ok(), "the first step is whole");
    // Summary-only rows: the four channel means empty, the summary's radial fraction there.
    assert!(
        rows.iter().any(|r| r.contains(",,,,")
            && r.rsplit(',')
                .next()
                .is_some_and(|x| x.parse::<f32>().is_ok())),
        "summary-only rows"
    );
    assert!(rows.iter().any(|r| r.contains(",block2,eval,")));

    for layer in ["block2", "1"] {
        let mut reader = Reader::open(&path).expect("open");
        let mut out = Vec::new();
        let stats = write_csv(&mut reader, Some(layer), &mut out).expect("export");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(stats.rows, snapshots as u64);
        assert!(text
            .lines()
            .skip(1)
            .all(|r| r.split(',').nth(6) == Some("block2")));
    }
    let mut reader = Reader::open(&path).expect("open");
    let err = write_csv(&mut reader, Some("block9"), &mut Vec::new())
        .expect_err("unknown")
        .to_string();
    assert!(
        err.contains("block1, block2, block3") && err.contains("run.jsonl"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn csv_export_writes_non_finite_values_and_skips_bad_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("nan.jsonl");
    let mut events = synthetic::run(3, 1);
    for e in &mut events {
        if let Event::Snapshot(s) = e {
            if s.step == 2 {
                s.loss = f32::NAN;
                s.layers[0].summary.drift = f32::INFINITY;
                s.layers[0].batch_mean[0] = f32::NEG_INFINITY;
            }
        }
    }
    let mut writer = SessionWriter::create(&path, EVERY_SNAPSHOT_WHOLE).expect("create");
    for e in &events {
        writer.record(e).expect("record");
    }
    drop(writer);
    append(
        &path,
        b"{\"kind\":\"snapshot\",\"step\":9,\"broken\":}\nnot json\n",
    );
    let mut reader = Reader::open(&path).expect("open");
    let mut out = Vec::new();
    let stats = write_csv(&mut reader, Some("block1"), &mut out).expect("export");
    assert_eq!(stats.rows, 3);
    assert_eq!(stats.skipped_lines, 2);
    let text = String::from_utf8(out).expect("utf8");
    let row: Vec<&str> = text.lines().nth(2).expect("row").split(',').collect();
    assert_eq!(
        (row[0], row[3], row[9], row[20]),
        ("2", "NaN", "inf", "-inf")
    );
}

/// Every float of `value` (a JSON number with a fraction or exponent) replaced by a non-finite
/// spelling, in turn "NaN", "inf", "-inf"; returns how many were replaced.
fn make_non_finite(value: &mut serde_json::Value, count: &mut usize) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            *value = Value::from(["NaN", "inf", "-inf"][*count % 3]);
            *count += 1;
        }
        Value::Array(xs) => xs.iter_mut().for_each(|x| make_non_finite(x, count)),
        Value::Object(m) => m.values_mut().for_each(|x| make_non_finite(x, count)),
        _ => {}
    }
}

/// One record of every kind, with every optional float field present.
fn every_float_field() -> Vec<Event> {
    let run = synthetic::run(3, 2);
    let Event::Header(mut header) = run[0].clone() else {
        panic!("header first")
    };
    header.recording = Some(RecordingPolicy {
        snapshot_interval_s: 0.04,
        channel_arrays_interval_s: 2.0,
    });
    let mut whole = snapshot_of(&run, 1);
    whole.layers[0].bias_grad = Some(vec![0.5; whole.layers[0].batch_mean.len()]);
    let channels: Vec<usize> = header.layers.iter().map(|l| l.channels).collect();
    let score = EvalScore {
        loss: 0.5,
        accuracy: 0.25,
    };
    vec![
        Event::Header(header),
        Event::Snapshot(whole),
        Event::Control(ControlEvent {
            step: 1,
            control: Control::SetMomentum {
                layer: None,
                momentum: 0.5,
            },
            rejected: None,
        }),
        Event::Control(ControlEvent {
            step: 1,
            control: Control::SetLr { lr: 0.5 },
            rejected: None,
        }),
        Event::Evaluation(Evaluation {
            step: 1,
            samples: 360,
            batch_stats: score,
            running_stats: score,
            precise_stats: Some(score),
        }),
        Event::Folding(FoldingReport {
            step: 1,
            samples: 360,
            max_abs_diff: 0.5,
            unfolded_us_per_image: 0.5,
            folded_us_per_image: 0.5,
        }),
        Event::Population(PopulationReport {
            step: 1,
            samples: 1024,
            order: DataOrder::ClassSorted,
            order_batches: 16,
            layers: channels
                .iter()
                .map(|&c| PopulationLayer {
                    mean: vec![0.5; c],
                    var: vec![0.5; c],
                    var_ratio: 0.5,
                    n_eff: 0.5,
                    predicted_ratio: 0.5,
                    running_var_ratio: 0.5,
                })
                .collect(),
        }),
        Event::Probe(ProbeReport {
            step: 1,
            batch: 64,
            layers: channels
                .iter()
                .map(|_| ProbeLayer {
                    train: 0.5,
                    train_cancellation: 0.5,
                    stop_gradient: 0.5,
                    stop_gradient_predicted: 0.5,
                    eval: 0.5,
                    eval_predicted: 0.5,
                })
                .collect(),
        }),
        end(3),
    ]
}

#[test]
fn every_float_field_reads_and_writes_nan_and_infinities_as_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("non-finite.jsonl");
    let mut file = String::new();
    let mut wanted = Vec::new();
    for event in every_float_field() {
        let mut value = serde_json::to_value(&event).expect("to a value");
        let mut floats = 0;
        make_non_finite(&mut value, &mut floats);
        assert!(floats > 0, "{}: no float field", json(&event));
        let line = value.to_string();
        // Read: every float field takes the strings.
        let parsed = parse_record(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        // Written: the strings again, never `null`.
        let back = serde_json::to_value(&parsed).expect("to a value");
        assert_eq!(back, value, "{line}");
        file.push_str(&line);
        file.push('\n');
        wanted.push(line);
    }
    fs::write(&path, &file).expect("write");
    let mut reader = Reader::open(&path).expect("open");
    poll_to_end(&mut reader);
    let read = read_all(&mut reader);
    assert_eq!(reader.skipped(), &Default::default());
    assert_eq!(read.len(), wanted.len());
    for (got, want) in read.iter().zip(&wanted) {
        let want: serde_json::Value = serde_json::from_str(want).expect("json");
        assert_eq!(serde_json::to_value(got).expect("value"), want);
    }
    let Event::Population(p) = &read[6] else {
        panic!("population")
    };
    let l = &p.layers[0];
    let values = [l.var_ratio, l.n_eff, l.predicted_ratio, l.running_var_ratio];
    assert!(values.iter().all(|x| !x.is_finite()), "{values:?}");
}

/// `event` as a JSON line, with `edit` applied to its JSON value.
fn edited(event: &Event, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value = serde_json::to_value(event).expect("value");
    edit(&mut value);
    value.to_string().into_bytes()
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn records_over_the_limits_are_skipped_and_counted() {
    let events = every_float_field();
    let header = match &events[0] {
        Event::Header(h) => h.clone(),
        _ => panic!("header first"),
    };
    let layers = header.layers.len();
    let snapshot = &events[1];
    let text = "x".repeat(limits::MAX_TEXT + 1);
    let layer = |v: &mut serde_json::Value, i: usize| v["layers"][i].clone();
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "more layers than the header",
            edited(snapshot, |v| {
                let extra = layer(v, 0);
                v["layers"].as_array_mut().expect("layers").push(extra);
            }),
        ),
        (
            "more channels than the header",
            edited(snapshot, |v| {
                let c = header.layers[0].channels + 1;
                v["layers"][0]["batch_mean"] = serde_json::json!(vec![1.5; c]);
            }),
        ),
        (
            "more than the layer limit, refused while parsing",
            edited(snapshot, |v| {
                let one = layer(v, 0);
                v["layers"] = serde_json::json!(vec![one; limits::MAX_LAYERS + 1]);
            }),
        ),
        (
            "an array over the channel limit, refused while parsing",
            edited(snapshot, |v| {
                v["layers"][1]["gamma"] = serde_json::json!(vec![1; limits::MAX_CHANNELS + 1]);
            }),
        ),
        (
            "a population of more layers than the header",
            edited(&events[6], |v| {
                let extra = layer(v, 0);
                v["layers"].as_array_mut().expect("layers").push(extra);
            }),
        ),
        (
            "a population of more channels than the header",
            edited(&events[6], |v| {
                v["layers"][2]["var"] = serde_json::json!(vec![1; header.layers[2].channels + 1]);
            }),
        ),
        (
            "a probe of more layers than the header",
            edited(&events[7], |v| {
                let extra = layer(v, 0);
                v["layers"].as_array_mut().expect("layers").push(extra);
            }),
        ),
        (
            "a long rejection",
            edited(&events[2], |v| v["rejected"] = text.clone().into()),
        ),
        (
            "a long marker label",
            json(&Event::Marker(Marker {
                step: 2,
                kind: MarkerKind::Epoch,
                label: text.clone(),
            }))
            .into_bytes(),
        ),
        (
            "a long end message",
            edited(&events[8], |v| v["message"] = text.clone().into()),
        ),
        (
            "a second header over the channel limit",
            edited(&events[0], |v| {
                let wide = serde_json::json!(limits::MAX_TOTAL_CHANNELS / 2 + 1);
                v["layers"][0]["channels"] = wide.clone();
                v["layers"][1]["channels"] = wide;
            }),
        ),
        (
            "a second header with too many layers",
            edited(&events[0], |v| {
                let one = v["layers"][0].clone();
                v["layers"] = serde_json::json!(vec![one; limits::MAX_LAYERS + 1]);
            }),
        ),
    ];
    let mut text_file = Vec::new();
    for (i, event) in events.iter().enumerate() {
        text_file.extend_from_slice(json(event).as_bytes());
        text_file.push(b'\n');
        if let Some((_, line)) = hostile.get(i) {
            text_file.extend_from_slice(line);
            text_file.push(b'\n');
        }
    }
    for (_, line) in hostile.iter().skip(events.len()) {
        text_file.extend_from_slice(line);
        text_file.push(b'\n');
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("over.jsonl");
    fs::write(&path, &text_file).expect("write");
    let mut reader = Reader::open(&path).expect("open");
    poll_to_end(&mut reader);
    let entries = reader.entries().to_vec();
    let read: Vec<Event> = entries.iter().filter_map(|e| reader.read(e).ok()).collect();
    assert_eq!(read.len(), events.len());
    for (got, want) in read.iter().zip(&events) {
        assert_eq!(json(got), json(want));
    }
    assert_eq!(reader.skipped().lines, hostile.len() as u64);
    assert_eq!(reader.skipped().unknown_kinds, 0);
    // Each one alone, checked against the header: refused, and the reason names the limit.
    for (what, line) in &hostile {
        let problem = match parse_record(line) {
            Ok(event) => limits::check(&event, Some(&header)).expect_err(what),
            Err(e) => e,
        };
        assert!(problem.contains("more than"), "{what}: {problem}");
    }
    // The same records at the header's size pass.
    assert_eq!(layers, 3);
    for event in &events {
        limits::check(event, Some(&header)).expect("within the header");
    }
}

#[test]
fn without_a_header_only_small_layers_carry_arrays() {
    let events = every_float_field();
    let Event::Snapshot(snapshot) = &events[1] else {
        panic!("snapshot")
    };
    limits::check(&events[1], None).expect("the synthetic shape passes");
    let mut wide = snapshot.clone();
    wide.layers[0].batch_mean = vec![0.5; limits::HEADERLESS_CHANNELS + 1];
    assert!(limits::check(&Event::Snapshot(wide), None).is_err());
    // Layers past the first few: summaries only.
    let mut deep = snapshot.clone();
    let mut summary_only = deep.layers[0].clone();
    summary_only.batch_mean.clear();
    summary_only.d.clear();
    assert_eq!(summary_only.widest(), deep.layers[0].widest());
    let summary_only: LayerSnapshot = serde_json::from_value(
        serde_json::json!({"mode": "train", "momentum": 0.1, "summary": deep.layers[0].summary}),
    )
    .expect("summary-only layer");
    assert_eq!(summary_only.widest(), 0);
    deep.layers = vec![summary_only; limits::MAX_LAYERS];
    limits::check(&Event::Snapshot(deep.clone()), None).expect("summaries pass");
    deep.layers[limits::HEADERLESS_LAYERS].gamma = vec![1.0];
    assert!(limits::check(&Event::Snapshot(deep.clone()), None).is_err());
    deep.layers[limits::HEADERLESS_LAYERS].gamma.clear();
    deep.layers[limits::HEADERLESS_LAYERS - 1].gamma = vec![1.0; limits::HEADERLESS_CHANNELS];
    limits::check(&Event::Snapshot(deep), None).expect("within the first layers");

    // A header at the limits passes; one channel more does not.
    let Event::Header(mut header) = events[0].clone() else {
        panic!("header")
    };
    let one = header.layers[0].clone();
    header.layers = vec![one; limits::MAX_LAYERS];
    for l in &mut header.layers {
        l.channels = limits::MAX_TOTAL_CHANNELS / limits::MAX_LAYERS;
    }
    limits::check_header(&header).expect("at the limits");
    header.layers[0].channels += 1;
    assert!(limits::check_header(&header).is_err());
}
