//! `bntop bench-session`: what replaying a big session costs.
//!
//! A session of about `target_bytes` is recorded in a temporary directory from the synthetic
//! stream, every snapshot whole (the worst case: the per-channel arrays make up nearly all of
//! it). Then, each a fresh [`Reader`]: the time from `open` to the first snapshot read and parsed
//! (one budget-limited poll, as a replay's first frame), the time to index the whole file, and
//! `seeks` random seeks (the last whole snapshot at or before a random step, read and parsed).
//! The file was just written, so it is read from the page cache: a cold disk adds its read time.
use super::percentile;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::protocol::{
    Command, EndReason, Event, Feed, RecordingPolicy, ReplayCommand, ReplayStatus, RunEnd,
};
use crate::session::reader::{last_at_or_before, Entry, Kind, Reader};
use crate::session::SessionWriter;
use crate::ui::app::App;
use crate::ui::keys::Context;
use crate::ui::synthetic;

pub struct Plan {
    pub target_bytes: u64,
    pub seeks: usize,
}

/// Steps generated at a time (about 30 MB of JSON): memory stays small however big the file.
const CHUNK_STEPS: u64 = 1000;

/// The first poll of a replay: enough for the header and a first snapshot, little enough to be quick.
const FIRST_POLL_BUDGET: usize = 1 << 20;

/// Removes the temporary directory however the benchmark ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> Result<TempDir, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "bntop-bench-session-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(TempDir(dir))
}

/// Shifts a chunk's records by `steps` steps (and the matching run time), so steps keep increasing.
fn shift(event: &mut Event, steps: u64) {
    match event {
        Event::Snapshot(s) => {
            s.step += steps;
            s.time_s += steps as f64 / 150.0;
        }
        Event::Control(c) => c.step += steps,
        Event::Evaluation(e) => e.step += steps,
        Event::Marker(m) => m.step += steps,
        Event::Folding(f) => f.step += steps,
        Event::Population(p) => p.step += steps,
        Event::Probe(p) => p.step += steps,
        Event::End(e) => e.step += steps,
        Event::Header(_) | Event::Unknown => {}
    }
}

/// Records synthetic chunks until the file has about `target_bytes`; returns the last step.
fn record(path: &Path, target_bytes: u64) -> Result<u64, String> {
    let policy = RecordingPolicy {
        snapshot_interval_s: 0.0,
        channel_arrays_interval_s: 0.0,
    };
    let mut writer = SessionWriter::create(path, policy).map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut steps = 0u64;
    let mut chunk = 0u64;
    while writer.bytes_written() < target_bytes {
        let offset = steps;
        for mut event in synthetic::run(CHUNK_STEPS, chunk + 1) {
            if matches!(event, Event::Header(_)) && chunk > 0 {
                continue;
            }
            shift(&mut event, offset);
            writer.record(&event).map_err(io)?;
            steps = event.step().unwrap_or(steps);
            if writer.bytes_written() >= target_bytes && matches!(event, Event::Snapshot(_)) {
                break;
            }
        }
        chunk += 1;
    }
    writer
        .record(&Event::End(RunEnd {
            step: steps,
            reason: EndReason::Completed,
            elapsed_s: steps as f64 / 150.0,
            message: None,
        }))
        .map_err(io)?;
    Ok(steps)
}

fn is_whole(e: &Entry) -> bool {
    e.kind == Kind::Snapshot { whole: true }
}

