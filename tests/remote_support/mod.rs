//! What the remote tests share: a real `bntop serve` process, reading its stream, and a stand-in
//! `ssh` that runs the remote command the way sshd does (joined and handed to `sh -c`).
#![allow(dead_code)]
use std::io::Write;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bntop::protocol::{Event, Feed};
use crossbeam_channel::Receiver;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running `bntop serve`, killed on drop; its stderr lines arrive on `log`.
pub struct Server {
    pub child: Child,
    pub log: mpsc::Receiver<String>,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child's output, line by line, read on a thread of its own.
pub fn lines_of(input: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(input).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line of `log` matching `pred`, within [`DEADLINE`].
pub fn wait_line(log: &mpsc::Receiver<String>, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("no such log line from bntop serve"),
        }
    }
}

/// `bntop serve --data digits --socket DIR/bntop.sock --record DIR/run.jsonl EXTRA...`, not yet
/// started.
pub fn serve_command(dir: &Path, extra: &[&str]) -> Process {
    let mut command = Process::new(env!("CARGO_BIN_EXE_bntop"));
    command.arg("serve");
    // The built-in engine trains on the quick digits; an external producer (`--source -`)
    // takes no training options.
    if !extra.contains(&"--source") {
        command.args(["--data", "digits"]);
    }
    command
        .arg("--socket")
        .arg(dir.join("bntop.sock"))
        .arg("--record")
        .arg(dir.join("run.jsonl"))
        .args(extra);
    command
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = serve_command(dir.path(), extra);
        Server::launch(command, dir)
    }

    /// Start `command` (a serve command for `dir`) and wait until it listens.
    pub fn launch(mut command: Process, dir: tempfile::TempDir) -> Server {
        let socket = dir.path().join("bntop.sock");
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bntop serve");
        let log = lines_of(child.stderr.take().expect("stderr"));
        let server = Server {
            child,
            log,
            socket,
            dir,
        };
        server.wait_log(|l| l.contains("attach with"));
        server
    }

    /// Wait for a log line matching `pred`; returns it.
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool) -> String {
        wait_line(&self.log, pred)
    }

    pub fn recording(&self) -> PathBuf {
        self.dir.path().join("run.jsonl")
    }

    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }
}

/// `bntop bridge SOCKET` with pipes, its hello already sent: (process, its stdin, its stdout).
pub fn bridge_after_hello(socket: &Path) -> (Child, ChildStdin, ChildStdout) {
    let mut bridge = Process::new(env!("CARGO_BIN_EXE_bntop"))
        .arg("bridge")
        .arg(socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bridge");
    let mut stdin = bridge.stdin.take().expect("stdin");
    stdin.write_all(b"{\"hello\":{}}\n").expect("hello");
    let stdout = bridge.stdout.take().expect("stdout");
    (bridge, stdin, stdout)
}

pub fn send_signal(pid: u32, signal: &str) {
    let status = Process::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -s {signal} {pid}");
}

/// Wait for `child` to exit within `limit`; `None` if it is still running.
pub fn wait_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every event until `more` new snapshots arrived.
pub fn wait_steps(feed: &Receiver<Feed>, more: usize) -> Vec<Event> {
    let deadline = Instant::now() + DEADLINE;
    let mut events = Vec::new();
    let mut seen = 0;
    while seen < more {
        match feed.recv_deadline(deadline) {
            Ok(Feed::Event(e)) => {
                seen += usize::from(matches!(e, Event::Snapshot(_)));
                events.push(e);
            }
            Ok(_) => {}
            Err(_) => panic!("the stream stopped after {seen} snapshots"),
        }
    }
    events
}

/// The step of the newest snapshot among `events`.
pub fn last_step(events: &[Event]) -> u64 {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Snapshot(s) => Some(s.step),
            _ => None,
        })
        .unwrap_or(0)
}

/// The TCP address and token the server printed.
pub fn tcp_address(server: &Server) -> (String, String) {
    let line = server.wait_log(|l| l.contains("also on tcp://"));
    let rest = line.split("tcp://").nth(1).expect("address");
    let address = rest.split_whitespace().next().expect("address").to_string();
    let token = rest
        .split("(token ")
        .nth(1)
        .expect("token")
        .trim_end_matches(')')
        .to_string();
    (address, token)
}

/// What the stand-in `ssh` finds as `bntop` on the "remote" side.
pub enum RemoteBntop {
    /// The real binary: `bntop bridge` runs here.
    Real,
    /// A script that only logs its arguments (to `bntop-argv`) and exits.
    Logger,
}

/// A directory to put first on the PATH, with a stand-in `ssh` that logs its arguments (to
/// `ssh-argv`, each followed by a NUL), skips its options up to `--` and the destination, and runs
/// the rest joined by spaces with `sh -c`, as sshd hands a command to the login shell.
pub struct FakeSsh {
    pub dir: tempfile::TempDir,
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Quote for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl FakeSsh {
    pub fn new(bntop: RemoteBntop) -> FakeSsh {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = |name: &str| shell_quote(&dir.path().join(name).display().to_string());
        write_script(
            &dir.path().join("ssh"),
            &format!(
                "for a in \"$@\"; do printf '%s\\000' \"$a\"; done > {}\n\
                 while [ $# -gt 0 ] && [ \"$1\" != -- ]; do shift; done\n\
                 [ \"$1\" = -- ] || exit 9\n\
                 shift 2\n\
                 exec sh -c \"$*\"\n",
                log("ssh-argv")
            ),
        );
        match bntop {
            RemoteBntop::Real => {
                std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bntop"), dir.path().join("bntop"))
                    .expect("link");
            }
            RemoteBntop::Logger => write_script(
                &dir.path().join("bntop"),
                &format!(
                    "for a in \"$@\"; do printf '%s\\000' \"$a\"; done > {}\n",
                    log("bntop-argv")
                ),
            ),
        }
        FakeSsh { dir }
    }

    /// PATH with this directory first.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The arguments logged to `name`, or `None` if that program never ran.
    pub fn argv(&self, name: &str) -> Option<Vec<String>> {
        let bytes = std::fs::read(self.dir.path().join(name)).ok()?;
        let Some(args) = bytes.strip_suffix(&[0]) else {
            return Some(Vec::new());
        };
        Some(
            args.split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        )
    }
}
