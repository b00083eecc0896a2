//! Checkpoints on the dashboard: the K, U and ! keys (! asks first), a restore's discontinuity
//! in the live state and the charts, and the replay of a recording that holds one.
use std::time::{Duration, Instant};

use bntop::protocol::{Command, Control, ControlEvent, Event, Feed, ReplayCommand};
use bntop::session::replay;
use bntop::ui::app::{App, PromptKind};
use bntop::ui::synthetic;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod remote_support;
mod ui_support;
use bntop::remote::client::{self, Target};
use bntop::session::reader::Reader;
use remote_support::Server;
use ui_support::{render, screen, unicode};

/// Where the run is saved, how far it gets, and where the second branch ends.
const SAVED: u64 = 120;
const REACHED: u64 = 300;
const LAST: u64 = 200;
/// A control of the second branch (the first had one at 210, abandoned).
const BRANCH_CONTROL: u64 = 170;
/// Added to the second branch's losses, so each point shows which branch it came from.
const BRANCH: f32 = 10.0;

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn status(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

fn press(app: &mut App, c: char) -> Vec<Command> {
    app.on_key(&key(c), Instant::now())
}

fn echo(step: u64, control: Control) -> Event {
    Event::Control(ControlEvent {
        step,
        control,
        rejected: None,
    })
}

/// A run saved at step 120 that reached 300 and went back to the checkpoint, then trained on
/// to 200 (losses raised by `BRANCH`, run time going on), as the engine records it.
fn run_with_a_restore() -> Vec<Event> {
    let first = synthetic::run(REACHED, 7);
    let mut events = Vec::new();
    for event in &first {
        let past_save = matches!(event, Event::Snapshot(s) if s.step == SAVED + 1);
        if past_save {
            events.push(echo(SAVED, Control::SaveCheckpoint));
        }
        events.push(event.clone());
    }
    events.push(echo(
        SAVED,
        Control::RestoreCheckpoint {
            from: Some(REACHED),
        },
    ));
    let end_time = REACHED as f64 / 150.0;
    for event in synthetic::run(REACHED, 7).into_iter().skip(1) {
        match event {
            Event::Snapshot(mut s) if s.step > SAVED && s.step <= LAST => {
                s.loss += BRANCH;
                s.time_s += end_time;
                let step = s.step;
                events.push(Event::Snapshot(s));
                if step == BRANCH_CONTROL {
                    events.push(echo(step, Control::SetLr { lr: 0.02 }));
                }
            }
            _ => {}
        }
    }
    events
}

fn app_of(events: &[Event]) -> App {
    let mut app = App::new();
    for event in events {
        app.on_event(event, Instant::now());
    }
    app
}

/// After the restore the run continues from the checkpoint's step: the abandoned steps are gone
/// from every series (no line drawn back), and the markers after the checkpoint with them.
fn assert_shows_the_restored_run(app: &App, to: u64) {
    let state = &app.live;
    assert_eq!(state.step, to);
    let loss = &state.loss_history;
    assert_eq!(loss.last_step(), Some(to));
    let (lo, hi) = loss
        .range(SAVED + 1, REACHED)
        .expect("losses after the save");
    assert!(lo >= BRANCH, "an abandoned loss after the save: {lo}");
    assert!(hi >= BRANCH);
    let (_, before) = loss.range(0, SAVED).expect("losses up to the save");
    assert!(before < BRANCH, "the steps before the save are kept");
    for layer in &state.layers {
        assert!(layer.drift.last_step().is_some_and(|s| s <= to));
        assert!(layer.ema_window.steps().all(|s| s <= to));
    }
    let marks: Vec<(u64, &str)> = (state.controls.iter())
        .map(|m| (m.step, m.label.as_str()))
        .collect();
    let kept = |s: u64| s <= SAVED || (s == BRANCH_CONTROL && to >= BRANCH_CONTROL);
    assert!(marks.iter().all(|&(s, _)| kept(s)), "{marks:?}");
    assert!(marks.contains(&(SAVED, "restored checkpoint (run was at step 300)")));
}

#[test]
fn k_saves_u_restores_and_bang_asks_before_restarting() {
    let mut app = app_of(&synthetic::run(50, 7));
    assert_eq!(
        press(&mut app, 'K'),
        vec![Command::Run(Control::SaveCheckpoint)]
    );
    assert_eq!(status(&app), "sent: save checkpoint");
    assert_eq!(
        press(&mut app, 'U'),
        vec![Command::Run(Control::RestoreCheckpoint { from: None })]
    );
    assert_eq!(status(&app), "sent: restore the latest checkpoint");
    // ! only asks; n (or any key but y) cancels; y sends.
    assert_eq!(press(&mut app, '!'), vec![]);
    assert_eq!(
        app.prompt.as_ref().map(|p| p.kind),
        Some(PromptKind::ConfirmRestart)
    );
    let text = screen(&render(&app, 80, 24, unicode()));
    assert!(text.contains("restart from step 0? y/n"), "{text}");
    assert_eq!(press(&mut app, 'n'), vec![]);
    assert_eq!(
        (app.prompt.is_none(), status(&app).as_str()),
        (true, "restart cancelled")
    );
    press(&mut app, '!');
    assert_eq!(
        app.on_key(
            &KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE),
            Instant::now()
        ),
        vec![]
    );
    press(&mut app, '!');
    assert_eq!(
        press(&mut app, 'y'),
        vec![Command::Run(Control::Restart { from: None })]
    );
    assert_eq!(status(&app), "sent: restart from step 0");
    // The engine's answer: echoed at the step gone back to.
    app.on_event(
        &echo(0, Control::Restart { from: Some(50) }),
        Instant::now(),
    );
    assert_eq!(
        status(&app),
        "step 0: restarted from step 0 (run was at step 50)"
    );
    assert_eq!(
        (app.live.step, app.live.loss_history.last_step()),
        (0, None)
    );
}