pub fn run(plan: &Plan, out: &mut dyn Write) -> Result<(), String> {
    let dir = temp_dir()?;
    let path = dir.0.join("bench.jsonl");
    let t = Instant::now();
    let last_step = record(&path, plan.target_bytes)?;
    let size = fs::metadata(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    writeln!(
        out,
        "session file: {:.1} MB, {last_step} steps, every snapshot whole (recorded in {:.1} s)",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    )
    .map_err(|e| e.to_string())?;
    first_frame(&path, out)?;
    let mut reader = index_whole(&path, size, out)?;
    reader_seeks(&mut reader, last_step, plan.seeks, out)?;
    replay_seeks(&path, last_step, plan.seeks, out)
}

/// The first frame of a replay: open, one modest poll (more only if it held no snapshot), read.
fn first_frame(path: &Path, out: &mut dyn Write) -> Result<(), String> {
    let t = Instant::now();
    let mut reader = Reader::open(path).map_err(|e| e.to_string())?;
    let mut polls = 0;
    let first = loop {
        let poll = reader.poll(FIRST_POLL_BUDGET).map_err(|e| e.to_string())?;
        polls += 1;
        if let Some(e) = reader
            .entries()
            .iter()
            .find(|e| matches!(e.kind, Kind::Snapshot { .. }))
        {
            break *e;
        }
        if poll.at_end {
            return Err(format!("{}: no snapshot recorded", path.display()));
        }
    };
    let Event::Snapshot(snapshot) = reader.read(&first)? else {
        return Err(format!(
            "{}: the first snapshot is not a snapshot",
            path.display()
        ));
    };
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    writeln!(
        out,
        "open to first snapshot (step {}) read and parsed: {first_ms:.2} ms ({polls} poll of {} KB; target < 1000 ms)",
        snapshot.step,
        FIRST_POLL_BUDGET >> 10
    )
    .map_err(|e| e.to_string())
}

/// Indexes the whole file (`size` bytes) with a fresh reader, reports the time, returns the reader.
fn index_whole(path: &Path, size: u64, out: &mut dyn Write) -> Result<Reader, String> {
    let t = Instant::now();
    let mut reader = Reader::open(path).map_err(|e| e.to_string())?;
    while !reader.poll(usize::MAX).map_err(|e| e.to_string())?.at_end {}
    let index_s = t.elapsed().as_secs_f64();
    writeln!(
        out,
        "index the whole file: {:.2} s ({:.0} MB/s, {} entries, {} skipped lines; target a few s)",
        index_s,
        size as f64 / 1e6 / index_s,
        reader.entries().len(),
        reader.skipped().lines
    )
    .map_err(|e| e.to_string())?;
    Ok(reader)
}

/// `seeks` random seeks on an indexed reader: the last whole snapshot at or before a random
/// step, read and parsed.
fn reader_seeks(
    reader: &mut Reader,
    last_step: u64,
    seeks: usize,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut times = Vec::with_capacity(seeks);
    for _ in 0..seeks {
        let step = rng.gen_range(1..=last_step.max(1));
        let t = Instant::now();
        let i = last_at_or_before(reader.entries(), step, is_whole)
            .ok_or_else(|| format!("no whole snapshot at or before step {step}"))?;
        let entry = reader.entries()[i];
        match reader.read(&entry)? {
            Event::Snapshot(s) if s.step <= step => {}
            _ => return Err(format!("seek to step {step} found the wrong record")),
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    writeln!(
        out,
        "random seek to a whole snapshot, read and parsed ({seeks} seeks): median {:.2} ms, max {:.2} ms (target < 100 ms)",
        percentile(&times, 0.5),
        percentile(&times, 1.0)
    )
    .map_err(|e| e.to_string())
}

/// What a user waits for: `bntop replay`'s seek, from the command to a dashboard state rebuilt at
/// the target (the player reads a sample of the past; the app applies it).
fn replay_seeks(
    path: &Path,
    last_step: u64,
    seeks: usize,
    out: &mut dyn Write,
) -> Result<(), String> {
    let replay = crate::session::replay::spawn(path, false).map_err(|e| e.to_string())?;
    let mut app = App::for_context(Context::Replay);
    let send = |c: ReplayCommand| {
        replay
            .commands
            .send(Command::Replay(c))
            .map_err(|_| "the replay stopped".to_string())
    };
    // Wait until the whole file is indexed, then pause, so only seeks move the replay.
    let wait_for = |app: &mut App, done: &dyn Fn(&ReplayStatus) -> bool| -> Result<(), String> {
        loop {
            let feed = replay
                .feed
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| "the replay did not answer within 30 s".to_string())?;
            app.on_feed(&feed, Instant::now());
            if let Feed::Replay(status) = &feed {
                if done(status) {
                    return Ok(());
                }
            }
        }
    };
    send(ReplayCommand::PlayPause)?;
    wait_for(&mut app, &|s| s.indexed && !s.playing)?;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut times = Vec::with_capacity(seeks);
    for _ in 0..seeks {
        let step = rng.gen_range(1..=last_step.max(1));
        let t = Instant::now();
        send(ReplayCommand::Seek(step))?;
        wait_for(&mut app, &|s| s.step == step)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    writeln!(
        out,
        "replay seek to a random step, dashboard state rebuilt ({seeks} seeks, {} snapshots in view): median {:.1} ms, max {:.1} ms (target < 100 ms)",
        app.live.snapshots,
        percentile(&times, 0.5),
        percentile(&times, 1.0)
    )
    .map_err(|e| e.to_string())
}
