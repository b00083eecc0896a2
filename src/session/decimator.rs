//! Thinning a live stream by run time (`RecordingPolicy`): what a recording keeps, and what a
//! server sends its viewers. Every record but snapshots passes; snapshots pass at most every
//! `snapshot_interval_s` of run time, with their per-channel arrays at most every
//! `channel_arrays_interval_s` (the others keep mode, momentum and summary). The step after an
//! applied control and the last step before the end always pass whole.
use crate::protocol::{Event, LayerSnapshot, RecordingPolicy, Snapshot};

pub struct Decimator {
    policy: RecordingPolicy,
    last_snapshot_s: Option<f64>,
    last_arrays_s: Option<f64>,
    keep_next_whole: bool,
    /// The newest snapshot not passed: passed whole before `end`, so the last step is kept.
    held_back: Option<Snapshot>,
    last_passed_step: Option<u64>,
}

impl Decimator {
    pub fn new(policy: RecordingPolicy) -> Decimator {
        Decimator {
            policy,
            last_snapshot_s: None,
            last_arrays_s: None,
            keep_next_whole: false,
            held_back: None,
            last_passed_step: None,
        }
    }

    /// What passes for `event`, in order: nothing, the event (a snapshot maybe without its
    /// arrays), or before an end the held-back last snapshot and the end.
    pub fn filter(&mut self, event: &Event) -> Vec<Event> {
        match event {
            Event::Snapshot(s) => self.snapshot(s).map(Event::Snapshot).into_iter().collect(),
            Event::Control(control) => {
                self.keep_next_whole |= control.rejected.is_none();
                vec![event.clone()]
            }
            Event::End(_) => {
                let mut out = Vec::new();
                if let Some(last) = self.held_back.take() {
                    if self.last_passed_step.is_none_or(|s| s < last.step) {
                        out.push(Event::Snapshot(last));
                    }
                }
                out.push(event.clone());
                out
            }
            _ => vec![event.clone()],
        }
    }

    fn snapshot(&mut self, s: &Snapshot) -> Option<Snapshot> {
        let due = |last: Option<f64>, interval: f64| last.is_none_or(|t| s.time_s - t >= interval);
        let policy = &self.policy;
        let snapshot_due = due(self.last_snapshot_s, policy.snapshot_interval_s);
        // Arrays due pass their snapshot; but arrays as often as snapshots or more
        // (`--record-detail full`) go only with the snapshots that pass anyway, at their rate.
        let arrays_rarer = policy.channel_arrays_interval_s > policy.snapshot_interval_s;
        let whole = self.keep_next_whole
            || ((snapshot_due || arrays_rarer)
                && due(self.last_arrays_s, policy.channel_arrays_interval_s)
                && !s.layers.is_empty());
        if !whole && !snapshot_due {
            self.held_back = Some(s.clone());
            return None;
        }
        self.held_back = None;
        self.last_snapshot_s = Some(s.time_s);
        self.last_passed_step = Some(s.step);
        if whole && !s.layers.is_empty() {
            self.keep_next_whole = false;
            self.last_arrays_s = Some(s.time_s);
            return Some(s.clone());
        }
        let mut decimated = s.clone();
        decimated.layers = s.layers.iter().map(summary_only).collect();
        Some(decimated)
    }
}

/// A layer with its mode, momentum and summary (D0 included), without per-channel arrays or
/// the EMA fit.
pub fn summary_only(layer: &LayerSnapshot) -> LayerSnapshot {
    LayerSnapshot {
        mode: layer.mode,
        momentum: layer.momentum,
        cumulative: layer.cumulative,
        batch_mean: Vec::new(),
        batch_var: Vec::new(),
        running_mean_pre: Vec::new(),
        running_var_pre: Vec::new(),
        running_mean_post: Vec::new(),
        running_var_post: Vec::new(),
        r: Vec::new(),
        d: Vec::new(),
        drift: Vec::new(),
        out_mean: Vec::new(),
        out_var: Vec::new(),
        relu_mean: Vec::new(),
        relu_var: Vec::new(),
        relu_active: Vec::new(),
        gamma: Vec::new(),
        beta: Vec::new(),
        grad_gamma: Vec::new(),
        grad_beta: Vec::new(),
        weight_norm: Vec::new(),
        angular_update: Vec::new(),
        weight_grad_cos: Vec::new(),
        weight_grad_norm: Vec::new(),
        bias_grad: None,
        // One value per rank, not per channel: as small as the summary.
        rank_drift: layer.rank_drift.clone(),
        summary: layer.summary.clone(),
        // The EMA fit travels with the arrays (it changes over hundreds of steps): keeping it
        // in every thinned snapshot would grow a recording by a third.
        ema: None,
    }
}
