//! Replay: the player thread driven through its command channel, on files recorded by the real
//! session writer; and the replay keys of the dashboard.
use std::time::{Duration, Instant};

use bntop::protocol::{Command, Event, Feed, ReplayCommand, ReplayStatus};
use bntop::session::replay::{self, Replay};
use bntop::ui::app::App;
use bntop::ui::keys::Context;
use bntop::ui::synthetic;
use crossbeam_channel::Receiver;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod common;
use common::record;

/// Feed messages until `done` says so (or the deadline passes).
fn collect_until(feed: &Receiver<Feed>, done: impl Fn(&[Feed]) -> bool) -> Vec<Feed> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while !done(&got) {
        match feed.recv_deadline(deadline) {
            Ok(f) => got.push(f),
            Err(_) => panic!(
                "timed out; got {} messages, last {:?}",
                got.len(),
                got.last()
            ),
        }
    }
    got
}

fn status(feed: &[Feed]) -> Option<&ReplayStatus> {
    feed.iter().rev().find_map(|f| match f {
        Feed::Replay(s) => Some(s),
        _ => None,
    })
}

fn snapshot_steps(feed: &[Feed]) -> Vec<u64> {
    feed.iter()
        .filter_map(|f| match f {
            Feed::Event(Event::Snapshot(s)) => Some(s.step),
            _ => None,
        })
        .collect()
}

fn pause(r: &Replay) {
    r.commands
        .send(Command::Replay(ReplayCommand::PlayPause))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| !s.playing));
}

#[test]
fn plays_seeks_steps_and_jumps_to_marks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    // 3000 steps at 150 steps/s = 20 s of run time; controls at 1200 and 2100.
    record(&path, &synthetic::run(3000, 2));
    let r = replay::spawn(&path, false).expect("open");
    // It starts playing at 1x from the header.
    let first = collect_until(&r.feed, |f| snapshot_steps(f).len() >= 3);
    assert!(matches!(
        first.iter().find(|f| matches!(f, Feed::Event(_))),
        Some(Feed::Event(Event::Header(_)))
    ));
    pause(&r);

    // Seek: a reset, then the past up to the target only, ending exactly at it.
    r.commands
        .send(Command::Replay(ReplayCommand::Seek(1500)))
        .expect("send");
    let seek = collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 1500));
    let after_reset = &seek[seek.iter().position(|f| *f == Feed::Reset).expect("reset")..];
    let steps = snapshot_steps(after_reset);
    assert_eq!(steps.last(), Some(&1500));
    assert!(
        steps.windows(2).all(|w| w[0] < w[1]) && steps.len() < 1500,
        "a sample, in order"
    );
    // The control at 1200 is part of the rebuilt past, and so are the latest lab results and
    // three-way evaluation (the lab panel shows them).
    assert!(after_reset
        .iter()
        .any(|f| matches!(f, Feed::Event(Event::Control(c)) if c.step == 1200)));
    for latest in [
        |e: &Event| matches!(e, Event::Population(p) if p.step == 1500),
        |e: &Event| matches!(e, Event::Probe(p) if p.step == 1500),
        |e: &Event| matches!(e, Event::Evaluation(v) if v.step == 1500 && v.precise_stats.is_some()),
    ] {
        assert!(after_reset
            .iter()
            .any(|f| matches!(f, Feed::Event(e) if latest(e))));
    }

    // Step forward and back, one recorded snapshot at a time.
    r.commands
        .send(Command::Replay(ReplayCommand::StepForward))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 1501));
    r.commands
        .send(Command::Replay(ReplayCommand::StepBack))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 1500));

    // Marks: the next control after 1500 is at 2100; back from there, the one at 1200.
    r.commands
        .send(Command::Replay(ReplayCommand::NextMark))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 2100));
    r.commands
        .send(Command::Replay(ReplayCommand::PrevMark))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 1200));

    // Ends, and the speed limits.
    r.commands
        .send(Command::Replay(ReplayCommand::ToEnd))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 3000));
    r.commands
        .send(Command::Replay(ReplayCommand::ToStart))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 0));
    for _ in 0..10 {
        r.commands
            .send(Command::Replay(ReplayCommand::Faster))
            .expect("send");
    }
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.speed == 64.0));
    for _ in 0..20 {
        r.commands
            .send(Command::Replay(ReplayCommand::Slower))
            .expect("send");
    }
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.speed == 0.25));
    drop(r.commands);
    let skipped = r.thread.join().expect("player");
    assert_eq!(skipped.lines, 0);
}

