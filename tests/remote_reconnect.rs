//! `attach` when its server goes away: the real `bntop serve --source -` is killed (no end
//! record) and started again on the same socket. The viewer shows DISCONNECTED in the header
//! instead of a stale steps/s, retries with backoff, and resumes the stream where it was: the
//! same run's backlog is not repeated, and the new steps arrive.
mod remote_support;
mod ui_support;

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::time::{Duration, Instant};

use bntop::protocol::{Event, Feed, LinkStatus};
use bntop::remote::client::{self, Backoff, Options, Target};
use bntop::ui::app::App;
use crossbeam_channel::Receiver;
use remote_support::{lines_of, wait_line, DEADLINE};
use ui_support::{render, screen, unicode};

/// A small external producer's header (format 1.4, one BN1d layer of 2 features).
const HEADER: &str = concat!(
    r#"{"kind":"header","format":"bntop","version_major":1,"version_minor":4,"#,
    r#""started_unix_ms":1764500000000,"producer":{"name":"scripted","version":"0.1","#,
    r#""framework":"test 1.0","model":"Mlp","device":"cpu","world_size":1,"controls":[]},"#,
    r#""config":{"optimizer":{"kind":"other","name":"AdamW","lr":0.001,"momentum":0,"#,
    r#""weight_decay":0.01,"weight_decay_mode":"decoupled"}},"#,
    r#""layers":[{"name":"fc.bn","channels":2,"kind":"bn1d","feeds_from":"fc"}],"#,
    r#""conventions":{"momentum":"PyTorch","batch_variance":"biased","#,
    r#""running_variance":"unbiased","epsilon":1e-5,"drift":"before the update","#,
    r#""weight_metrics":"per output feature","weight_decay_scope":"all"}}"#
);

fn snapshot(step: u64) -> String {
    format!(
        concat!(
            r#"{{"kind":"snapshot","step":{step},"epoch":0,"time_s":{time},"loss":0.5,"#,
            r#""batch_accuracy":0.75,"lr":0.001,"layers":[{{"mode":"train","momentum":0.1,"#,
            r#""batch_mean":[0.5,0.5],"batch_var":[1,1],"summary":{{"drift":0.1,"r_mean":1,"#,
            r#""r_min":0.9,"r_max":1.1,"d_mean_abs":0.05,"d_max_abs":0.1,"weight_norm":1,"#,
            r#""angular_update":0.01,"effective_lr":0.001,"max_abs_cos":0.001,"#,
            r#""relu_active":0.5}}}}]}}"#
        ),
        step = step,
        time = step as f64 * 0.1,
    )
}

/// `bntop serve --source -` on `dir`'s socket, listening, with the producer's records sent
/// (each server records to a file of its own: serve does not overwrite one).
fn serve(dir: &Path, steps: u64) -> (Child, ChildStdin) {
    let mut child = Process::new(env!("CARGO_BIN_EXE_bntop"))
        .args(["serve", "--source", "-", "--socket"])
        .arg(dir.join("bntop.sock"))
        .arg("--record")
        .arg(dir.join(format!("run-{steps}.jsonl")))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bntop serve --source -");
    let log = lines_of(child.stderr.take().expect("stderr"));
    wait_line(&log, |l| l.contains("attach with"));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut records = vec![HEADER.to_string()];
    records.extend((0..steps).map(snapshot));
    stdin
        .write_all((records.join("\n") + "\n").as_bytes())
        .expect("records to serve");
    stdin.flush().expect("flush");
    (child, stdin)
}

/// Applies the feed to `app` until `done` holds; returns the feed messages other than events.
/// Every snapshot's step goes to `steps`.
fn pump(
    feed: &Receiver<Feed>,
    app: &mut App,
    steps: &mut Vec<u64>,
    done: impl Fn(&App) -> bool,
) -> Vec<Feed> {
    let deadline = Instant::now() + DEADLINE;
    let mut other = Vec::new();
    while !done(app) {
        let message = feed
            .recv_deadline(deadline)
            .unwrap_or_else(|e| panic!("the feed stopped at step {}: {e}", app.live.step));
        match &message {
            Feed::Event(Event::Snapshot(s)) => steps.push(s.step),
            Feed::Event(_) => {}
            other_message => other.push(other_message.clone()),
        }
        app.on_feed(&message, Instant::now());
    }
    other
}

fn header_lines(app: &App) -> String {
    let text = screen(&render(app, 140, 30, unicode()));
    text.lines().take(2).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_lost_server_shows_disconnected_and_the_stream_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut first, _producer) = serve(dir.path(), 10);
    let options = Options {
        reconnect: Some(Backoff {
            first: Duration::from_millis(50),
            cap: Duration::from_millis(400),
        }),
        ..Options::default()
    };
    let target = Target::Unix(dir.path().join("bntop.sock"));
    let viewer = client::connect_with(&target, options).expect("viewer");
    let mut app = App::new();
    let mut steps = Vec::new();
    // The server may hold its newest snapshot back; most of the ten arrive.
    pump(&viewer.feed, &mut app, &mut steps, |a| a.live.step >= 5);
    assert!(header_lines(&app).contains("steps/s"));
    assert!(!header_lines(&app).contains("DISCONNECTED"));

    // The server dies without an end record.
    first.kill().expect("kill serve");
    first.wait().expect("reap serve");
    pump(&viewer.feed, &mut app, &mut steps, |a| {
        a.link_lost.is_some()
    });
    let lost = header_lines(&app);
    assert!(lost.contains("DISCONNECTED, retry 1"), "{lost}");
    assert!(!lost.contains("steps/s"), "no stale rate: {lost}");
    // The newest step that arrived depends on when the server was killed.
    let step = format!("step {}", app.live.step);
    insta::assert_snapshot!("header_disconnected", lost.replace(&step, "step N"));
    // It keeps trying while the server is down.
    let tries = pump(
        &viewer.feed,
        &mut app,
        &mut steps,
        |a| matches!(a.link_lost, Some(LinkStatus::Lost { attempts, .. }) if attempts >= 2),
    );
    assert!(
        tries.iter().all(|f| matches!(f, Feed::Link(_))),
        "{tries:?}"
    );

    // The same run comes back with 10 more steps: the viewer resumes, no step twice.
    let (mut second, _producer) = serve(dir.path(), 20);
    let before = steps.len();
    let back = pump(&viewer.feed, &mut app, &mut steps, |a| {
        a.live.step >= 15 && a.link_lost.is_none()
    });
    assert!(
        back.contains(&Feed::Link(LinkStatus::Connected)),
        "{back:?}"
    );
    assert!(
        !back.contains(&Feed::Reset),
        "the same run is not started over"
    );
    assert!(steps.len() > before, "new steps arrived");
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]),
        "each step once, in order: {steps:?}"
    );
    let resumed = header_lines(&app);
    assert!(
        resumed.contains("steps/s") && !resumed.contains("DISCONNECTED"),
        "{resumed}"
    );
    viewer.close();
    let _ = second.kill();
    let _ = second.wait();
}
