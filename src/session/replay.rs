//! Replaying a session into the dashboard: a player thread reads the indexed file and sends its
//! records as a [`Feed`] at the recorded pace times the speed, and obeys replay commands (play,
//! pause, speed, step, seek, jump to marks). With `follow` it keeps reading a file another bntop is
//! still writing, and starts over if the file is truncated or replaced.
//!
//! A seek rebuilds the dashboard from a sample of the records before the target (every control
//! and marker, evenly spaced snapshots and evaluations, and the last ones densely), so it costs
//! about the same at step 100 or at step 10 million.
use std::path::Path;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::reader::{Entry, Kind, Reader, Skipped};
use super::SessionError;
use crate::protocol::{
    Command, Control, Event, Feed, MarkerKind, ReplayCommand, ReplayStatus, MAX_REPLAY_SPEED,
    MIN_REPLAY_SPEED, READ_FEED_CAPACITY,
};

/// Bytes indexed per loop turn: the first frame shows before a large file is indexed.
const INDEX_BUDGET: usize = 8 << 20;
/// Records sent per loop turn at most, so commands stay responsive at 64x.
const MAX_RECORDS_PER_TURN: usize = 4000;
/// A pause in the recorded run (the run was paused) is shortened to this much run time.
const MAX_GAP_S: f64 = 0.5;
/// How often a followed file that has nothing new is polled.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Sample sizes when a seek rebuilds the past.
const SAMPLED_SNAPSHOTS: usize = 600;
const SAMPLED_WHOLE_SNAPSHOTS: usize = 60;
const RECENT_SNAPSHOTS: usize = 200;
const SAMPLED_EVALUATIONS: usize = 400;
/// Evaluations before a seek target always sent (`--lab-every` is a few `--eval-every`s).
const RECENT_EVALUATIONS: usize = 4;
/// PreciseBN and probe records before a seek target always sent: the lab shows the latest.
const RECENT_LAB_RECORDS: usize = 4;
const KEPT_MARKS: usize = 2000;
/// Bytes of snapshots a seek parses at most (about 20 ms), so a file of whole snapshots (22 KB
/// each) rebuilds from fewer of them than one of summaries (1 KB).
const SEEK_SNAPSHOT_BYTES: u64 = 4 << 20;

pub struct Replay {
    pub feed: Receiver<Feed>,
    pub commands: Sender<Command>,
    /// What was skipped, reported after the dashboard closes.
    pub thread: JoinHandle<Skipped>,
}

/// Open `path` (an error here is a bad file: exit 2) and start playing it.
pub fn spawn(path: &Path, follow: bool) -> Result<Replay, SessionError> {
    let reader = Reader::open(path)?;
    let (feed_tx, feed) = crossbeam_channel::bounded(READ_FEED_CAPACITY);
    let (commands, command_rx) = crossbeam_channel::unbounded();
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let thread = thread::Builder::new()
        .name("bntop-replay".into())
        .spawn(move || {
            let mut player = Player::new(reader, feed_tx, file, follow);
            player.run(&command_rx);
            player.reader.skipped().clone()
        })
        .map_err(SessionError::Thread)?;
    Ok(Replay {
        feed,
        commands,
        thread,
    })
}

struct Player {
    reader: Reader,
    feed: Sender<Feed>,
    file: String,
    follow: bool,
    /// Index of the next entry to send.
    next: usize,
    playing: bool,
    speed: f64,
    /// Run time (a snapshot's `time_s`) the replay has reached, and when it did (wall clock).
    run_time: f64,
    anchor: Instant,
    step: u64,
    /// The next snapshot, read ahead to learn its time.
    pending: Option<(usize, Event)>,
    last_status: Option<ReplayStatus>,
    indexed: bool,
}

impl Player {
    fn new(reader: Reader, feed: Sender<Feed>, file: String, follow: bool) -> Player {
        Player {
            reader,
            feed,
            file,
            follow,
            next: 0,
            playing: true,
            speed: 1.0,
            run_time: 0.0,
            anchor: Instant::now(),
            step: 0,
            pending: None,
            last_status: None,
            indexed: false,
        }
    }

