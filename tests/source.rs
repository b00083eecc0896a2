//! `bntop serve --source -` with the real binary, real sockets and a producer scripted here: its
//! records go to serve's stdin as JSON lines, and the controls viewers send come back on serve's
//! stdout. Bad lines are skipped and counted, a producer that dies or never reads its controls
//! costs nothing but what it owes, and the recording reads back with replay and export.
mod remote_support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bntop::protocol::{BnKind, BnMode, Command, Control, EndReason, Event, Feed};
use bntop::remote::client::{self, Target};
use crossbeam_channel::Receiver;
use remote_support::{
    bridge_after_hello, lines_of, send_signal, serve_command, wait_line, wait_within, DEADLINE,
};

/// What a small PyTorch producer would send: format 1.4, a producer listing its controls, one
/// BN1d layer of 4 features, and only the config field that is required.
const HEADER: &str = concat!(
    r#"{"kind":"header","format":"bntop","version_major":1,"version_minor":4,"#,
    r#""started_unix_ms":1764500000000,"producer":{"name":"scripted","version":"0.1","#,
    r#""framework":"test 1.0","model":"Mlp","device":"cpu","world_size":1,"controls":"#,
    r#"["set_mode","set_momentum","set_momentum_cumulative","pause","resume","step","quit"]},"#,
    r#""config":{"optimizer":{"kind":"other","name":"AdamW","lr":0.001,"momentum":0,"#,
    r#""weight_decay":0.01,"weight_decay_mode":"decoupled"}},"#,
    r#""layers":[{"name":"body.0.bn","channels":4,"kind":"bn1d","feeds_from":"body.0.fc"}],"#,
    r#""conventions":{"momentum":"PyTorch","batch_variance":"biased","#,
    r#""running_variance":"unbiased","epsilon":1e-5,"drift":"before the update","#,
    r#""weight_metrics":"per output feature","weight_decay_scope":"all"}}"#
);

/// A snapshot at `step` whose one layer has `channels` values per array (the header has 4).
fn snapshot(step: u64, channels: usize) -> String {
    snapshot_of(step, channels, 1)
}

/// A snapshot with `layers` such layers.
fn snapshot_of(step: u64, channels: usize, layers: usize) -> String {
    let values = vec!["0.5"; channels].join(",");
    let layer = format!(
        concat!(
            r#"{{"mode":"train","momentum":0.1,"batch_mean":[{values}],"batch_var":[{values}],"#,
            r#""summary":{{"drift":0.1,"r_mean":1,"r_min":0.9,"r_max":1.1,"d_mean_abs":0.05,"#,
            r#""d_max_abs":0.1,"weight_norm":"NaN","angular_update":"NaN","effective_lr":"NaN","#,
            r#""max_abs_cos":"NaN","relu_active":"NaN"}}}}"#
        ),
        values = values
    );
    format!(
        concat!(
            r#"{{"kind":"snapshot","step":{step},"epoch":0,"time_s":{time},"loss":"NaN","#,
            r#""batch_accuracy":"NaN","lr":0.001,"layers":[{layers}]}}"#
        ),
        step = step,
        // 0.2 s apart: every snapshot passes the viewers' 0.1 s thinning.
        time = step as f64 * 0.2,
        layers = vec![layer; layers].join(","),
    )
}

