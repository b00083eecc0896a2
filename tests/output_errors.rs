//! The real `bntop` binary when its output goes away: a reader that stops early (`| head`) ends the
//! command quietly with exit 0, as ripgrep and other Unix filters do; a full disk is a one-line
//! error with exit 1 (exit 2 is for bad arguments and bad input files only).
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bntop::protocol::Event;

fn bntop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bntop"))
}

/// A shipped recording whose CSV is far larger than a pipe's buffer.
fn big_session() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/healthy-convergence.jsonl")
}

#[test]
fn export_into_a_reader_that_stops_after_one_line_ends_quietly() {
    let mut child = bntop()
        .arg("export")
        .arg(big_session())
        .arg("--csv")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bntop");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read a line");
    assert!(first.starts_with("step,epoch"), "{first}");
    // `head -1` exits here: the pipe's read end is gone (the BufReader was dropped).
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "quiet: {err}");
}

#[test]
fn export_with_stderr_on_the_same_closed_pipe_does_not_panic() {
    // `bntop export F --csv 2>&1 | head -c 100`
    let (mut read, write) = std::io::pipe().expect("pipe");
    let mut child = bntop()
        .arg("export")
        .arg(big_session())
        .arg("--csv")
        .stdout(write.try_clone().expect("dup"))
        .stderr(write)
        .spawn()
        .expect("run bntop");
    let mut first = [0u8; 100];
    read.read_exact(&mut first).expect("read 100 bytes");
    drop(read);
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(0),
        "no panic (101), no bad-input code (2)"
    );
}

#[test]
fn a_full_disk_is_a_one_line_error_with_exit_1() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here; skipped");
        return;
    };
    let out = bntop()
        .arg("export")
        .arg(big_session())
        .arg("--csv")
        .stdout(full)
        .output()
        .expect("run bntop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("No space left"), "{err}");
    // The same through -o.
    let out = bntop()
        .arg("export")
        .arg(big_session())
        .args(["--csv", "-o", "/dev/full"])
        .output()
        .expect("run bntop");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_headless_json_stream_whose_reader_goes_away_stops_the_run_and_records_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("run.jsonl");
    let mut child = bntop()
        .args([
            "train",
            "--headless",
            "--json",
            "--data",
            "digits",
            "--steps",
            "100000",
            "--record",
        ])
        .arg(&recording)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bntop");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for _ in 0..3 {
        lines.next().expect("a line").expect("utf8");
    }
    drop(lines);
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("cannot write"), "quiet: {err}");
    let text = std::fs::read_to_string(&recording).expect("the recording");
    let last = text.lines().last().expect("records");
    let end: Event = serde_json::from_str(last).expect("a record");
    assert!(matches!(end, Event::End(e) if e.step < 100000), "{last}");
}
