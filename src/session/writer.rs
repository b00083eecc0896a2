//! Writing a session: the header, then one record per line. Each line goes to the file in one
//! `write` call with nothing buffered, so a writer killed at any moment (even `kill -9`) loses at
//! most the line in flight, and a reader sees only whole lines plus at most one partial tail.
//!
//! Snapshots are decimated by run time (`RecordingPolicy`, see `decimator`) so a one-hour run at
//! full speed stays far below 200 MB; every control, evaluation, marker and the end are kept.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::decimator::Decimator;
use super::SessionError;
use crate::protocol::{Event, RecordingPolicy};

pub const DEFAULT_POLICY: RecordingPolicy = RecordingPolicy {
    snapshot_interval_s: 0.04,
    channel_arrays_interval_s: 2.0,
};

/// How much of the live stream a recording keeps (`--record-detail`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum RecordDetail {
    /// 25 snapshots per second of run time, per-channel arrays every 2 s ([`DEFAULT_POLICY`]).
    #[default]
    Thin,
    /// 25 snapshots per second of run time, every one with its per-channel arrays: the channel
    /// charts and the heatmap of a replay are drawn from 25 points a second, like the rest.
    Full,
    /// Every step the recorder receives, whole: what the live dashboard saw.
    EveryStep,
    /// 25 snapshots per second of run time, per-channel arrays at most every this many seconds.
    ArraysEvery(f64),
}

impl RecordDetail {
    pub fn policy(self) -> RecordingPolicy {
        let arrays_every = |channel_arrays_interval_s| RecordingPolicy {
            channel_arrays_interval_s,
            ..DEFAULT_POLICY
        };
        match self {
            RecordDetail::Thin => DEFAULT_POLICY,
            RecordDetail::Full => arrays_every(0.0),
            RecordDetail::EveryStep => RecordingPolicy {
                snapshot_interval_s: 0.0,
                channel_arrays_interval_s: 0.0,
            },
            RecordDetail::ArraysEvery(seconds) => arrays_every(seconds),
        }
    }
}

impl std::str::FromStr for RecordDetail {
    type Err = String;

    fn from_str(text: &str) -> Result<RecordDetail, String> {
        match text {
            "thin" => Ok(RecordDetail::Thin),
            "full" => Ok(RecordDetail::Full),
            "every-step" => Ok(RecordDetail::EveryStep),
            _ => match text.parse::<f64>() {
                Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
                    Ok(RecordDetail::ArraysEvery(seconds))
                }
                _ => Err(format!(
                    "expected thin, full, every-step or the seconds between per-channel arrays, \
                     not {text:?}"
                )),
            },
        }
    }
}

/// Runs started in one second that get a dated file of their own (more is not a person).
const SAME_SECOND_RUNS: u32 = 1000;

/// `<UTC date-time>.jsonl` under `dir`, e.g. `sessions/2026-11-26T15-04-05.jsonl` (UTC).
pub fn default_path(dir: &Path, unix_seconds: u64) -> PathBuf {
    let (days, secs) = (unix_seconds / 86_400, unix_seconds % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let name = format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}Z.jsonl",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    dir.join(name)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub struct SessionWriter {
    file: File,
    path: PathBuf,
    policy: RecordingPolicy,
    decimator: Decimator,
    bytes: u64,
}