fn end(step: u64, reason: &str) -> String {
    format!(r#"{{"kind":"end","step":{step},"reason":"{reason}","elapsed_s":1.5}}"#)
}

/// The producer's echo of a control line it read from serve's stdout.
fn echo(step: u64, control: &str) -> String {
    format!(r#"{{"kind":"control","step":{step},"control":{control}}}"#)
}

/// `bntop serve --source -` and the scripted producer's ends of its stdin and stdout.
struct Producer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// serve's stdout, line by line (`None`: the producer never reads it).
    controls: Option<mpsc::Receiver<String>>,
    /// Held open and never read.
    _unread: Option<ChildStdout>,
    log: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Producer {
    fn start(reads_controls: bool) -> Producer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = serve_command(dir.path(), &["--source", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bntop serve --source -");
        let stdout = child.stdout.take().expect("stdout");
        let (controls, unread) = if reads_controls {
            (Some(lines_of(stdout)), None)
        } else {
            (None, Some(stdout))
        };
        let producer = Producer {
            stdin: child.stdin.take(),
            log: lines_of(child.stderr.take().expect("stderr")),
            child,
            controls,
            _unread: unread,
            dir,
        };
        producer.wait_log(|l| l.contains("attach with"));
        producer
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to serve");
        stdin.flush().expect("flush");
    }

    fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    /// The producer goes away (its end of serve's stdin closes).
    fn close(&mut self) {
        self.stdin = None;
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("bntop.sock")
    }

    fn recording(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(self.dir.path().join("run.jsonl")).expect("recording");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a recorded record"))
            .collect()
    }

    fn wait_log(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_line(&self.log, pred)
    }

    /// The next control line on serve's stdout.
    fn next_control(&self) -> String {
        let controls = self.controls.as_ref().expect("controls are read");
        controls
            .recv_timeout(DEADLINE)
            .expect("a control on serve's stdout")
    }

    fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        wait_within(&mut self.child, limit)
            .expect("serve ends")
            .code()
    }
}

fn viewer(producer: &Producer, readonly: bool) -> client::Connection {
    client::connect(&Target::Unix(producer.socket()), None, readonly).expect("viewer")
}

/// Events from a viewer's feed until one matches `done` (returned last).
fn until(feed: &Receiver<Feed>, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + DEADLINE;
    let mut events = Vec::new();
    loop {
        match feed.recv_deadline(deadline) {
            Ok(Feed::Event(e)) => {
                let found = done(&e);
                events.push(e);
                if found {
                    return events;
                }
            }
            Ok(_) => {}
            Err(_) => panic!(
                "not seen; got {} records, snapshots {:?}",
                events.len(),
                snapshot_steps(&events)
            ),
        }
    }
}

fn snapshot_steps(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(s.step),
            _ => None,
        })
        .collect()
}

