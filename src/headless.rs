//! `bntop train --headless`: consumes the event stream without a terminal UI, printing a progress
//! line about once a second and a summary at the end, or the events themselves as JSON lines.
use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::protocol::{EndReason, Evaluation, Event, RunEnd, Snapshot};
use crate::session::Recorder;

const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a headless run ended with, for the summary and the exit code.
pub struct Outcome {
    pub end: Option<RunEnd>,
    pub last_eval: Option<Evaluation>,
    /// First evaluation whose running-statistics accuracy reached `target_accuracy`: (step, seconds).
    pub reached_target: Option<(u64, f64)>,
    pub best_running_accuracy: Option<(f32, u64)>,
    /// Why the JSON output stopped (its reader went away, or the disk is full): the run was then
    /// stopped and recorded to its end.
    pub output_error: Option<std::io::Error>,
}

/// Reads events until `End` (or the engine goes away), recording each. `json` receives every event
/// as one line; if writing it fails, `stop` is called once and the run is still recorded to its
/// end. `progress` receives the human-readable progress and summary lines, best effort: a closed
/// stderr must not end a run.
pub fn consume(
    events: &Receiver<Event>,
    mut json: Option<&mut dyn Write>,
    recorder: &mut Recorder,
    progress: &mut dyn Write,
    target_accuracy: f32,
    stop: &mut dyn FnMut(),
) -> Outcome {
    let mut outcome = Outcome {
        end: None,
        last_eval: None,
        reached_target: None,
        best_running_accuracy: None,
        output_error: None,
    };
    let mut last_snapshot: Option<Snapshot> = None;
    let mut last_print = Instant::now();
    let mut rate = RateMeter::default();
    for event in events.iter() {
        recorder.record(&event);
        if let Some(out) = json.as_deref_mut() {
            let written = serde_json::to_writer(&mut *out, &event)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = written {
                outcome.output_error = Some(e);
                json = None;
                stop();
            }
        }
        match event {
            Event::Snapshot(s) => {
                rate.observe(s.step, s.time_s);
                last_snapshot = Some(s);
            }
            Event::Evaluation(e) => {
                let acc = e.running_stats.accuracy;
                if outcome
                    .best_running_accuracy
                    .is_none_or(|(best, _)| acc > best)
                {
                    outcome.best_running_accuracy = Some((acc, e.step));
                }
                if outcome.reached_target.is_none() && acc >= target_accuracy {
                    let time = last_snapshot.as_ref().map_or(0.0, |s| s.time_s);
                    outcome.reached_target = Some((e.step, time));
                }
                outcome.last_eval = Some(e);
            }
            Event::End(end) => {
                outcome.end = Some(end);
                break;
            }
            Event::Header(h) => {
                let data = h.data.as_ref().map_or_else(
                    || "data the producer did not name".to_string(),
                    |d| {
                        format!(
                            "{} ({} train / {} held-out images, {}x{}x{})",
                            d.name, d.train_images, d.heldout_images, d.channels, d.height, d.width
                        )
                    },
                );
                let _ = writeln!(
                    progress,
                    "bntop: training on {data}, batch {}, {:?} lr {}, BN momentum {}",
                    h.config.batch_size,
                    h.config.optimizer.kind,
                    h.config.optimizer.lr,
                    h.config.bn_momentum
                );
            }
            Event::Control(_)
            | Event::Marker(_)
            | Event::Folding(_)
            | Event::Population(_)
            | Event::Probe(_)
            | Event::Unknown => {}
        }
        if last_print.elapsed() >= PROGRESS_EVERY {
            write_progress(progress, last_snapshot.as_ref(), &outcome, &rate);
            last_print = Instant::now();
        }
    }
    write_progress(progress, last_snapshot.as_ref(), &outcome, &rate);
    let _ = writeln!(progress, "{}", summary(&outcome, target_accuracy));
    outcome
}

fn write_progress(
    out: &mut dyn Write,
    snapshot: Option<&Snapshot>,
    outcome: &Outcome,
    rate: &RateMeter,
) {
    if let Some(s) = snapshot {
        let line = progress_line(s, outcome.last_eval.as_ref(), rate.per_second());
        let _ = writeln!(out, "{line}");
    }
}

fn progress_line(s: &Snapshot, eval: Option<&Evaluation>, steps_per_s: Option<f64>) -> String {
    let held_out = eval.map_or("held-out: pending".to_string(), |e| {
        let precise = e.precise_stats.map_or(String::new(), |p| {
            format!("  PreciseBN {:.1}%", 100.0 * p.accuracy)
        });
        format!(
            "held-out acc (step {}): batch stats {:.1}%  running stats {:.1}%{precise}",
            e.step,
            100.0 * e.batch_stats.accuracy,
            100.0 * e.running_stats.accuracy
        )
    });
    let rate = steps_per_s.map_or("-".to_string(), |r| format!("{r:.1}"));
    format!(
        "step {:>6}  epoch {:>3}  loss {:.4}  {held_out}  {rate} steps/s",
        s.step, s.epoch, s.loss
    )
}

fn summary(outcome: &Outcome, target: f32) -> String {
    let Some(end) = &outcome.end else {
        return "bntop: the training thread stopped without an end record".into();
    };
    let how = match end.reason {
        EndReason::Completed => "completed".to_string(),
        EndReason::Quit => "stopped".to_string(),
        EndReason::Diverged | EndReason::Error => {
            format!(
                "FAILED: {}",
                end.message.as_deref().unwrap_or("unknown error")
            )
        }
    };
    let mut line = format!(
        "bntop: {how} after {} steps in {:.1} s",
        end.step, end.elapsed_s
    );
    if let Some(e) = &outcome.last_eval {
        line += &format!(
            "; final held-out accuracy: batch stats {:.2}%, running stats {:.2}% (loss {:.4})",
            100.0 * e.batch_stats.accuracy,
            100.0 * e.running_stats.accuracy,
            e.running_stats.loss
        );
    }
    match outcome.reached_target {
        Some((step, t)) => {
            line += &format!(
                "; running-stats accuracy first >= {:.0}% at step {step} ({t:.1} s)",
                100.0 * target
            )
        }
        None => {
            line += &format!(
                "; running-stats accuracy never reached {:.0}%",
                100.0 * target
            )
        }
    }
    line
}

/// Steps per second over roughly the last few seconds of snapshots.
#[derive(Default)]
struct RateMeter {
    window: std::collections::VecDeque<(u64, f64)>,
}

impl RateMeter {
    const SPAN_S: f64 = 3.0;

    fn observe(&mut self, step: u64, time_s: f64) {
        self.window.push_back((step, time_s));
        while self
            .window
            .front()
            .is_some_and(|&(_, t)| time_s - t > Self::SPAN_S)
        {
            self.window.pop_front();
        }
    }

    fn per_second(&self) -> Option<f64> {
        let (&(s0, t0), &(s1, t1)) = (self.window.front()?, self.window.back()?);
        (t1 > t0).then(|| (s1 - s0) as f64 / (t1 - t0))
    }
}