#[test]
fn plays_at_the_recorded_pace_times_the_speed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    record(&path, &synthetic::run(3000, 3)); // 150 steps per second of run time
    let r = replay::spawn(&path, false).expect("open");
    for _ in 0..3 {
        r.commands
            .send(Command::Replay(ReplayCommand::Faster))
            .expect("send");
    }
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.speed == 8.0));
    let start = Instant::now();
    collect_until(&r.feed, |f| {
        snapshot_steps(f).last().is_some_and(|&s| s >= 2400)
    });
    // 2400 steps at 8 x 150 steps/s: about 2 s (1 s would mean it ignores the pace).
    let took = start.elapsed().as_secs_f64();
    assert!(took > 1.3, "played too fast: {took:.2} s");
}

#[test]
fn follows_a_growing_file_and_its_end() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("growing.jsonl");
    let events = synthetic::run(400, 4);
    let lines: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("json") + "\n")
        .collect();
    let mut file = std::fs::File::create(&path).expect("create");
    for line in &lines[..100] {
        file.write_all(line.as_bytes()).expect("write");
    }
    let r = replay::spawn(&path, true).expect("open");
    for _ in 0..6 {
        r.commands
            .send(Command::Replay(ReplayCommand::Faster))
            .expect("send");
    }
    let seen = collect_until(&r.feed, |f| {
        snapshot_steps(f).last().is_some_and(|&s| s >= 90)
    });
    assert!(status(&seen).is_some_and(|s| s.following));
    // The rest arrives in two parts, the first ending in the middle of a line.
    let rest: String = lines[100..].concat();
    let cut = rest.len() / 2;
    file.write_all(&rest.as_bytes()[..cut]).expect("write");
    file.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(500));
    file.write_all(&rest.as_bytes()[cut..]).expect("write");
    let end = bntop::protocol::RunEnd {
        step: 400,
        reason: bntop::protocol::EndReason::Completed,
        elapsed_s: 2.7,
        message: None,
    };
    let line = serde_json::to_string(&Event::End(end)).expect("json") + "\n";
    file.write_all(line.as_bytes()).expect("write");
    let got = collect_until(&r.feed, |f| {
        f.iter().any(|m| matches!(m, Feed::Event(Event::End(_))))
    });
    let steps = snapshot_steps(&got);
    assert_eq!(steps.last(), Some(&400));
    assert!(
        steps.windows(2).all(|w| w[1] == w[0] + 1),
        "no step lost or repeated"
    );
    let _ = r.thread;
}

#[test]
fn a_bad_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(replay::spawn(&dir.path().join("missing.jsonl"), false).is_err());
}

#[test]
fn replay_keys_send_replay_commands() {
    let mut app = App::for_context(Context::Replay);
    let key = |c: char| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    let mut press = |k: KeyEvent| app.on_key(&k, Instant::now());
    assert_eq!(
        press(key(' ')),
        vec![Command::Replay(ReplayCommand::PlayPause)]
    );
    assert_eq!(
        press(key(']')),
        vec![Command::Replay(ReplayCommand::Faster)]
    );
    assert_eq!(
        press(key('[')),
        vec![Command::Replay(ReplayCommand::Slower)]
    );
    assert_eq!(
        press(key('.')),
        vec![Command::Replay(ReplayCommand::StepForward)]
    );
    assert_eq!(
        press(key(',')),
        vec![Command::Replay(ReplayCommand::StepBack)]
    );
    assert_eq!(
        press(key('g')),
        vec![Command::Replay(ReplayCommand::ToStart)]
    );
    assert_eq!(
        press(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)),
        vec![Command::Replay(ReplayCommand::ToEnd)]
    );
    assert_eq!(
        press(key('n')),
        vec![Command::Replay(ReplayCommand::NextMark)]
    );
    assert_eq!(
        press(key('N')),
        vec![Command::Replay(ReplayCommand::PrevMark)]
    );
    // Run controls do nothing in a replay.
    assert_eq!(press(key('t')), vec![]);
    assert_eq!(press(key('+')), vec![]);
    // `:` types a step.
    assert_eq!(press(key(':')), vec![]);
    for c in "12x34".chars() {
        press(key(c));
    }
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(
        press(enter),
        vec![Command::Replay(ReplayCommand::Seek(1234))]
    );
}