#[test]
fn a_restore_shows_the_run_from_the_restored_step() {
    let events = run_with_a_restore();
    let at_restore = events
        .iter()
        .position(|e| matches!(e, Event::Control(c) if c.control.goes_back()))
        .expect("the restore");
    let mut app = app_of(&events[..=at_restore]);
    assert_eq!(app.live.step, SAVED);
    // Until the next snapshot the header shows the run as it was at the save.
    let Some(Event::Snapshot(at_save)) = events
        .iter()
        .find(|e| matches!(e, Event::Snapshot(s) if s.step == SAVED))
    else {
        panic!("the snapshot of the saved step")
    };
    let shown = (app.live.epoch, app.live.loss, app.live.batch_accuracy);
    assert_eq!(shown, (at_save.epoch, at_save.loss, at_save.batch_accuracy));
    assert!(at_save.epoch < app_of(&events[..at_restore]).live.epoch);
    assert_eq!(app.live.loss_history.last_step(), Some(SAVED));
    for event in &events[at_restore + 1..] {
        app.on_event(event, Instant::now());
    }
    assert_shows_the_restored_run(&app, LAST);
    insta::assert_snapshot!(screen(&render(&app, 120, 40, unicode())));
}

mod common;
use common::record;

/// Seek the replay to `step` and fold what it sends into a fresh dashboard.
fn replayed_at(r: &replay::Replay, step: u64) -> App {
    r.commands
        .send(Command::Replay(ReplayCommand::Seek(step)))
        .expect("send");
    replayed_at_status(r, step)
}

/// The dashboard the replay rebuilds after its next reset, once it reports `step`.
fn replayed_at_status(r: &replay::Replay, step: u64) -> App {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut app = App::for_context(bntop::ui::keys::Context::Replay);
    let mut reset = false;
    loop {
        let feed = r.feed.recv_deadline(deadline).expect("the seek's feed");
        reset |= feed == Feed::Reset;
        if reset {
            app.on_feed(&feed, Instant::now());
        }
        if let Feed::Replay(status) = &feed {
            if reset && status.step == step {
                return app;
            }
        }
    }
}

