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
