//! The hardening of `serve`, `attach` and `bridge` against other people: what reaches the remote
//! shell through `attach ssh://`, who may own the socket's directory and the server, tokens, and
//! what a viewer may not do to the run.
mod remote_support;

use std::io::Read;
use std::process::{Command as Process, ExitStatus, Stdio};
use std::time::Duration;

use remote_support::{wait_within, FakeSsh, RemoteBntop};

/// `bntop attach TARGET` with the stand-in ssh first on the PATH (the stand-in remote `bntop`
/// says nothing, so attach fails once ssh has run): its exit status and stderr.
fn attach_through(fake: &FakeSsh, target: &str) -> (ExitStatus, String) {
    let mut child = Process::new(env!("CARGO_BIN_EXE_bntop"))
        .arg("attach")
        .arg(target)
        .env("PATH", fake.path_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bntop attach");
    let status = wait_within(&mut child, Duration::from_secs(30)).expect("attach ends");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr)
}

/// Socket paths that a shell would treat as code (`M` is replaced by a marker file's path): none
/// of them may run anything remotely, and each must reach `bntop bridge` as one argument, as it
/// was written. sshd joins the command's words and hands them to the login shell, so this goes
/// through a real `sh -c`.
#[test]
fn ssh_socket_paths_reach_the_remote_bridge_as_one_literal_argument() {
    let hostile = [
        "/x.sock;touch M",
        "/x$(touch M)",
        "/x`touch M`",
        "/x|touch M",
        "/x&&touch M",
        "/x&touch M&",
        "/x>M",
        "/x';touch M;'",
        "/x\";touch M;\"",
        "/x #;touch M",
        "/x/*",
        "/x y  z.sock",
        "/x$IFS{a,b}~",
        "/tmp/it's here.sock",
    ];
    for template in hostile {
        let fake = FakeSsh::new(RemoteBntop::Logger);
        let marker = fake.dir.path().join("pwned");
        let socket = template.replace('M', &marker.display().to_string());
        let (status, stderr) = attach_through(&fake, &format!("ssh://gpu{socket}"));
        assert!(!status.success(), "{socket:?}: attach cannot succeed here");
        assert!(
            !marker.exists(),
            "{socket:?} ran a command remotely; ssh got {:?}",
            fake.argv("ssh-argv")
        );
        let ssh = fake.argv("ssh-argv").expect("ssh was run");
        assert_eq!(
            ssh.len(),
            4,
            "{socket:?}: the remote command is one argument: {ssh:?}"
        );
        assert_eq!(&ssh[..3], ["-T", "--", "gpu"], "{socket:?}");
        assert_eq!(
            fake.argv("bntop-argv"),
            Some(vec!["bridge".to_string(), socket.clone()]),
            "{socket:?}: ssh got {ssh:?}; attach said {stderr}"
        );
    }
}

/// A newline or a backslash in the socket path is refused before ssh runs: some login shells
/// (csh, fish) read them differently even inside single quotes.
#[test]
fn ssh_socket_paths_other_shells_would_misread_are_refused() {
    for template in ["/x\ntouch M", "/x\\';touch M;#", "/x\rtouch M", "/x\u{7f}"] {
        let fake = FakeSsh::new(RemoteBntop::Logger);
        let marker = fake.dir.path().join("pwned");
        let socket = template.replace('M', &marker.display().to_string());
        let (status, stderr) = attach_through(&fake, &format!("ssh://gpu{socket}"));
        assert_eq!(status.code(), Some(2), "{socket:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("socket path"), "{stderr}");
        assert_eq!(fake.argv("ssh-argv"), None, "{socket:?}: ssh must not run");
        assert!(!marker.exists());
    }
}

/// The host part goes to ssh after `--` (so it cannot be an option); an IPv6 address loses its
/// brackets, with or without a port.
#[test]
fn ssh_destinations_reach_ssh_as_one_plain_argument() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "ssh://me@gpu:2222/run/b.sock",
            &[
                "-p",
                "2222",
                "-T",
                "--",
                "me@gpu",
                "bntop bridge /run/b.sock",
            ],
        ),
        (
            "ssh://[::1]:22/x.sock",
            &["-p", "22", "-T", "--", "::1", "bntop bridge /x.sock"],
        ),
        (
            "ssh://[::1]/x.sock",
            &["-T", "--", "::1", "bntop bridge /x.sock"],
        ),
        (
            "ssh://me@[fe80::1]",
            &["-T", "--", "me@fe80::1", "bntop bridge"],
        ),
    ];
    for (target, expected) in cases {
        let fake = FakeSsh::new(RemoteBntop::Logger);
        let (status, stderr) = attach_through(&fake, target);
        assert!(!status.success());
        assert_eq!(
            fake.argv("ssh-argv"),
            Some(expected.iter().map(|s| s.to_string()).collect()),
            "{target}: {stderr}"
        );
    }
    for bad in [
        "ssh://-oProxyCommand=x/s",
        "ssh://[::1/x",
        "ssh://[::1]x/s",
        "ssh://gpu:99999/s",
    ] {
        let fake = FakeSsh::new(RemoteBntop::Logger);
        let (status, stderr) = attach_through(&fake, bad);
        assert_eq!(status.code(), Some(2), "{bad}: {stderr}");
        assert_eq!(fake.argv("ssh-argv"), None, "{bad}: ssh must not run");
    }
}