    fn run(&mut self, commands: &Receiver<Command>) {
        let mut last_poll = Instant::now() - FOLLOW_POLL;
        loop {
            if !self.indexed || (self.follow && last_poll.elapsed() >= FOLLOW_POLL) {
                last_poll = Instant::now();
                match self.reader.poll(INDEX_BUDGET) {
                    Ok(poll) => {
                        self.indexed = poll.at_end;
                        if poll.reset {
                            self.seek(0);
                        }
                    }
                    Err(_) => self.indexed = true,
                }
            }
            let wait = if self.playing { self.play() } else { None };
            if !self.send_status() {
                return;
            }
            let timeout = if !self.indexed {
                Duration::ZERO
            } else {
                wait.unwrap_or(FOLLOW_POLL).min(FOLLOW_POLL)
            };
            match commands.recv_timeout(timeout) {
                Ok(command) => {
                    self.command(command);
                    while let Ok(command) = commands.try_recv() {
                        self.command(command);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Where the replay clock is now, in run time.
    fn clock(&self) -> f64 {
        if self.playing {
            self.run_time + self.anchor.elapsed().as_secs_f64() * self.speed
        } else {
            self.run_time
        }
    }

    /// Freeze the clock at its current reading (before a change of speed or of play state).
    fn reanchor(&mut self) {
        self.run_time = self.clock();
        self.anchor = Instant::now();
    }

    fn send(&self, event: Event) -> bool {
        self.feed.send(Feed::Event(event)).is_ok()
    }

    /// Read the entry at `i` (a bad record is skipped: the reader counts it).
    fn read(&mut self, i: usize) -> Option<Event> {
        let entry = *self.reader.entries().get(i)?;
        self.reader.read(&entry).ok()
    }

    /// Send every record that is due; returns how long until the next one is.
    fn play(&mut self) -> Option<Duration> {
        for _ in 0..MAX_RECORDS_PER_TURN {
            let i = self.next;
            let entry = *self.reader.entries().get(i)?;
            let event = match self.pending.take() {
                Some((j, event)) if j == i => event,
                _ => match self.reader.read(&entry) {
                    Ok(event) => event,
                    Err(_) => {
                        self.next += 1;
                        continue;
                    }
                },
            };
            if let Event::Snapshot(s) = &event {
                let now = self.clock();
                if s.time_s > now + MAX_GAP_S {
                    // A long pause in the recorded run: skip the dead time.
                    self.run_time = s.time_s - MAX_GAP_S;
                    self.anchor = Instant::now();
                }
                let now = self.clock();
                if s.time_s > now {
                    let wait = (s.time_s - now) / self.speed;
                    self.pending = Some((i, event));
                    return Some(Duration::from_secs_f64(wait));
                }
                self.step = s.step;
            } else if let Some(step) = goes_back_to(&event) {
                self.step = step;
            } else if let Some(step) = event.step() {
                self.step = self.step.max(step);
            }
            self.next += 1;
            if !self.send(event) {
                return None;
            }
        }
        Some(Duration::ZERO)
    }

    fn command(&mut self, command: Command) {
        let Command::Replay(command) = command else {
            return;
        };
        match command {
            ReplayCommand::PlayPause => {
                self.reanchor();
                self.playing = !self.playing;
            }
            ReplayCommand::Faster | ReplayCommand::Slower => {
                self.reanchor();
                let factor = if command == ReplayCommand::Faster {
                    2.0
                } else {
                    0.5
                };
                self.speed = (self.speed * factor).clamp(MIN_REPLAY_SPEED, MAX_REPLAY_SPEED);
            }
            ReplayCommand::StepForward => {
                self.playing = false;
                self.step_forward();
            }
            ReplayCommand::StepBack => {
                self.playing = false;
                let before = self.step.saturating_sub(1);
                let entries = self.reader.entries();
                let previous = entries[..self.next.min(entries.len())]
                    .iter()
                    .rev()
                    .find(|e| is_snapshot(e) && e.step <= before)
                    .map(|e| e.step);
                self.seek(previous.unwrap_or(0));
            }
            ReplayCommand::ToStart => self.seek(0),
            ReplayCommand::ToEnd => {
                let last = self.reader.entries().iter().map(|e| e.step).max();
                self.seek(last.unwrap_or(0));
            }
            ReplayCommand::Seek(step) => self.seek(step),
            ReplayCommand::NextMark | ReplayCommand::PrevMark => {
                let forward = command == ReplayCommand::NextMark;
                if let Some(step) = self.mark_from_here(forward, Kind::Control, jumps_to_control) {
                    self.seek(step);
                }
            }
            ReplayCommand::NextEpoch | ReplayCommand::PrevEpoch => {
                let forward = command == ReplayCommand::NextEpoch;
                if let Some(step) = self.mark_from_here(forward, Kind::Marker, is_epoch) {
                    self.seek(step);
                }
            }
        }
    }

    /// The step of the nearest record of `kind` after (or before) the current step that `wanted`
    /// accepts (each candidate is read: the index does not know what a control asked).
    fn mark_from_here(
        &mut self,
        forward: bool,
        kind: Kind,
        wanted: fn(&Event) -> bool,
    ) -> Option<u64> {
        let step = self.step;
        let candidates: Vec<usize> = {
            let entries = self.reader.entries();
            // Only the marks of the run as it stands: not those of steps a restore went back over.
            let gone = abandoned(entries);
            // File order, not a binary search: after a restore the steps go back.
            let of_kind = |i: &usize| entries[*i].kind == kind && !gone[*i];
            if forward {
                (0..entries.len())
                    .filter(of_kind)
                    .filter(|&i| entries[i].step > step)
                    .collect()
            } else {
                let before = |i: &usize| entries[*i].step < step;
                (0..entries.len())
                    .rev()
                    .filter(of_kind)
                    .filter(before)
                    .collect()
            }
        };
        candidates
            .into_iter()
            .find(|&i| self.read(i).is_some_and(|e| wanted(&e)))
            .map(|i| self.reader.entries()[i].step)
    }

    /// Send records up to and including the next snapshot.
    fn step_forward(&mut self) {
        self.pending = None;
        while let Some(entry) = self.reader.entries().get(self.next).copied() {
            self.next += 1;
            let Ok(event) = self.reader.read(&entry) else {
                continue;
            };
            let snapshot_time = match &event {
                Event::Snapshot(s) => Some((s.step, s.time_s)),
                _ => None,
            };
            if !self.send(event) {
                return;
            }
            if let Some((step, time)) = snapshot_time {
                self.step = step;
                self.run_time = time;
                return;
            }
        }
    }

    /// Rebuild the dashboard at `target`: reset, then a sample of everything before it.
    fn seek(&mut self, target: u64) {
        self.pending = None;
        // The past of a step may lie anywhere in the file once a restore sent the steps back.
        self.index_to_end();
        if self.feed.send(Feed::Reset).is_err() {
            return;
        }
        let entries = self.reader.entries();
        let starts = discontinuities(entries);
        let cut = past_end(entries, &starts, target);
        let past = &entries[..cut];
        // Every going back before the cut: the dashboard forgets the abandoned steps at each.
        let mut chosen: Vec<usize> = starts.iter().copied().filter(|&i| i < cut).collect();
        let of_kind = |pred: &dyn Fn(&Entry) -> bool| -> Vec<usize> {
            past.iter()
                .enumerate()
                .filter(|(_, e)| pred(e))
                .map(|(i, _)| i)
                .collect()
        };
        chosen.extend(of_kind(&|e| e.kind == Kind::Header).into_iter().take(1));
        let marks = of_kind(&is_mark);
        chosen.extend(&marks[marks.len().saturating_sub(KEPT_MARKS)..]);
        let evaluations = of_kind(&|e| e.kind == Kind::Evaluation);
        chosen.extend(evenly(&evaluations, SAMPLED_EVALUATIONS));
        // The latest always: the header shows the last one, the lab the last three-way one.
        chosen.extend(&evaluations[evaluations.len().saturating_sub(RECENT_EVALUATIONS)..]);
        let lab = of_kind(&|e| e.kind == Kind::Lab);
        chosen.extend(&lab[lab.len().saturating_sub(RECENT_LAB_RECORDS)..]);
        let snapshots = of_kind(&is_snapshot);
        let mean_len = snapshots
            .iter()
            .map(|&i| u64::from(past[i].len))
            .sum::<u64>()
            / snapshots.len().max(1) as u64;
        let affordable = (SEEK_SNAPSHOT_BYTES / mean_len.max(1)) as usize;
        let (sampled, recent) = if affordable >= SAMPLED_SNAPSHOTS + RECENT_SNAPSHOTS {
            (SAMPLED_SNAPSHOTS, RECENT_SNAPSHOTS)
        } else {
            (affordable * 3 / 4, affordable / 4)
        };
        chosen.extend(evenly(&snapshots, sampled));
        chosen.extend(&snapshots[snapshots.len().saturating_sub(recent)..]);
        let whole = of_kind(&|e| e.kind == Kind::Snapshot { whole: true });
        chosen.extend(evenly(&whole, SAMPLED_WHOLE_SNAPSHOTS.min(affordable)));
        chosen.extend(whole.last());
        chosen.extend(past.iter().rposition(|e| e.kind == Kind::End));
        chosen.sort_unstable();
        chosen.dedup();
        let last_past_step = past.last().map_or(0, |e| e.step);
        self.step = 0;
        // The clock restarts at the last snapshot sent (or the start of the run): a jump back
        // must not leave it ahead, which would play the rest of the file at once.
        self.run_time = 0.0;
        for i in chosen {
            let Some(event) = self.read(i) else {
                continue;
            };
            if let Event::Snapshot(s) = &event {
                self.step = s.step;
                self.run_time = s.time_s;
            } else if let Some(step) = goes_back_to(&event) {
                self.step = step;
            }
            if !self.send(event) {
                return;
            }
        }
        self.step = self.step.max(target.min(last_past_step));
        self.anchor = Instant::now();
        self.next = cut;
    }

    /// Index what is left of the file (at most a second or so for a large one).
    fn index_to_end(&mut self) {
        while !self.indexed {
            self.indexed = self
                .reader
                .poll(INDEX_BUDGET)
                .map_or(true, |poll| poll.at_end);
        }
    }

    /// Tell the dashboard where the replay stands, when that changed; false once it has gone.
    fn send_status(&mut self) -> bool {
        let status = ReplayStatus {
            file: self.file.clone(),
            playing: self.playing,
            speed: self.speed,
            step: self.step,
            last_step: self.reader.entries().last().map_or(0, |e| e.step),
            following: self.follow,
            indexed: self.indexed,
            skipped_lines: self.reader.skipped().lines,
        };
        if self.last_status.as_ref() == Some(&status) {
            // Nothing new; a dashboard that went away shows up as closed commands.
            return true;
        }
        self.last_status = Some(status.clone());
        self.feed.send(Feed::Replay(status)).is_ok()
    }
}

/// The entries where the step goes back (the echoes of restores and restarts): each starts a
/// stretch of the file whose steps do not decrease.
fn discontinuities(entries: &[Entry]) -> Vec<usize> {
    (1..entries.len())
        .filter(|&i| entries[i].step < entries[i - 1].step)
        .collect()
}

/// How many entries make the past of step `target`. Steps never decrease in a session but at
/// the `starts` of stretches, where a restore or restart sent the run back (sessions/FORMAT.md,
/// "Checkpoints"): the past is the prefix up to where the run last passed `target`, in the last
/// stretch that starts at or before it.
fn past_end(entries: &[Entry], starts: &[usize], target: u64) -> usize {
    let begin = (starts.iter().rev())
        .find(|&&i| entries[i].step <= target)
        .copied()
        .unwrap_or(0);
    let end = (starts.iter().find(|&&i| i > begin).copied()).unwrap_or(entries.len());
    begin + entries[begin..end].partition_point(|e| e.step <= target)
}

/// For each entry, whether a later restore or restart went back over its step (the records of
/// the abandoned steps, which the dashboard forgets).
fn abandoned(entries: &[Entry]) -> Vec<bool> {
    let mut back_to = u64::MAX;
    let mut highest_before: Vec<u64> = Vec::with_capacity(entries.len());
    let mut highest = 0;
    for e in entries {
        highest_before.push(highest);
        highest = highest.max(e.step);
    }
    let mut gone = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate().rev() {
        gone[i] = e.step > back_to;
        if e.step < highest_before[i] {
            back_to = back_to.min(e.step);
        }
    }
    gone
}

/// The step an accepted restore or restart sent the run back to.
fn goes_back_to(event: &Event) -> Option<u64> {
    match event {
        Event::Control(c) if c.rejected.is_none() && c.control.goes_back() => Some(c.step),
        _ => None,
    }
}

fn is_snapshot(e: &Entry) -> bool {
    matches!(e.kind, Kind::Snapshot { .. })
}

/// `n` stops at controls that were applied and change what the charts show: not rejected ones,
/// not single steps (a paused run steps in bursts).
fn jumps_to_control(event: &Event) -> bool {
    matches!(event, Event::Control(c) if c.rejected.is_none() && c.control != Control::Step)
}

fn is_epoch(event: &Event) -> bool {
    matches!(event, Event::Marker(m) if m.kind == MarkerKind::Epoch)
}

fn is_mark(e: &Entry) -> bool {
    matches!(e.kind, Kind::Control | Kind::Marker)
}

/// About `n` items spread evenly over `items` (all of them when there are fewer).
fn evenly(items: &[usize], n: usize) -> Vec<usize> {
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|k| items[k * items.len() / n]).collect()
}
