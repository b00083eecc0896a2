//! Hostile recordings and servers cannot exhaust the viewer's memory: the real binary's peak
//! resident size (VmHWM) stays under 300 MB on layer bombs, an enormous line, and a file at the
//! limits of sessions/FORMAT.md, and what it skips is counted. `export` runs as a child (its peak
//! comes from wait4); `replay` and `attach` run in tmux, as in tests/terminal.rs, and their peak
//! is read from /proc while they show the last record.
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bntop::protocol::{limits, Event, LayerInfo, RunHeader};
use bntop::ui::synthetic;

const BNTOP: &str = env!("CARGO_BIN_EXE_bntop");
/// The goal: any input of up to 100 MB.
const MAX_RSS_KB: u64 = 300 * 1024;
/// Layers and channels per layer of a bomb snapshot: 24,000 channels in all.
const BOMB_LAYERS: usize = 3000;
const BOMB_CHANNELS: usize = 8;
/// Bomb snapshots in the big file: about 25 MB.
const BOMBS: u64 = 36;
/// The good snapshots after the bombs end at this step.
const LAST_STEP: u64 = 5000;

fn header_line(layers: Vec<LayerInfo>) -> String {
    let header = RunHeader {
        layers,
        ..synthetic::header()
    };
    serde_json::to_string(&Event::Header(Box::new(header))).expect("header")
}

/// The synthetic run's three layers (16, 32 and 64 channels).
fn default_header() -> String {
    header_line(synthetic::header().layers)
}

/// One header layer of `channels` channels, `n` times.
fn wide_header(n: usize, channels: usize) -> String {
    let one = LayerInfo {
        channels,
        ..synthetic::header().layers[0].clone()
    };
    header_line(vec![one; n])
}

