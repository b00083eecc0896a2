//! `bntop serve` with real sockets: two viewers (Unix socket and loopback TCP) see the stream, a
//! control from one shows in the other, a viewer that dies or stalls costs nothing, bad peers are
//! refused, and `bntop bridge` carries the protocol over a pipe.
mod remote_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use bntop::protocol::{BnMode, Command, Control, Event, Feed};
use bntop::remote::client::{self, Target};
use remote_support::{
    bridge_after_hello, last_step, tcp_address, wait_steps, FakeSsh, RemoteBntop, Server, DEADLINE,
};

#[test]
fn two_viewers_share_the_run_and_its_controls() {
    let server = Server::start(&["--tcp", "127.0.0.1:0"]);
    let (address, token) = tcp_address(&server);
    let a =
        client::connect(&Target::Unix(server.socket.clone()), None, false).expect("unix viewer");
    let b = client::connect(&Target::Tcp(address.clone()), Some(token.clone()), false)
        .expect("tcp viewer");
    // Both get the header first, then live snapshots.
    let seen_a = wait_steps(&a.feed, 5);
    let seen_b = wait_steps(&b.feed, 5);
    assert!(matches!(seen_a.first(), Some(Event::Header(_))));
    assert!(matches!(seen_b.first(), Some(Event::Header(_))));
    // A control from the Unix viewer shows in the TCP viewer.
    let eval = Control::SetMode {
        layer: Some(1),
        mode: BnMode::Eval,
    };
    a.commands.send(Command::Run(eval.clone())).expect("send");
    let deadline = Instant::now() + DEADLINE;
    loop {
        match b.feed.recv_deadline(deadline) {
            Ok(Feed::Event(Event::Control(c))) if c.control == eval => break,
            Ok(_) => {}
            Err(_) => panic!("the control never reached the other viewer"),
        }
    }
    // One viewer goes away; the other and training go on.
    drop(a);
    let before = last_step(&wait_steps(&b.feed, 1));
    let after = last_step(&wait_steps(&b.feed, 20));
    assert!(after > before, "training stopped: {before} -> {after}");
    // A viewer attaching now gets the header and recent history at once.
    let c = client::connect(&Target::Unix(server.socket.clone()), None, true).expect("late viewer");
    let backlog = wait_steps(&c.feed, 50);
    assert!(matches!(backlog.first(), Some(Event::Header(_))));
    assert!(backlog
        .iter()
        .any(|e| matches!(e, Event::Control(x) if x.control == eval)));
    // The recording has the control too.
    let recorded = std::fs::read_to_string(server.recording()).expect("recording");
    assert!(recorded.contains("\"set_mode\""), "the control is recorded");
}

#[test]
fn bad_peers_are_refused_and_the_server_keeps_serving() {
    let server = Server::start(&["--tcp", "127.0.0.1:0", "--token", "the-right-token-0123"]);
    let (address, _) = tcp_address(&server);
    let good = client::connect(&Target::Unix(server.socket.clone()), None, false).expect("viewer");
    wait_steps(&good.feed, 3);

    // Garbage instead of a hello: one refusal line, then the connection closes.
    let mut garbage = UnixStream::connect(&server.socket).expect("connect");
    garbage
        .write_all(b"\x00\xffnot json at all\n")
        .expect("write");
    let mut answer = String::new();
    garbage.read_to_string(&mut answer).expect("read");
    assert!(answer.contains("refused"), "{answer}");
    server.wait_log(|l| l.contains("refused"));

    // A wrong token.
    let refusal = client::connect(&Target::Tcp(address.clone()), Some("wrong".into()), false).err();
    assert!(refusal.is_some_and(|e| e.to_string().contains("token")));

    // A garbage control after a good hello drops that viewer only.
    let mut rude = TcpStream::connect(&address).expect("connect");
    rude.write_all(
        b"{\"hello\":{\"token\":\"the-right-token-0123\"}}\n{\"control\":\"explode\"}\n",
    )
    .expect("write");
    server.wait_log(|l| l.contains("not a control"));

    // A viewer that attaches and never reads, and one that never says hello.
    let mut stalled = UnixStream::connect(&server.socket).expect("connect");
    stalled.write_all(b"{\"hello\":{}}\n").expect("write");
    let _half_open = UnixStream::connect(&server.socket).expect("connect");
    server.wait_log(|l| l.contains("no hello in time"));

    // Through all of it the good viewer keeps receiving a training run that keeps going.
    let before = last_step(&wait_steps(&good.feed, 1));
    let after = last_step(&wait_steps(&good.feed, 30));
    assert!(after > before + 100, "{before} -> {after}");
}

