//! How `bntop serve` ends, seen from its viewers: with its stderr gone, and through `bntop bridge`
//! (what `attach ssh://` runs), where a viewer must see the end at once without pressing a key.
mod remote_support;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bntop::protocol::{EndReason, Event};
use bntop::remote::client::{self, Target};
use remote_support::{
    bridge_after_hello, send_signal, serve_command, shell_quote, wait_steps, wait_within, FakeSsh,
    RemoteBntop, Server, DEADLINE,
};

/// `serve` with its stderr a pipe nobody reads any more (a `| tee` that died, a dropped ssh):
/// a viewer still attaches and gets data, and SIGTERM still ends the run with its end record.
#[test]
fn a_closed_stderr_breaks_neither_viewers_nor_the_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = serve_command(dir.path(), &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .spawn()
        .expect("start bntop serve");
    let socket = dir.path().join("bntop.sock");
    let deadline = Instant::now() + DEADLINE;
    let viewer = loop {
        match client::connect(&Target::Unix(socket.clone()), None, true) {
            Ok(viewer) => break viewer,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no viewer could attach: {e}; serve: {:?}",
                    child.try_wait()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    wait_steps(&viewer.feed, 5);
    send_signal(child.id(), "TERM");
    let status = wait_within(&mut child, Duration::from_secs(3));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = status.expect("SIGTERM ends serve within 3 s");
    assert!(status.success(), "{status:?}");
    let recorded = std::fs::read_to_string(dir.path().join("run.jsonl")).expect("recording");
    let last = recorded.lines().last().expect("a line");
    assert!(last.contains("\"kind\":\"end\""), "{last}");
}

/// What one `bntop bridge` printed: each line with the time it arrived; `None` at end of stream.
fn read_lines(out: std::process::ChildStdout) -> mpsc::Receiver<Option<(Instant, String)>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(out);
        loop {
            let mut line = String::new();
            match out.read_line(&mut line) {
                Ok(n) if n > 0 => {
                    if tx.send(Some((Instant::now(), line))).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = tx.send(None);
                    return;
                }
            }
        }
    });
    rx
}

/// Two viewers through `bntop bridge`, their side of the pipe left open (nobody presses a key).
/// After SIGTERM to serve each one receives the end record, then end of stream within a second,
/// and each bridge exits by itself. Twice, since the end record used to be lost to a race.
#[test]
fn bridges_deliver_the_end_and_exit_when_the_server_stops() {
    for trial in 0..2 {
        let mut server = Server::start(&[]);
        let mut bridges = Vec::new();
        for _ in 0..2 {
            let (bridge, stdin, stdout) = bridge_after_hello(&server.socket);
            let lines = read_lines(stdout);
            bridges.push((bridge, stdin, lines));
        }
        for (_, _, lines) in &bridges {
            let mut snapshots = 0;
            while snapshots < 5 {
                let Ok(Some((_, line))) = lines.recv_timeout(DEADLINE) else {
                    panic!("trial {trial}: the stream stopped");
                };
                snapshots += usize::from(line.contains("\"kind\":\"snapshot\""));
            }
        }
        server.signal("TERM");
        let exited = wait_within(&mut server.child, Duration::from_secs(15));
        assert!(exited.is_some(), "trial {trial}: serve did not stop");
        for (mut bridge, _stdin, lines) in bridges {
            let mut end_at = None;
            let eof_at = loop {
                match lines.recv_timeout(Duration::from_secs(5)) {
                    Ok(Some((at, line))) => {
                        if let Ok(Event::End(e)) = serde_json::from_str::<Event>(&line) {
                            assert_eq!(e.reason, EndReason::Quit);
                            end_at = Some(at);
                        }
                    }
                    Ok(None) => break Instant::now(),
                    Err(_) => panic!("trial {trial}: the bridge's output never ended"),
                }
            };
            let end_at = end_at.unwrap_or_else(|| panic!("trial {trial}: no end record"));
            assert!(
                eof_at - end_at < Duration::from_secs(1),
                "trial {trial}: end of stream {:?} after the end record",
                eof_at - end_at
            );
            let status = wait_within(&mut bridge, Duration::from_secs(1));
            if status.is_none() {
                let _ = bridge.kill();
            }
            assert!(
                status.is_some(),
                "trial {trial}: the bridge is still running with its viewer silent"
            );
        }
    }
}

/// A tmux server of its own (killed on drop) with one 120x40 pane running `bntop attach` over
/// the stand-in ssh, which runs the real `bntop bridge`.
struct Pane {
    dir: tempfile::TempDir,
    _fake: FakeSsh,
}

impl Pane {
    fn attach_over_ssh(server: &Server) -> Pane {
        let pane = Pane {
            dir: tempfile::tempdir().expect("tempdir"),
            _fake: FakeSsh::new(RemoteBntop::Real),
        };
        let command = format!(
            "PATH={} {} attach ssh://gpu{}; sleep 600",
            shell_quote(&pane._fake.path_env()),
            shell_quote(env!("CARGO_BIN_EXE_bntop")),
            shell_quote(&server.socket.display().to_string())
        );
        let started = pane.tmux(&[
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "env",
            "TERM=xterm-256color",
            "sh",
            "-c",
            &command,
        ]);
        assert!(started.status.success(), "{started:?}");
        pane.wait_for("the dashboard", Duration::from_secs(40), |s| {
            s.contains("block3") && s.contains("steps/s")
        });
        pane
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Process::new("tmux")
            .args(["-f", "/dev/null", "-S"])
            .arg(self.dir.path().join("tmux"))
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is required: apt-get install -y tmux")
    }

    fn wait_for(&self, what: &str, limit: Duration, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.tmux(&["capture-pane", "-p"]);
            let screen = String::from_utf8_lossy(&out.stdout);
            if ready(&screen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {limit:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The real dashboard (in tmux) attached over ssh: after SIGTERM to serve the screen shows
/// STOPPED within 2 s of the server's exit, with no key pressed.
#[test]
fn the_dashboard_over_ssh_shows_the_end_without_a_key_press() {
    let mut server = Server::start(&[]);
    let pane = Pane::attach_over_ssh(&server);
    server.signal("TERM");
    let exited = wait_within(&mut server.child, Duration::from_secs(15));
    assert!(exited.is_some(), "serve did not stop");
    pane.wait_for("STOPPED", Duration::from_secs(2), |s| s.contains("STOPPED"));
}

/// A server that dies without an end record (SIGKILL): the dashboard over ssh says the
/// connection is lost (DISCONNECTED, retrying) within 2 s, with no key pressed.
#[test]
fn the_dashboard_over_ssh_shows_a_lost_server_without_a_key_press() {
    let mut server = Server::start(&[]);
    let pane = Pane::attach_over_ssh(&server);
    let _ = server.child.kill();
    let _ = server.child.wait();
    // The header's badge replaces the stale rate, and the footer says it is retrying.
    pane.wait_for("word of the lost connection", Duration::from_secs(2), |s| {
        s.contains("connection lost") && s.contains("DISCONNECTED") && !s.contains("steps/s")
    });
    // A retry later: the remote bridge's complaint (on ssh's stderr) is the footer's
    // reason, and never written over the dashboard (it once scrolled the screen).
    pane.wait_for("the bridge's reason", Duration::from_secs(5), |s| {
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        let (Some(first), Some(footer)) = (lines.first(), lines.last()) else {
            return false;
        };
        footer.contains("(q quits): bntop: cannot connect")
            && first.starts_with("bntop ")
            && s.contains("DISCONNECTED")
            && lines[..lines.len() - 1]
                .iter()
                .all(|l| !l.contains("cannot connect"))
    });
}