/// A layer as small as the format allows: mode, momentum, summary, and a `batch_mean` of
/// `channels` values (none: summary only).
fn layer_json(channels: usize) -> String {
    let summary = r#""summary":{"drift":0,"r_mean":1,"r_min":1,"r_max":1,"d_mean_abs":0,"d_max_abs":0,"weight_norm":1,"angular_update":0,"effective_lr":0,"max_abs_cos":0,"relu_active":0.5}"#;
    if channels == 0 {
        format!(r#"{{"mode":"train","momentum":0.1,{summary}}}"#)
    } else {
        let values = "1,".repeat(channels);
        let values = values.trim_end_matches(',');
        format!(r#"{{"mode":"train","momentum":0.1,"batch_mean":[{values}],{summary}}}"#)
    }
}

/// A snapshot line of `count` copies of `layer`; run times 0.1 ms apart, so a replay plays the
/// file at once. Written piece by piece: the test process stays small (see `run_measured`).
fn snapshot(out: &mut impl Write, step: u64, layer: &str, count: usize) {
    write!(
        out,
        r#"{{"kind":"snapshot","step":{step},"epoch":0,"time_s":{},"loss":1,"batch_accuracy":0.5,"lr":0.1,"layers":["#,
        step as f64 * 1e-4
    )
    .expect("write");
    for i in 0..count {
        let comma = if i == 0 { "" } else { "," };
        write!(out, "{comma}{layer}").expect("write");
    }
    out.write_all(b"]}\n").expect("write");
}

/// The synthetic network's last snapshots, within its header.
fn good_tail(out: &mut impl Write) {
    let layers = [16, 32, 64].map(layer_json).join(",");
    for step in LAST_STEP - 2..=LAST_STEP {
        snapshot(out, step, &layers, 1);
    }
}

fn create(dir: &Path, name: &str) -> (PathBuf, BufWriter<fs::File>) {
    let path = dir.join(name);
    let file = fs::File::create(&path).expect("create");
    (path, BufWriter::new(file))
}

/// The default header, `bombs` snapshots of 3000 layers, then three good snapshots.
fn layer_bomb(dir: &Path, name: &str, bombs: u64) -> PathBuf {
    let (path, mut out) = create(dir, name);
    writeln!(out, "{}", default_header()).expect("write");
    let layer = layer_json(BOMB_CHANNELS);
    for step in 1..=bombs {
        snapshot(&mut out, step, &layer, BOMB_LAYERS);
    }
    good_tail(&mut out);
    out.flush().expect("flush");
    path
}

/// The default header and one snapshot line longer than `MAX_LINE` (numbers only), then good
/// snapshots.
fn enormous_line(dir: &Path) -> PathBuf {
    let (path, mut out) = create(dir, "enormous.jsonl");
    writeln!(out, "{}", default_header()).expect("write");
    snapshot(&mut out, 1, &layer_json(limits::MAX_LINE / 2 + 1000), 1);
    good_tail(&mut out);
    out.flush().expect("flush");
    path
}

/// As wide as the limits allow (the most layers, sharing every channel: the costliest shape
/// measured), whole snapshots up to 25 MB. Returns the last step.
fn at_the_limits(dir: &Path) -> (PathBuf, u64) {
    let (path, mut out) = create(dir, "limits.jsonl");
    let channels = limits::MAX_TOTAL_CHANNELS / limits::MAX_LAYERS;
    writeln!(out, "{}", wide_header(limits::MAX_LAYERS, channels)).expect("write");
    let layer = layer_json(channels);
    let steps = (25 << 20) / (layer.len() * limits::MAX_LAYERS) as u64;
    for step in 1..=steps {
        snapshot(&mut out, step, &layer, limits::MAX_LAYERS);
    }
    out.flush().expect("flush");
    (path, steps)
}

/// Runs bntop to its end; returns its peak resident size in kB, exit status and stderr.
///
/// The peak is wait4's `ru_maxrss`. Linux counts in it the memory of the process that spawned
/// the child, as it was when the child's `exec` replaced it (here a vfork of the test process),
/// so it is an upper bound on bntop's own peak: the test process stays small by writing its
/// files piece by piece.
fn run_measured(args: &[&str], dir: &Path) -> (u64, i32, String) {
    let err_path = dir.join("stderr.txt");
    let err = fs::File::create(&err_path).expect("stderr file");
    // Reaped by wait4 below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(BNTOP)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn bntop");
    let pid = i32::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: plain calls on a child of this process, with valid pointers to locals; the child
    // is reaped here and `Child` does not wait for it again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let stderr = fs::read_to_string(&err_path).expect("stderr");
    // Linux reports ru_maxrss in kB.
    (u64::try_from(usage.ru_maxrss).unwrap_or(0), code, stderr)
}

#[test]
fn export_stays_small_on_layer_bombs_enormous_lines_and_at_the_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (limits_file, limit_steps) = at_the_limits(dir.path());
    let cases = [
        (layer_bomb(dir.path(), "one-bomb.jsonl", 1), 1, 3 * 3),
        (layer_bomb(dir.path(), "bombs.jsonl", BOMBS), BOMBS, 3 * 3),
        (enormous_line(dir.path()), 1, 3 * 3),
        (limits_file, 0, limit_steps * limits::MAX_LAYERS as u64),
    ];
    for (path, skipped, rows) in cases {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let size_mb = fs::metadata(&path).expect("size").len() >> 20;
        let csv = dir.path().join("out.csv");
        let args = ["export", path.to_str().expect("utf-8"), "--csv", "-o"];
        let mut args = args.to_vec();
        args.push(csv.to_str().expect("utf-8"));
        let (peak_kb, code, stderr) = run_measured(&args, dir.path());
        eprintln!("export {name}: peak {} MB", peak_kb / 1024);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(
            peak_kb < MAX_RSS_KB,
            "{name} ({size_mb} MB): export peaked at {} MB",
            peak_kb / 1024
        );
        if skipped > 0 {
            assert!(
                stderr.contains(&format!("skipped {skipped} bad lines")),
                "{name}: {stderr}"
            );
        } else {
            assert!(stderr.is_empty(), "{name}: {stderr}");
        }
        let written = fs::read_to_string(&csv).expect("csv");
        assert_eq!(written.lines().count() as u64, 1 + rows, "{name}");
    }
}

/// One tmux server running one bntop command in a 160x48 pane; killed on drop.
struct Pane {
    socket: String,
}

impl Pane {
    fn start(name: &str, args: &[&str]) -> Pane {
        let pane = Pane {
            socket: format!("bntop-hostile-{}-{name}", std::process::id()),
        };
        let mut command = vec![
            "new-session",
            "-d",
            "-s",
            "m",
            "-x",
            "160",
            "-y",
            "48",
            "env",
            "TERM=xterm-256color",
            BNTOP,
        ];
        command.extend_from_slice(args);
        pane.tmux(&command);
        pane
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-u", "-f", "/dev/null", "-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| panic!("tmux is required (apt-get install -y tmux): {e}"));
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// bntop's process (`env` execs it).
    fn pid(&self) -> String {
        self.tmux(&["display-message", "-p", "-t", "m", "#{pane_pid}"])
            .trim()
            .to_string()
    }

    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.tmux(&["capture-pane", "-p", "-t", "m"]);
            if ready(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Peak resident size of bntop so far, in kB.
    fn peak_kb(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn replay_stays_small_on_a_layer_bomb_and_at_the_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bombs = layer_bomb(dir.path(), "bombs.jsonl", BOMBS);
    let pane = Pane::start("bombs", &["replay", bombs.to_str().expect("utf-8")]);
    let end = format!("step {LAST_STEP}/{LAST_STEP}");
    let skipped = format!("skipped {BOMBS} bad lines");
    pane.wait_for("the last step and the skipped count", |s| {
        s.contains(&end) && s.contains(&skipped)
    });
    let peak = pane.peak_kb();
    eprintln!("replay of bombs: peak {} MB", peak / 1024);
    assert!(
        peak < MAX_RSS_KB,
        "replay of bombs peaked at {} MB",
        peak / 1024
    );
    drop(pane);

    let (path, steps) = at_the_limits(dir.path());
    let pane = Pane::start("limits", &["replay", path.to_str().expect("utf-8")]);
    let end = format!("step {steps}/{steps}");
    let screen = pane.wait_for("the last step", |s| s.contains(&end));
    assert!(!screen.contains("skipped"), "{screen}");
    let peak = pane.peak_kb();
    eprintln!("replay at the limits: peak {} MB", peak / 1024);
    assert!(
        peak < MAX_RSS_KB,
        "replay at the limits peaked at {} MB",
        peak / 1024
    );
}

#[test]
fn attach_stays_small_on_a_hostile_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("hostile.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let bombs = layer_bomb(dir.path(), "bombs.jsonl", BOMBS);
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut hello = String::new();
        reader.read_line(&mut hello).expect("hello");
        assert!(hello.contains("\"hello\""), "{hello}");
        let mut writer = stream;
        let mut file = fs::File::open(bombs).expect("open");
        std::io::copy(&mut file, &mut writer).expect("send");
        // Hold the connection until the viewer leaves.
        let mut rest = String::new();
        while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {}
    });
    let pane = Pane::start("attach", &["attach", socket.to_str().expect("utf-8")]);
    pane.wait_for("the last step", |s| {
        s.contains(&format!("step {LAST_STEP} "))
    });
    let peak = pane.peak_kb();
    eprintln!("attach: peak {} MB", peak / 1024);
    assert!(peak < MAX_RSS_KB, "attach peaked at {} MB", peak / 1024);
    pane.tmux(&["send-keys", "-t", "m", "q"]);
    server.join().expect("the server thread");
}