#[test]
fn the_bridge_carries_the_protocol_over_a_pipe() {
    let server = Server::start(&[]);
    let (mut bridge, mut stdin, stdout) = bridge_after_hello(&server.socket);
    let mut out = BufReader::new(stdout);
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert!(
        matches!(serde_json::from_str::<Event>(&line), Ok(Event::Header(_))),
        "{line}"
    );
    let pause = serde_json::to_string(&Control::Pause).expect("json") + "\n";
    stdin.write_all(pause.as_bytes()).expect("control");
    let deadline = Instant::now() + DEADLINE;
    loop {
        line.clear();
        assert!(Instant::now() < deadline, "no echo of the control");
        out.read_line(&mut line).expect("read");
        if matches!(serde_json::from_str::<Event>(&line), Ok(Event::Control(c)) if c.control == Control::Pause)
        {
            break;
        }
    }
    drop(stdin);
    assert!(bridge.wait().expect("bridge exits").success());
}

#[test]
fn a_signal_stops_training_and_closes_the_recording() {
    let mut server = Server::start(&[]);
    let viewer =
        client::connect(&Target::Unix(server.socket.clone()), None, false).expect("viewer");
    wait_steps(&viewer.feed, 5);
    let pid = server.child.id().to_string();
    assert!(Process::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    let status = server.child.wait().expect("exit");
    assert!(status.success(), "{status:?}");
    let recorded = std::fs::read_to_string(server.recording()).expect("recording");
    let last = recorded.lines().last().expect("a line");
    assert!(last.contains("\"kind\":\"end\""), "{last}");
    assert!(!server.socket.exists(), "the socket is removed");
}

/// `attach ssh://host/socket` runs `ssh -T -- host 'bntop bridge socket'`. A stand-in `ssh` on
/// the PATH (which runs the remote command here, with `sh -c` as sshd would) checks that command
/// line and the whole path through the bridge, without an ssh server.
#[test]
fn ssh_targets_run_the_bridge_through_ssh() {
    let server = Server::start(&[]);
    let fake = FakeSsh::new(RemoteBntop::Real);
    // The client spawns `ssh` from PATH; run it with the stand-in first on the PATH.
    let target = Target::parse(Some(&format!(
        "ssh://me@gpu:2222{}",
        server.socket.display()
    )))
    .expect("target");
    let previous = std::env::var_os("PATH");
    // SAFETY of the test: this test binary's other tests do not spawn ssh.
    unsafe { std::env::set_var("PATH", fake.path_env()) };
    let viewer = client::connect(&target, None, true);
    if let Some(p) = previous {
        unsafe { std::env::set_var("PATH", p) };
    }
    let viewer = viewer.expect("viewer over the stand-in ssh");
    let events = wait_steps(&viewer.feed, 5);
    assert!(matches!(events.first(), Some(Event::Header(_))));
    let expected = [
        "-p".to_string(),
        "2222".into(),
        "-T".into(),
        "--".into(),
        "me@gpu".into(),
        format!(
            "bntop bridge {}",
            client::shell_word(&server.socket.display().to_string())
        ),
    ];
    assert_eq!(fake.argv("ssh-argv"), Some(expected.to_vec()));
}

/// A viewer that says hello and then never reads: once its socket buffer is full the server
/// gives up on it (a write that does not finish within 10 s) and says so; training never waited.
#[test]
fn a_viewer_that_never_reads_is_dropped() {
    let server = Server::start(&[]);
    let good = client::connect(&Target::Unix(server.socket.clone()), None, true).expect("viewer");
    let mut stalled = UnixStream::connect(&server.socket).expect("connect");
    stalled.write_all(b"{\"hello\":{}}\n").expect("write");
    let started = Instant::now();
    server.wait_log(|l| l.contains("viewer 2") && l.contains("dropped"));
    // Dropped by the write timeout, not at once; and the other viewer kept receiving.
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let events = wait_steps(&good.feed, 200);
    assert!(
        last_step(&events) > 1000,
        "training went on: {}",
        last_step(&events)
    );
    drop(stalled);
}