#[test]
fn a_recording_with_a_restore_replays_and_seeks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("restored.jsonl");
    record(&path, &run_with_a_restore());
    let r = replay::spawn(&path, false).expect("open");
    r.commands
        .send(Command::Replay(ReplayCommand::PlayPause))
        .expect("pause");
    // After the restore: the second branch, the abandoned steps gone.
    let app = replayed_at(&r, 180);
    assert_shows_the_restored_run(&app, 180);
    // n: the next control of the run as it stands, not the abandoned one at 210.
    replayed_at(&r, 130);
    r.commands
        .send(Command::Replay(ReplayCommand::NextMark))
        .expect("send");
    let app = replayed_at_status(&r, BRANCH_CONTROL);
    assert_shows_the_restored_run(&app, BRANCH_CONTROL);
    // Before the save: the first branch as it was, nothing after.
    let app = replayed_at(&r, 100);
    assert_eq!(app.live.loss_history.last_step(), Some(100));
    assert!(app
        .live
        .loss_history
        .range(0, 100)
        .is_some_and(|(_, hi)| hi < BRANCH));
    // The end is the end of the file, not the highest step the run reached.
    r.commands
        .send(Command::Replay(ReplayCommand::ToEnd))
        .expect("send");
    let app = replayed_at(&r, LAST);
    assert_shows_the_restored_run(&app, LAST);
    drop(r.commands);
    let skipped = r.thread.join().expect("player");
    assert_eq!(skipped.lines, 0);
}

/// The next echo of a control named `name` a viewer sees.
fn echo_of(feed: &crossbeam_channel::Receiver<Feed>, name: &str) -> ControlEvent {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match feed.recv_deadline(deadline) {
            Ok(Feed::Event(Event::Control(c))) if c.control.name() == name => return c,
            Ok(_) => {}
            Err(_) => panic!("no echo of {name}"),
        }
    }
}

fn step_past(feed: &crossbeam_channel::Receiver<Feed>, step: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match feed.recv_deadline(deadline) {
            Ok(Feed::Event(Event::Snapshot(s))) if s.step > step => return,
            Ok(_) => {}
            Err(_) => panic!("training did not pass step {step}"),
        }
    }
}

/// `bntop serve` takes the checkpoint controls from an attached viewer, not from a read-only
/// one, and its recording of a restore reads back whole.
#[test]
fn serve_forwards_checkpoint_controls_and_records_the_restore() {
    let mut server = Server::start(&[]);
    let unix = || Target::Unix(server.socket.clone());
    let viewer = client::connect(&unix(), None, false).expect("viewer");
    let watcher = client::connect(&unix(), None, true).expect("read-only viewer");
    step_past(&viewer.feed, 5);
    viewer
        .commands
        .send(Command::Run(Control::SaveCheckpoint))
        .expect("send");
    let saved = echo_of(&viewer.feed, "save_checkpoint");
    assert_eq!(saved.rejected, None);
    step_past(&viewer.feed, saved.step + 30);
    // The read-only viewer's restore goes nowhere.
    watcher
        .commands
        .send(Command::Run(Control::RestoreCheckpoint { from: None }))
        .expect("send");
    viewer
        .commands
        .send(Command::Run(Control::RestoreCheckpoint { from: None }))
        .expect("send");
    let restored = echo_of(&viewer.feed, "restore_checkpoint");
    assert_eq!(restored.step, saved.step);
    assert!(
        matches!(restored.control, Control::RestoreCheckpoint { from: Some(from) } if from > saved.step + 30),
        "{restored:?}"
    );
    step_past(&viewer.feed, saved.step + 5);
    drop(viewer);
    drop(watcher);
    server.signal("TERM");
    let status = server.child.wait().expect("exit");
    assert!(status.success(), "{status:?}");
    let recorded = std::fs::read_to_string(server.recording()).expect("recording");
    let restores = recorded.matches("\"restore_checkpoint\"").count();
    assert_eq!(
        restores, 1,
        "one restore: the read-only viewer's was not forwarded"
    );
    // The recording reads back whole and replays into the state the viewers had.
    let mut reader = Reader::open(&server.recording()).expect("open the recording");
    while !reader.poll(usize::MAX).expect("index").at_end {}
    let entries = reader.entries().to_vec();
    let events: Vec<Event> = (entries.iter())
        .map(|e| reader.read(e).expect("a whole record"))
        .collect();
    assert_eq!(reader.skipped().lines, 0);
    let app = app_of(&events);
    assert!(app.live.loss_history.last_step() >= Some(saved.step + 5));
    let marks: Vec<u64> = app.live.controls.iter().map(|m| m.step).collect();
    assert!(marks.iter().all(|&s| s <= app.live.step), "{marks:?}");
}