/// The whole round trip: records reach a socket viewer and a bridge viewer, a viewer's control
/// reaches the producer on stdout, its echo reaches the viewer and the recording, a control the
/// producer does not list is rejected by serve (and never written), and the recording made in
/// source mode reads back with replay and export.
#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn a_producer_streams_to_viewers_and_takes_their_controls() {
    let mut p = Producer::start(true);
    p.send(HEADER);
    for step in 1..=5 {
        p.send(&snapshot(step, 4));
    }
    let v = viewer(&p, false);
    let seen = until(&v.feed, |e| matches!(e, Event::Snapshot(s) if s.step == 5));
    let Some(Event::Header(header)) = seen.first() else {
        panic!("the header first: {seen:?}")
    };
    assert_eq!(
        header.producer.as_ref().map(|p| p.name.as_str()),
        Some("scripted")
    );
    assert_eq!(header.layers[0].kind, BnKind::Bn1d);
    assert_eq!(snapshot_steps(&seen), [1, 2, 3, 4, 5]);
    // `attach ssh://` runs `bntop bridge`: it carries the same stream.
    let (mut bridge, _bridge_in, bridge_out) = bridge_after_hello(&p.socket());
    let bridged = lines_of(bridge_out);
    let first = bridged
        .recv_timeout(DEADLINE)
        .expect("a line through the bridge");
    assert!(
        first.contains(r#""kind":"header""#) && first.contains("scripted"),
        "{first}"
    );
    let _ = bridge.kill();
    let _ = bridge.wait();

    let eval = Control::SetMode {
        layer: Some(0),
        mode: BnMode::Eval,
    };
    v.commands.send(Command::Run(eval.clone())).expect("send");
    let line = p.next_control();
    assert_eq!(line, r#"{"control":"set_mode","layer":0,"mode":"eval"}"#);
    p.send(&echo(5, &line));
    p.send(&snapshot(6, 4));
    let seen = until(
        &v.feed,
        |e| matches!(e, Event::Control(c) if c.control == eval),
    );
    let Some(Event::Control(applied)) = seen.last() else {
        unreachable!()
    };
    assert_eq!((applied.step, applied.rejected.as_deref()), (5, None));

    // Not in the producer's list: serve answers for it.
    v.commands
        .send(Command::Run(Control::FoldCheck))
        .expect("send");
    let seen = until(
        &v.feed,
        |e| matches!(e, Event::Control(c) if c.control == Control::FoldCheck),
    );
    let Some(Event::Control(refused)) = seen.last() else {
        unreachable!()
    };
    let reason = refused.rejected.as_deref().unwrap_or_default();
    assert!(
        reason.contains("scripted does not handle fold_check"),
        "{reason}"
    );
    // The next line on stdout is the next listed control: fold_check was never written.
    let momentum = Control::SetMomentum {
        layer: None,
        momentum: 0.5,
    };
    v.commands
        .send(Command::Run(momentum.clone()))
        .expect("send");
    let line = p.next_control();
    assert_eq!(serde_json::from_str::<Control>(&line).ok(), Some(momentum));
    p.send(&echo(6, &line));

    p.send(&end(6, "completed"));
    let seen = until(&v.feed, |e| matches!(e, Event::End(_)));
    assert!(matches!(seen.last(), Some(Event::End(e)) if e.reason == EndReason::Completed));
    assert_eq!(p.exit_code(Duration::from_secs(10)), Some(0));

    let recorded = p.recording();
    assert!(matches!(recorded.first(), Some(Event::Header(_))));
    assert_eq!(snapshot_steps(&recorded), [1, 2, 3, 4, 5, 6]);
    assert!(recorded.iter().any(
        |e| matches!(e, Event::Control(c) if c.control == eval && c.step == 5 && c.rejected.is_none())
    ));
    assert!(recorded.iter().any(
        |e| matches!(e, Event::Control(c) if c.control == Control::FoldCheck && c.rejected.is_some())
    ));
    assert!(matches!(recorded.last(), Some(Event::End(e)) if e.reason == EndReason::Completed));

    // export --csv and replay read the recording made in source mode.
    let path = p.dir.path().join("run.jsonl");
    let export = Process::new(env!("CARGO_BIN_EXE_bntop"))
        .arg("export")
        .arg(&path)
        .arg("--csv")
        .output()
        .expect("export");
    assert!(export.status.success(), "{export:?}");
    let csv = String::from_utf8_lossy(&export.stdout);
    let rows: Vec<&str> = csv.lines().filter(|l| l.contains("body.0.bn")).collect();
    assert_eq!(rows.len(), 6, "{csv}");
    let replay = bntop::session::replay::spawn(&path, false).expect("replay opens it");
    let played = until(&replay.feed, |e| matches!(e, Event::End(_)));
    assert!(matches!(played.first(), Some(Event::Header(h)) if h.producer.is_some()));
    assert_eq!(snapshot_steps(&played), [1, 2, 3, 4, 5, 6]);
}

/// Garbage, binary, a record before the header, a second header, arrays wider than the header's
/// layer, more layers than the header, and a line over 4 MiB: each is skipped, logged and
/// counted, and the run goes on with the good records.
#[test]
fn bad_producer_lines_are_skipped_and_counted() {
    let mut p = Producer::start(true);
    p.send("this is not a record");
    p.send_bytes(b"\x00\xff\xfe{\"kind\":\n");
    p.send(&snapshot(1, 4));
    p.send(HEADER);
    let v = viewer(&p, true);
    p.send(HEADER);
    p.send(&snapshot(1, 4));
    p.send(&snapshot(2, 5));
    p.send(&snapshot_of(2, 4, 2));
    let huge = format!(
        r#"{{"kind":"marker","step":2,"marker":"divergence","label":"{}"}}"#,
        "x".repeat(5 << 20)
    );
    p.send(&huge);
    for step in 2..=4 {
        p.send(&snapshot(step, 4));
    }
    p.send(&end(4, "completed"));
    let seen = until(&v.feed, |e| matches!(e, Event::End(_)));
    assert_eq!(snapshot_steps(&seen), [1, 2, 3, 4]);
    let total = p.wait_log(|l| l.contains("bad lines from the producer were skipped"));
    assert!(total.contains(" 7 bad lines"), "{total}");
    assert_eq!(p.exit_code(Duration::from_secs(10)), Some(0));
    let recorded = p.recording();
    assert_eq!(snapshot_steps(&recorded), [1, 2, 3, 4]);
    let headers = recorded
        .iter()
        .filter(|e| matches!(e, Event::Header(_)))
        .count();
    assert_eq!(headers, 1);
    assert!(!recorded.iter().any(|e| matches!(e, Event::Marker(_))));
}

/// A producer that dies in the middle of a line: the partial line is dropped, and serve records
/// and broadcasts an `end` with reason error, then exits non-zero.
#[test]
fn a_producer_that_dies_mid_line_ends_the_run_with_an_error() {
    let mut p = Producer::start(true);
    p.send(HEADER);
    for step in 1..=3 {
        p.send(&snapshot(step, 4));
    }
    let v = viewer(&p, true);
    until(&v.feed, |e| matches!(e, Event::Snapshot(s) if s.step == 3));
    p.send_bytes(br#"{"kind":"snapshot","step":4,"ep"#);
    p.close();
    let seen = until(&v.feed, |e| matches!(e, Event::End(_)));
    let Some(Event::End(e)) = seen.last() else {
        unreachable!()
    };
    assert_eq!((e.reason, e.step), (EndReason::Error, 3));
    assert_eq!(
        e.message.as_deref(),
        Some("the producer stopped without an end record")
    );
    p.wait_log(|l| l.contains("cut off by the end of input"));
    assert_eq!(p.exit_code(Duration::from_secs(10)), Some(1));
    let recorded = p.recording();
    assert!(matches!(recorded.last(), Some(Event::End(e)) if e.reason == EndReason::Error));
    assert_eq!(snapshot_steps(&recorded), [1, 2, 3]);
}

/// A producer that never reads serve's stdout while a viewer floods it with controls: the pipe
/// and the queue fill, serve rejects the excess itself, and a second viewer keeps receiving the
/// stream without delay; serve still ends at once on the end record.
#[test]
fn a_producer_that_never_reads_its_controls_stalls_nothing() {
    let mut p = Producer::start(false);
    p.send(HEADER);
    p.send(&snapshot(1, 4));
    let watcher = viewer(&p, true);
    until(
        &watcher.feed,
        |e| matches!(e, Event::Snapshot(s) if s.step == 1),
    );

    let mut flood = UnixStream::connect(p.socket()).expect("connect");
    flood.write_all(b"{\"hello\":{}}\n").expect("hello");
    // Its own stream is drained, so serve never drops it for not reading.
    let drained = lines_of(flood.try_clone().expect("clone"));
    const CONTROLS: usize = 5000;
    let line = "{\"control\":\"set_mode\",\"layer\":0,\"mode\":\"eval\"}\n";
    flood
        .write_all(line.repeat(CONTROLS).as_bytes())
        .expect("flood");

    // Meanwhile the run goes on, and the watcher sees each step promptly.
    let mut rejected = 0;
    let mut worst = Duration::ZERO;
    for step in 2..=60 {
        let sent = Instant::now();
        p.send(&snapshot(step, 4));
        let seen = until(
            &watcher.feed,
            |e| matches!(e, Event::Snapshot(s) if s.step == step),
        );
        worst = worst.max(sent.elapsed());
        rejected += seen
            .iter()
            .filter(|e| {
                matches!(e, Event::Control(c)
                    if c.rejected.as_deref() == Some("the producer is not reading its controls"))
            })
            .count();
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("{rejected} of {CONTROLS} controls rejected; slowest snapshot {worst:?}");
    assert!(worst < Duration::from_secs(2), "a snapshot took {worst:?}");
    // The pipe (64 KiB, about 1400 lines) and the queue (256) hold the rest.
    assert!(rejected >= CONTROLS - 2000, "only {rejected} rejected");
    p.send(&end(60, "completed"));
    until(&watcher.feed, |e| matches!(e, Event::End(_)));
    assert_eq!(p.exit_code(Duration::from_secs(10)), Some(0));
    drop(drained);
}

/// SIGTERM: serve writes `quit` to the producer, which echoes it and ends; serve exits 0 with the
/// producer's end record.
#[test]
fn sigterm_sends_quit_to_the_producer() {
    let mut p = Producer::start(true);
    p.send(HEADER);
    p.send(&snapshot(1, 4));
    let v = viewer(&p, true);
    until(&v.feed, |e| matches!(e, Event::Snapshot(s) if s.step == 1));
    send_signal(p.child.id(), "TERM");
    let line = p.next_control();
    assert_eq!(line, r#"{"control":"quit"}"#);
    p.send(&echo(1, &line));
    p.send(&end(1, "quit"));
    assert_eq!(p.exit_code(Duration::from_secs(10)), Some(0));
    let recorded = p.recording();
    assert!(recorded
        .iter()
        .any(|e| matches!(e, Event::Control(c) if c.control == Control::Quit)));
    assert!(matches!(recorded.last(), Some(Event::End(e)) if e.reason == EndReason::Quit));
}

/// A producer that stops on `quit` without writing its end record (killed by the same Ctrl-C,
/// say): the run still ends as quit, and serve exits 0.
#[test]
fn a_producer_that_closes_after_quit_ends_the_run_as_quit() {
    let mut p = Producer::start(true);
    p.send(HEADER);
    p.send(&snapshot(1, 4));
    let v = viewer(&p, true);
    until(&v.feed, |e| matches!(e, Event::Snapshot(s) if s.step == 1));
    send_signal(p.child.id(), "INT");
    assert_eq!(p.next_control(), r#"{"control":"quit"}"#);
    p.close();
    assert_eq!(p.exit_code(Duration::from_secs(10)), Some(0));
    let Some(Event::End(e)) = p.recording().pop() else {
        panic!("no end record")
    };
    assert_eq!(e.reason, EndReason::Quit);
    assert_eq!(
        e.message.as_deref(),
        Some("the producer stopped after quit without an end record")
    );
}

/// A producer that ignores `quit`: serve waits 10 s for its end record, then ends the run itself
/// with an `end` of reason error and exits non-zero.
#[test]
fn a_producer_that_ignores_quit_is_ended_after_the_shutdown_wait() {
    let mut p = Producer::start(true);
    p.send(HEADER);
    p.send(&snapshot(1, 4));
    let v = viewer(&p, true);
    until(&v.feed, |e| matches!(e, Event::Snapshot(s) if s.step == 1));
    let signalled = Instant::now();
    send_signal(p.child.id(), "TERM");
    assert_eq!(p.next_control(), r#"{"control":"quit"}"#);
    assert_eq!(p.exit_code(Duration::from_secs(20)), Some(1));
    let waited = signalled.elapsed();
    assert!(waited >= Duration::from_secs(9), "{waited:?}");
    let Some(Event::End(e)) = p.recording().pop() else {
        panic!("no end record")
    };
    assert_eq!(e.reason, EndReason::Error);
    let message = e.message.unwrap_or_default();
    assert!(
        message.contains("did not end within 10 s of quit"),
        "{message}"
    );
}

/// Only `-` is a source, and the training options make no sense with one: both refused, exit 2.
#[test]
fn other_sources_and_training_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for extra in [
        &["--source", "run.jsonl"][..],
        &["--source", "-", "--steps", "5"],
    ] {
        let out = serve_command(dir.path(), extra)
            .stdin(Stdio::null())
            .output()
            .expect("serve");
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains("--source"), "{stderr}");
    }
}

/// A header of one BN2d layer with the most channels a header may have.
fn wide_header() -> String {
    HEADER.replace(
        r#""channels":4,"kind":"bn1d""#,
        r#""channels":4096,"kind":"bn2d""#,
    )
}

/// A snapshot of [`wide_header`]'s layer with every per-channel array: about 1 MB.
fn wide_snapshot(step: u64) -> String {
    let values = vec!["0.123456789"; 4096].join(",");
    let arrays = [
        "batch_mean",
        "batch_var",
        "running_mean_pre",
        "running_var_pre",
        "running_mean_post",
        "running_var_post",
        "r",
        "d",
        "drift",
        "out_mean",
        "out_var",
        "relu_mean",
        "relu_var",
        "relu_active",
        "gamma",
        "beta",
        "grad_gamma",
        "grad_beta",
        "weight_norm",
        "angular_update",
        "weight_grad_cos",
    ]
    .map(|name| format!(r#""{name}":[{values}]"#))
    .join(",");
    // One second apart: every snapshot reaches the viewers with its arrays.
    snapshot(step, 0)
        .replace(r#""batch_mean":[],"batch_var":[]"#, &arrays)
        .replace(
            &format!(r#""time_s":{}"#, step as f64 * 0.2),
            &format!(r#""time_s":{step}"#),
        )
}

/// serve's peak resident size in MB.
fn peak_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
}

/// 250 MB of whole snapshots (1 MB each, as a ResNet's per-channel arrays can be): the backlog
/// for late viewers stays within its 64 MiB, so serve's peak stays far below what it was sent,
/// and a late viewer still gets every step (older ones without their arrays).
#[test]
fn the_backlog_of_large_snapshots_is_bounded_in_bytes() {
    const STEPS: u64 = 250;
    let mut p = Producer::start(true);
    p.send(&wide_header());
    let first = wide_snapshot(1);
    assert!(first.len() > 1_000_000, "{}", first.len());
    let live = viewer(&p, true);
    for step in 1..=STEPS {
        p.send(&wide_snapshot(step));
    }
    // A record after the last step (a slow viewer may lose snapshots, never records): once the
    // live viewer has it, the late one gets the backlog alone.
    p.send(&format!(
        r#"{{"kind":"marker","step":{STEPS},"marker":"epoch","label":"done"}}"#
    ));
    until(&live.feed, |e| matches!(e, Event::Marker(_)));
    let late = viewer(&p, true);
    let seen = until(
        &late.feed,
        |e| matches!(e, Event::Snapshot(s) if s.step == STEPS),
    );
    let peak = peak_mb(p.child.id());
    eprintln!("serve's peak after {STEPS} MB of snapshots: {peak} MB");
    assert!(peak < 160, "serve's peak: {peak} MB");
    let steps = snapshot_steps(&seen);
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>());
    let whole: Vec<&Event> = seen
        .iter()
        .filter(|e| matches!(e, Event::Snapshot(s) if s.layers[0].widest() == 4096))
        .collect();
    let size = serde_json::to_string(whole[0]).expect("json").len();
    assert!(
        whole.len() >= 10 && whole.len() * size <= 64 << 20,
        "{} whole snapshots of {size} bytes",
        whole.len()
    );
    assert!(matches!(whole.last(), Some(Event::Snapshot(s)) if s.step == STEPS));
    p.send(&end(STEPS, "completed"));
    assert_eq!(p.exit_code(Duration::from_secs(30)), Some(0));
}