impl SessionWriter {
    /// Create a new session file (never overwriting one), creating its directory if needed.
    pub fn create(path: &Path, policy: RecordingPolicy) -> Result<SessionWriter, SessionError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| SessionError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| SessionError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SessionWriter {
            file,
            path: path.to_path_buf(),
            decimator: Decimator::new(policy.clone()),
            policy,
            bytes: 0,
        })
    }

    /// Create a new session file under `dir` named by the UTC date-time `unix_seconds`
    /// ([`default_path`]); a run started in the same second as another gets `-2`, `-3`, ...
    /// (each tried with `create_new`, so two runs never share a file or fail for it).
    pub fn create_dated(
        dir: &Path,
        unix_seconds: u64,
        policy: RecordingPolicy,
    ) -> Result<SessionWriter, SessionError> {
        let first = default_path(dir, unix_seconds);
        let stem = first.with_extension("");
        let mut k = 1;
        loop {
            let path = match k {
                1 => first.clone(),
                _ => PathBuf::from(format!("{}-{k}.jsonl", stem.display())),
            };
            match SessionWriter::create(&path, policy.clone()) {
                Err(SessionError::Create { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists && k < SAME_SECOND_RUNS => {}
                result => return result,
            }
            k += 1;
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    fn write_line(&mut self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.bytes += line.len() as u64;
        Ok(())
    }

    /// Record one event of the stream (the policy decides what of a snapshot is kept).
    pub fn record(&mut self, event: &Event) -> io::Result<()> {
        if let Event::Header(header) = event {
            let mut header = header.clone();
            header.recording = Some(self.policy.clone());
            return self.write_line(&Event::Header(header));
        }
        for kept in self.decimator.filter(event) {
            self.write_line(&kept)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Control, ControlEvent, Snapshot};
    use crate::ui::synthetic;

    fn lines(path: &Path) -> Vec<Event> {
        fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is one record"))
            .collect()
    }

    #[test]
    fn record_detail_reads_its_names_and_seconds() {
        let policy = |text: &str| text.parse::<RecordDetail>().map(RecordDetail::policy);
        assert_eq!(policy("thin"), Ok(DEFAULT_POLICY));
        assert_eq!(policy("full").map(|p| p.channel_arrays_interval_s), Ok(0.0));
        assert_eq!(policy("full").map(|p| p.snapshot_interval_s), Ok(0.04));
        assert_eq!(policy("every-step").map(|p| p.snapshot_interval_s), Ok(0.0));
        assert_eq!(
            policy("0.25").map(|p| p.channel_arrays_interval_s),
            Ok(0.25)
        );
        for bad in ["", "fat", "-1", "NaN", "inf"] {
            assert!(policy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        let path = default_path(Path::new("sessions"), 1_795_705_445);
        assert_eq!(path, Path::new("sessions/2026-11-26T15-04-05Z.jsonl"));
    }

    #[test]
    fn runs_started_in_the_same_second_get_files_of_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = 1_795_705_445;
        let names: Vec<String> = (0..3)
            .map(|_| {
                let writer = SessionWriter::create_dated(dir.path(), at, DEFAULT_POLICY);
                let path = writer.map(|w| w.path().to_path_buf()).expect("created");
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            names,
            [
                "2026-11-26T15-04-05Z.jsonl",
                "2026-11-26T15-04-05Z-2.jsonl",
                "2026-11-26T15-04-05Z-3.jsonl"
            ]
        );
    }

    #[test]
    fn policy_keeps_controls_whole_neighbours_and_the_last_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/run.jsonl");
        let mut writer = SessionWriter::create(&path, DEFAULT_POLICY).expect("create");
        // 150 steps/s for 1000 steps (6.7 s of run time), block2 to EVAL at 40%.
        let mut events = synthetic::run(1000, 1);
        events.push(Event::End(crate::protocol::RunEnd {
            step: 1000,
            reason: crate::protocol::EndReason::Completed,
            elapsed_s: 6.7,
            message: None,
        }));
        for e in &events {
            writer.record(e).expect("record");
        }
        assert!(
            SessionWriter::create(&path, DEFAULT_POLICY).is_err(),
            "never overwrites"
        );
        let written = lines(&path);
        let Event::Header(header) = &written[0] else {
            panic!("first line is the header")
        };
        assert_eq!(header.recording, Some(DEFAULT_POLICY));
        let snapshots: Vec<&Snapshot> = written
            .iter()
            .filter_map(|e| match e {
                Event::Snapshot(s) => Some(s),
                _ => None,
            })
            .collect();
        // 25 per second of run time, not 150.
        assert!(
            (150..=180).contains(&snapshots.len()),
            "{}",
            snapshots.len()
        );
        let whole: Vec<u64> = snapshots
            .iter()
            .filter(|s| !s.layers[0].batch_mean.is_empty())
            .map(|s| s.step)
            .collect();
        let controls: Vec<u64> = written
            .iter()
            .filter_map(|e| match e {
                Event::Control(ControlEvent { step, .. }) => Some(*step),
                _ => None,
            })
            .collect();
        assert_eq!(controls, vec![400, 700]);
        // The first step, one every two seconds, and the step after each control keep arrays.
        assert!(whole.contains(&1) && whole.contains(&301) && whole.contains(&400));
        assert!(whole.contains(&700) && whole.len() <= 8, "{whole:?}");
        assert_eq!(snapshots.last().map(|s| s.step), Some(1000));
        // Every evaluation is kept, and every summary.
        let evaluations = written
            .iter()
            .filter(|e| matches!(e, Event::Evaluation(_)))
            .count();
        assert_eq!(evaluations, 20);
        assert!(snapshots.iter().all(|s| s.layers.len() == 3));
        let _ = Control::Pause;
    }
}