/// After jumping to the end, a jump back to the start plays at the recorded pace again (the
/// replay clock must restart, not stay at the end of the run).
#[test]
fn back_to_the_start_after_the_end_plays_at_pace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    record(&path, &synthetic::run(600, 5)); // 4 s of run time
    let r = replay::spawn(&path, false).expect("open");
    r.commands
        .send(Command::Replay(ReplayCommand::ToEnd))
        .expect("send");
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 600));
    r.commands
        .send(Command::Replay(ReplayCommand::ToStart))
        .expect("send");
    let start = Instant::now();
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == 0));
    let got = collect_until(&r.feed, |f| {
        snapshot_steps(f).last().is_some_and(|&s| s >= 300)
    });
    assert!(
        start.elapsed() > Duration::from_millis(1500),
        "replayed at once: {:?}",
        snapshot_steps(&got).len()
    );
}

/// A followed file that is replaced by a shorter one (a new run writing the same path): the
/// dashboard is reset and shows the new file from its start.
#[test]
fn follow_starts_over_when_the_file_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    record(&path, &synthetic::run(300, 6));
    let r = replay::spawn(&path, true).expect("open");
    for _ in 0..6 {
        r.commands
            .send(Command::Replay(ReplayCommand::Faster))
            .expect("send");
    }
    collect_until(&r.feed, |f| {
        snapshot_steps(f).last().is_some_and(|&s| s >= 250)
    });
    let fresh = dir.path().join("fresh.jsonl");
    record(&fresh, &synthetic::run(40, 7));
    std::fs::rename(&fresh, &path).expect("replace");
    let got = collect_until(&r.feed, |f| {
        f.contains(&Feed::Reset) && snapshot_steps(f).last() == Some(&40)
    });
    let after = &got[got.iter().rposition(|f| *f == Feed::Reset).expect("reset")..];
    assert!(snapshot_steps(after).iter().all(|&s| s <= 40));
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.last_step == 40));
}

/// `n`/`N` stop at applied controls only (not epoch markers, rejected controls or single steps);
/// `e`/`E` at epoch markers.
#[test]
fn n_jumps_to_applied_controls_and_e_to_epoch_markers() {
    use bntop::protocol::{Control, ControlEvent, Marker, MarkerKind};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.jsonl");
    let mut events = Vec::new();
    let control = |step, control, rejected: Option<&str>| {
        Event::Control(ControlEvent {
            step,
            control,
            rejected: rejected.map(String::from),
        })
    };
    // Controls applied at 1200 and 2100 (the synthetic run's own).
    for event in synthetic::run(3000, 2) {
        let step = match &event {
            Event::Snapshot(s) => Some(s.step),
            _ => None,
        };
        events.push(event);
        match step {
            Some(step) if step % 22 == 0 => events.push(Event::Marker(Marker {
                step,
                kind: MarkerKind::Epoch,
                label: format!("epoch {}", step / 22),
            })),
            Some(600) => events.push(control(600, Control::SetLr { lr: 0.1 }, Some("no"))),
            Some(900) => events.push(control(900, Control::Step, None)),
            _ => {}
        }
    }
    record(&path, &events);
    let r = replay::spawn(&path, false).expect("open");
    // The marks are looked up in the index: let it finish (60 MB of whole snapshots).
    collect_until(&r.feed, |f| status(f).is_some_and(|s| s.indexed));
    pause(&r);
    let go = |command, step: u64| {
        r.commands.send(Command::Replay(command)).expect("send");
        collect_until(&r.feed, |f| status(f).is_some_and(|s| s.step == step));
    };
    go(ReplayCommand::ToStart, 0);
    go(ReplayCommand::NextMark, 1200);
    go(ReplayCommand::NextEpoch, 1210);
    go(ReplayCommand::PrevEpoch, 1188);
    go(ReplayCommand::PrevEpoch, 1166);
    go(ReplayCommand::NextMark, 1200);
    go(ReplayCommand::NextMark, 2100);
    go(ReplayCommand::PrevMark, 1200);
    drop(r.commands);
    r.thread.join().expect("player");
}