/// `bntop serve ARGS` (no recording) with `env`, expected to refuse to start: its stderr, which
/// must be one line, after exit code 2.
fn serve_refuses(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> String {
    let mut command = Process::new(env!("CARGO_BIN_EXE_bntop"));
    command
        .arg("serve")
        .arg("--no-record")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run bntop serve");
    let status = wait_within(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = status.unwrap_or_else(|| panic!("serve {args:?} started: {stderr}"));
    assert_eq!(status.code(), Some(2), "serve {args:?}: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

fn make_dir(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn is_root() -> bool {
    bntop::remote::unix_socket::my_uid() == 0
}

/// The default socket's directory (here `$XDG_RUNTIME_DIR`; `/tmp/bntop-UID` follows the same
/// rule) must be a real directory of the user's that nobody else can enter: another user who
/// pre-created it could swap the socket.
#[test]
fn serve_refuses_a_default_socket_directory_another_user_could_control() {
    let base = tempfile::tempdir().expect("tempdir");
    for (name, mode) in [("open", 0o777), ("group", 0o770), ("readable", 0o755)] {
        let dir = base.path().join(name);
        make_dir(&dir, mode);
        let said = serve_refuses(&[], &[("XDG_RUNTIME_DIR", dir.as_os_str())]);
        assert!(
            said.contains("refusing the socket directory") && said.contains(name),
            "{said}"
        );
        assert!(!dir.join("bntop.sock").exists(), "{name}: no socket made");
    }
    let private = base.path().join("private");
    make_dir(&private, 0o700);
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&private, &link).expect("symlink");
    let said = serve_refuses(&[], &[("XDG_RUNTIME_DIR", link.as_os_str())]);
    assert!(said.contains("symbolic link"), "{said}");
    assert!(!private.join("bntop.sock").exists());
    if is_root() {
        // Someone else's, even if private.
        std::os::unix::fs::chown(&private, Some(65534), Some(65534)).expect("chown");
        let said = serve_refuses(&[], &[("XDG_RUNTIME_DIR", private.as_os_str())]);
        assert!(said.contains("belongs to uid 65534"), "{said}");
    }
}

/// A directory named with `--socket` may be shared (a project directory, /tmp), but nobody else
/// may be able to replace the socket in it: group- or world-writable only if sticky, and owned
/// by the user or root. A private directory of the user's is fine, as is a missing one (made
/// 0700). Anything but a socket at the path is left alone.
#[test]
fn serve_refuses_a_named_socket_directory_others_could_write_to() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().expect("tempdir");
    let open = base.path().join("open");
    make_dir(&open, 0o777);
    let socket = open.join("b.sock");
    let said = serve_refuses(&["--socket", &socket.display().to_string()], &[]);
    assert!(said.contains("not sticky"), "{said}");
    assert!(!socket.exists());

    let file = base.path().join("precious.txt");
    std::fs::write(&file, "keep me").expect("write");
    let said = serve_refuses(&["--socket", &file.display().to_string()], &[]);
    assert!(said.contains("not a socket"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&file).ok().as_deref(),
        Some("keep me")
    );

    // Sticky and world-writable, like /tmp: accepted. And a missing directory is made 0700.
    let sticky = base.path().join("sticky");
    make_dir(&sticky, 0o1777);
    let fresh = base.path().join("fresh").join("deeper");
    for dir in [&sticky, &fresh] {
        let socket = dir.join("b.sock");
        let mut serve = Process::new(env!("CARGO_BIN_EXE_bntop"))
            .args(["serve", "--data", "digits", "--no-record", "--socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !socket.exists() && std::time::Instant::now() < deadline {
            assert!(
                matches!(serve.try_wait(), Ok(None)),
                "serve refused {}",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = serve.kill();
        let _ = serve.wait();
        assert!(
            std::fs::symlink_metadata(&socket).is_ok(),
            "serve never listened in {}",
            dir.display()
        );
    }
    let mode = std::fs::metadata(&fresh)
        .expect("made")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    if is_root() {
        std::os::unix::fs::chown(&sticky, Some(65534), Some(65534)).expect("chown");
        let socket = sticky.join("c.sock");
        let said = serve_refuses(&["--socket", &socket.display().to_string()], &[]);
        assert!(said.contains("neither you"), "{said}");
    }
}

/// `attach` and `bridge` check who runs the server (SO_PEERCRED) before they send anything: a
/// socket served by another user is refused. Needs root, to run that server as `nobody`.
#[test]
fn attach_and_bridge_refuse_a_server_run_by_another_user() {
    use std::os::unix::process::CommandExt;
    if !is_root() {
        eprintln!("skipped: running a server as another user needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).expect("chown");
    let mut command = remote_support::serve_command(dir.path(), &[]);
    command.uid(65534).gid(65534);
    let server = remote_support::Server::launch(command, dir);
    let socket = server.socket.display().to_string();
    for args in [["attach", &socket], ["bridge", &socket]] {
        let out = Process::new(env!("CARGO_BIN_EXE_bntop"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("runs as uid 65534"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing relayed");
    }
    // Neither said hello: the server saw two connections close without one.
    for _ in 0..2 {
        server.wait_log(|l| l.contains("closed before saying hello"));
    }
}

/// An empty or short token is refused at start (exit 2, one line), from the flag or the
/// environment.
#[test]
fn serve_refuses_empty_and_short_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("b.sock").display().to_string();
    let tcp = ["--socket", &socket, "--tcp", "127.0.0.1:0"];
    for token in ["", "short", "fifteen-chars-x"] {
        let said = serve_refuses(&[&tcp[..], &["--token", token]].concat(), &[]);
        assert!(said.contains("token"), "{token:?}: {said}");
        let said = serve_refuses(&tcp, &[("BNTOP_TOKEN", std::ffi::OsStr::new(token))]);
        assert!(said.contains("token"), "BNTOP_TOKEN={token:?}: {said}");
    }
}

/// With the server's own random token, a hello with an empty or partial token gets nothing.
#[test]
fn only_the_whole_token_lets_a_tcp_viewer_in() {
    use bntop::remote::client::{self, Target};
    let server = remote_support::Server::start(&["--tcp", "127.0.0.1:0"]);
    let (address, token) = remote_support::tcp_address(&server);
    for wrong in [
        String::new(),
        token[..token.len() - 1].to_string(),
        format!("{token}x"),
    ] {
        let refused = client::connect(&Target::Tcp(address.clone()), Some(wrong.clone()), true);
        assert!(
            refused
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains("token")),
            "{wrong:?} got in"
        );
    }
    assert!(client::connect(&Target::Tcp(address), Some(token), true).is_ok());
}

/// Say hello on the Unix socket and send `quit` the way any program could (`attach` itself never
/// sends it); the lines the server sends back arrive on the returned channel.
fn send_quit(socket: &std::path::Path) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader, Write};
    let mut raw = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    raw.write_all(b"{\"hello\":{}}\n{\"control\":\"quit\"}\n")
        .expect("write");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(raw).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn is_refused_quit(event: &bntop::protocol::Event) -> bool {
    use bntop::protocol::{Control, Event};
    matches!(event, Event::Control(c) if c.control == Control::Quit && c.rejected.is_some())
}

/// A viewer's `quit` would stop the run for everyone: by default the server rejects it, and the
/// rejection shows like any rejected control, to every viewer and in the recording.
#[test]
fn a_viewers_quit_is_rejected_where_everyone_sees_it() {
    use bntop::protocol::{Event, Feed};
    use bntop::remote::client::{self, Target};
    use remote_support::{last_step, wait_steps, Server, DEADLINE};
    let mut server = Server::start(&[]);
    let watcher =
        client::connect(&Target::Unix(server.socket.clone()), None, true).expect("watcher");
    wait_steps(&watcher.feed, 3);
    let quitter = send_quit(&server.socket);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = quitter
            .recv_timeout(left)
            .expect("the quitter hears the refusal");
        if serde_json::from_str::<Event>(&line).is_ok_and(|e| is_refused_quit(&e)) {
            assert!(line.contains("--allow-viewer-quit"), "{line}");
            break;
        }
    }
    loop {
        match watcher.feed.recv_deadline(deadline) {
            Ok(Feed::Event(e)) if is_refused_quit(&e) => break,
            Ok(_) => {}
            Err(_) => panic!("the other viewer never saw the refusal"),
        }
    }
    // The run goes on.
    let before = last_step(&wait_steps(&watcher.feed, 1));
    let after = last_step(&wait_steps(&watcher.feed, 20));
    assert!(after > before, "{before} -> {after}");
    assert!(matches!(server.child.try_wait(), Ok(None)), "serve ended");
    server.signal("TERM");
    assert!(wait_within(&mut server.child, DEADLINE).is_some_and(|s| s.success()));
    let recorded = std::fs::read_to_string(server.recording()).expect("recording");
    assert!(
        recorded
            .lines()
            .filter_map(|l| serde_json::from_str::<Event>(l).ok())
            .any(|e| is_refused_quit(&e)),
        "the refusal is recorded"
    );
}

/// With `--allow-viewer-quit`, a viewer's `quit` stops the run like a signal: it ends cleanly
/// with its end record.
#[test]
fn with_allow_viewer_quit_a_viewer_may_stop_the_run() {
    use bntop::protocol::{EndReason, Event};
    use remote_support::{Server, DEADLINE};
    let mut server = Server::start(&["--allow-viewer-quit"]);
    let _quitter = send_quit(&server.socket);
    let status = wait_within(&mut server.child, DEADLINE).expect("serve stops");
    assert!(status.success(), "{status:?}");
    let recorded = std::fs::read_to_string(server.recording()).expect("recording");
    let last = recorded.lines().last().expect("a line");
    assert!(
        matches!(serde_json::from_str::<Event>(last), Ok(Event::End(e)) if e.reason == EndReason::Quit),
        "{last}"
    );
}
