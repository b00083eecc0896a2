//! A server under a crowd of peers that never finish their hello: viewers must still get in at
//! once, and a peer cannot hold its connection by dribbling its hello.
mod remote_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command as Process;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bntop::remote::client::{self, Target};
use remote_support::{serve_command, tcp_address, Server};

/// 700 connections (half on the Unix socket, half on TCP) that never say hello, on a server
/// limited to 1024 open files; then 10 viewers, 5 on each listener, arriving together: each one
/// gets its first record within a second.
#[test]
fn idle_connections_do_not_lock_viewers_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = serve_command(dir.path(), &["--tcp", "127.0.0.1:0"]);
    let mut limited = Process::new("sh");
    limited
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(serve.get_program())
        .args(serve.get_args());
    let server = Server::launch(limited, dir);
    let (address, token) = tcp_address(&server);

    let mut unix_idle = Vec::new();
    let mut tcp_idle = Vec::new();
    for _ in 0..350 {
        unix_idle.push(UnixStream::connect(&server.socket).expect("idle unix connection"));
        tcp_idle.push(TcpStream::connect(&address).expect("idle tcp connection"));
    }

    let (done, results) = mpsc::channel();
    for i in 0..10 {
        let target = if i % 2 == 0 {
            Target::Unix(server.socket.clone())
        } else {
            Target::Tcp(address.clone())
        };
        let token = (i % 2 == 1).then(|| token.clone());
        let done = done.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            // `connect` returns once the first record (the header) has arrived.
            let viewer = client::connect(&target, token, true);
            let _ = done.send((i, viewer.map(|_| started.elapsed())));
        });
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut times = Vec::new();
    while times.len() < 10 {
        let left = deadline.saturating_duration_since(Instant::now());
        match results.recv_timeout(left) {
            Ok((i, Ok(elapsed))) => times.push((i, elapsed)),
            Ok((i, Err(e))) => panic!("viewer {i} was turned away: {e}"),
            Err(_) => panic!(
                "only {} of 10 viewers got a record within 3 s: {times:?}",
                times.len()
            ),
        }
    }
    eprintln!("times to the first record: {times:?}");
    for (i, elapsed) in &times {
        assert!(
            *elapsed < Duration::from_secs(1),
            "viewer {i} waited {elapsed:?} for its first record: {times:?}"
        );
    }
    drop((unix_idle, tcp_idle));
}

/// A peer that sends its hello one byte a second never finishes a line, and is cut off when the
/// hello's 5 s are up, however often it sends.
#[test]
fn a_dribbled_hello_is_cut_off_at_the_deadline() {
    let server = Server::start(&[]);
    let mut stream = UnixStream::connect(&server.socket).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let started = Instant::now();
    std::thread::spawn(move || {
        let bytes = b"{\"hello\":{}}".iter().chain(std::iter::repeat(&b' '));
        for &b in bytes.take(30) {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let elapsed = started.elapsed();
    assert!(answer.contains("refused"), "{answer:?} after {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed < Duration::from_secs(7),
        "cut off after {elapsed:?}"
    );
}
