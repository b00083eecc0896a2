//! What the dashboard knows about a run, built only from protocol events: the latest values,
//! bounded history for the charts, and the controls applied. Live, replayed and remote runs all
//! arrive here the same way.
use std::collections::VecDeque;

use crate::metrics::ema_window::EmaReading;
pub use crate::metrics::ema_window::{EmaWindow, EMA_WINDOW};
use crate::metrics::noise_floor::FloorEstimate;
use crate::metrics::weights::{theta_star_coupled, theta_star_decoupled};
use crate::metrics::BN_EPSILON;
use crate::protocol::{
    BnKind, BnMode, Control, ControlEvent, EndReason, Evaluation, Event, LayerSnapshot, MarkerKind,
    OptimizerKind, RunEnd, RunHeader, Snapshot, WeightDecayMode,
};

use super::history::Series;
use crate::protocol::limits;
use crate::protocol::{FoldingReport, PopulationReport, ProbeReport};

/// Buckets per run-level series, and at most per layer-level and per-channel series.
pub const SERIES_CAPACITY: usize = 2048;
pub const CHANNEL_SERIES_CAPACITY: usize = 512;
/// The dashboard's history is bounded whatever the header says (sessions/FORMAT.md, "Limits"):
/// fixed budgets, in buckets of 16 bytes, shared by every layer. Layer-level series (4 per layer:
/// D, D0, ||w||, angle) share one; per-channel series (4 per charted channel, 2 per heatmap row)
/// share the other. A small network gets the full capacities above; ResNet-50 about 140 buckets
/// per channel series.
pub const LAYER_HISTORY_BUDGET: usize = 1 << 18;
pub const CHANNEL_HISTORY_BUDGET: usize = 1 << 21;
/// Channels per layer whose batch and running mean and variance are charted (evenly spaced when
/// a layer has more), and charted channels in all; the EMA window keeps these channels too.
pub const CHARTED_PER_LAYER: usize = 64;
pub const CHARTED_TOTAL: usize = 2048;
/// Rows of a layer's heatmap history: channels are grouped into at most this many, each row
/// keeping the most extreme value of its group.
pub const HEATMAP_ROWS: usize = 64;
/// Control events kept for the chart markers.
const CONTROLS_KEPT: usize = 256;
/// How the budgets are shared among a run's layers (from the header, so fixed for the run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPlan {
    pub charted_per_layer: usize,
    pub channel_capacity: usize,
    pub layer_capacity: usize,
}

impl HistoryPlan {
    /// The plan for layers of these channel counts.
    pub fn for_layers(channels: &[usize]) -> HistoryPlan {
        let layers = channels.len().max(1);
        let charted_per_layer = (CHARTED_TOTAL / layers).clamp(1, CHARTED_PER_LAYER);
        let series: usize = channels
            .iter()
            .map(|&c| 4 * c.min(charted_per_layer) + 2 * c.min(HEATMAP_ROWS))
            .sum();
        HistoryPlan {
            charted_per_layer,
            channel_capacity: (CHANNEL_HISTORY_BUDGET / series.max(1))
                .clamp(2, CHANNEL_SERIES_CAPACITY),
            layer_capacity: (LAYER_HISTORY_BUDGET / (4 * layers)).clamp(2, SERIES_CAPACITY),
        }
    }

    /// Without a header (a file that lost its first line): the widest stream the limits let
    /// through then.
    pub fn headerless() -> HistoryPlan {
        let mut channels = vec![limits::HEADERLESS_CHANNELS; limits::HEADERLESS_LAYERS];
        channels.resize(limits::MAX_LAYERS, 0);
        HistoryPlan::for_layers(&channels)
    }
}

/// The history of one charted channel.
#[derive(Clone, Debug)]
pub struct ChannelHistory {
    /// The channel's index in the layer.
    pub channel: usize,
    pub batch_mean: Series,
    pub running_mean: Series,
    pub batch_var: Series,
    pub running_var: Series,
}

impl ChannelHistory {
    fn new(channel: usize, capacity: usize) -> ChannelHistory {
        let s = || Series::new(capacity);
        ChannelHistory {
            channel,
            batch_mean: s(),
            running_mean: s(),
            batch_var: s(),
            running_var: s(),
        }
    }
}

/// One heatmap row: the channels `[first_channel, next row's first)`, each bucket holding the
/// min and max over them.
#[derive(Clone, Debug)]
pub struct HeatRow {
    pub first_channel: usize,
    pub d: Series,
    pub log_r: Series,
}

/// `n` of `channels` channels, evenly spaced from channel 0 (all of them when n >= channels).
pub fn spread(channels: usize, n: usize) -> Vec<usize> {
    crate::metrics::ema_window::spread(channels, n).collect()
}

#[derive(Clone, Debug)]
pub struct LayerState {
    pub name: String,
    pub channels: usize,
    /// BN1d layers have features rather than channels.
    pub kind: BnKind,
    pub mode: BnMode,
    pub momentum: f32,
    /// PyTorch's momentum None: `momentum` is then 1/n of the latest update.
    pub cumulative: bool,
    /// The latest snapshot that carried this layer's statistics.
    pub latest: Option<LayerSnapshot>,
    floor: FloorEstimate,
    pub drift: Series,
    pub drift_floor: Series,
    pub weight_norm: Series,
    pub angular_update: Series,
    /// The charted channels (`HistoryPlan::charted_per_layer`, evenly spaced), in order.
    pub channel_history: Vec<ChannelHistory>,
    /// The heatmap's rows: every channel, in at most `HEATMAP_ROWS` groups.
    pub heat_rows: Vec<HeatRow>,
    /// The last successive whole steps (cleared at a gap or a momentum change), of the charted
    /// channels.
    pub ema_window: EmaWindow,
    plan: HistoryPlan,
}

impl LayerState {
    fn new(
        name: String,
        channels: usize,
        mode: BnMode,
        momentum: f32,
        plan: HistoryPlan,
    ) -> LayerState {
        let s = || Series::new(plan.layer_capacity);
        let mut layer = LayerState {
            name,
            channels: 0,
            kind: BnKind::Bn2d,
            mode,
            momentum,
            cumulative: false,
            latest: None,
            floor: FloorEstimate::default(),
            drift: s(),
            drift_floor: s(),
            weight_norm: s(),
            angular_update: s(),
            channel_history: Vec::new(),
            heat_rows: Vec::new(),
            ema_window: EmaWindow::default(),
            plan,
        };
        layer.lay_out_channels(channels);
        layer
    }

    /// (Re)build the per-channel history for `channels` channels.
    fn lay_out_channels(&mut self, channels: usize) {
        let capacity = self.plan.channel_capacity;
        self.channels = channels;
        self.channel_history = spread(channels, self.plan.charted_per_layer)
            .into_iter()
            .map(|c| ChannelHistory::new(c, capacity))
            .collect();
        self.heat_rows = spread(channels, HEATMAP_ROWS)
            .into_iter()
            .map(|first_channel| HeatRow {
                first_channel,
                d: Series::new(capacity),
                log_r: Series::new(capacity),
            })
            .collect();
        // Other channels: the window starts over (and drops a ring sized for another count).
        self.ema_window = EmaWindow::default();
    }

    /// Every series this layer keeps.
    fn series(&self) -> impl Iterator<Item = &Series> {
        let layer = [
            &self.drift,
            &self.drift_floor,
            &self.weight_norm,
            &self.angular_update,
        ];
        let channels = self
            .channel_history
            .iter()
            .flat_map(|h| [&h.batch_mean, &h.running_mean, &h.batch_var, &h.running_var]);
        let rows = self.heat_rows.iter().flat_map(|h| [&h.d, &h.log_r]);
        layer.into_iter().chain(channels).chain(rows)
    }

    /// Heap bytes of everything else kept per channel: the EMA window, the latest arrays and
    /// the noise floor's previous means.
    fn other_bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        let ema = self.ema_window.heap_bytes();
        let latest = self
            .latest
            .as_ref()
            .map_or(0, |l| (l.widest() * 23 + l.rank_drift.capacity()) * f);
        let previous = self.floor.heap_bytes();
        ema + latest + previous
    }

    /// Keep successive steps at one momentum: the lag and noise theory holds for a fixed m.
    fn observe_ema(&mut self, step: u64, layer: &LayerSnapshot) {
        self.ema_window.push_followed(
            step,
            self.channel_history.iter().map(|h| h.channel),
            &layer.batch_mean,
            &layer.running_mean_post,
        );
    }

    /// Forget the steps after `step` (see `RunState::rewind`).
    fn rewind(&mut self, step: u64) {
        let series = [
            &mut self.drift,
            &mut self.drift_floor,
            &mut self.weight_norm,
            &mut self.angular_update,
        ];
        let channels = self.channel_history.iter_mut().flat_map(|h| {
            [
                &mut h.batch_mean,
                &mut h.running_mean,
                &mut h.batch_var,
                &mut h.running_var,
            ]
        });
        let rows = self
            .heat_rows
            .iter_mut()
            .flat_map(|h| [&mut h.d, &mut h.log_r]);
        for s in series.into_iter().chain(channels).chain(rows) {
            s.truncate_after(step);
        }
        self.ema_window.truncate_after(step);
        // The next snapshot does not follow the last one seen.
        self.floor.break_succession();
    }

    /// The drift's noise floor D0: the producer's (format 1.5) when the stream carries it,
    /// otherwise estimated here, once enough successive steps were seen.
    pub fn noise_floor(&self) -> Option<f64> {
        let published = self.latest.as_ref().map(|l| l.summary.noise_floor);
        match published.filter(|f| f.is_finite()) {
            Some(floor) => Some(f64::from(floor)),
            None => self.floor.floor(self.momentum),
        }
    }

    /// The running mean as an EMA: the producer's fit (format 1.5) when the stream carries
    /// one, otherwise measured over this state's window of successive steps. `None` in eval
    /// mode (the running statistics do not update) or at a momentum outside (0, 1).
    pub fn ema_reading(&self) -> Option<EmaReading> {
        let m = f64::from(self.momentum);
        if self.mode == BnMode::Eval || !(m > 0.0 && m < 1.0) {
            return None;
        }
        match self.latest.as_ref().and_then(|l| l.ema) {
            Some(fit) => Some(EmaReading {
                steps: fit.steps as usize,
                lag: Some(f64::from(fit.lag)).filter(|x| x.is_finite()),
                lag_predicted: crate::metrics::ema::lag_steps(m),
                noise: f64::from(fit.noise),
                noise_predicted: f64::from(fit.noise_predicted),
                batch_correlation: f64::from(fit.batch_correlation),
                best_momentum: Some(f64::from(fit.best_momentum)).filter(|x| x.is_finite()),
            }),
            None => self.ema_window.read(m),
        }
    }

    /// Takes one layer of a snapshot. In a `partial` one the weight geometry and the ReLU were
    /// not measured: their charts get no point and the table keeps the last measured values.
    fn observe(&mut self, step: u64, layer: &LayerSnapshot, partial: bool) {
        let measured = partial.then(|| self.latest.as_ref().map(|l| l.summary.clone()));
        self.observe_measured(step, layer, !partial);
        if let (Some(Some(earlier)), Some(latest)) = (measured, &mut self.latest) {
            latest.summary.keep_optional_from(&earlier);
        }
    }

    fn observe_measured(&mut self, step: u64, layer: &LayerSnapshot, weights: bool) {
        // The EMA theory holds for one momentum, and only while the running statistics update
        // (train mode): start the window over when either changes. (Against the last snapshot:
        // a control event has already set `self.momentum` and `self.mode`.)
        let changed = self
            .latest
            .as_ref()
            .is_some_and(|l| l.momentum != layer.momentum || l.mode != layer.mode);
        if changed {
            self.ema_window.clear();
        }
        self.mode = layer.mode;
        self.momentum = layer.momentum;
        self.cumulative = layer.cumulative;
        let summary = &layer.summary;
        self.drift.push(step, summary.drift);
        if weights {
            self.weight_norm.push(step, summary.weight_norm);
            self.angular_update.push(step, summary.angular_update);
        }
        if layer.batch_mean.is_empty() {
            // A summary-only snapshot (a recording keeps per-channel arrays at a lower rate):
            // the arrays shown stay those of the last whole snapshot.
            match &mut self.latest {
                Some(latest) => {
                    latest.mode = layer.mode;
                    latest.momentum = layer.momentum;
                    latest.cumulative = layer.cumulative;
                    latest.summary = layer.summary.clone();
                    latest.rank_drift.clone_from(&layer.rank_drift);
                    if changed {
                        latest.ema = None;
                    }
                }
                None => self.latest = Some(layer.clone()),
            }
            // The producer's D0 (format 1.5) comes with every snapshot, arrays or not.
            if layer.summary.noise_floor.is_finite() {
                self.drift_floor.push(step, layer.summary.noise_floor);
            }
            return;
        }
        if self.channels < layer.batch_mean.len() {
            // Only without a header (or one that gave no width): its layers grow as they come.
            self.lay_out_channels(layer.batch_mean.len());
        }
        self.floor
            .observe(step, &layer.batch_mean, &layer.running_var_pre, BN_EPSILON);
        self.observe_ema(step, layer);
        self.latest = Some(layer.clone());
        if let Some(floor) = self.noise_floor() {
            self.drift_floor.push(step, floor as f32);
        }
        let get = |v: &[f32], c: usize| v.get(c).copied().unwrap_or(f32::NAN);
        for h in &mut self.channel_history {
            let c = h.channel;
            h.batch_mean.push(step, get(&layer.batch_mean, c));
            h.running_mean.push(step, get(&layer.running_mean_pre, c));
            h.batch_var.push(step, get(&layer.batch_var, c));
            h.running_var.push(step, get(&layer.running_var_pre, c));
        }
        let (rows, channels) = (self.heat_rows.len(), self.channels);
        for c in 0..channels {
            // The inverse of `spread`: channel c belongs to the last row starting at or before it.
            let row = ((c + 1) * rows - 1) / channels;
            let Some(h) = self.heat_rows.get_mut(row) else {
                continue;
            };
            h.d.push(step, get(&layer.d, c));
            h.log_r.push(step, get(&layer.r, c).ln());
        }
    }
}

/// A control as it shows on the time axis and in the status line.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlMark {
    pub step: u64,
    /// What was asked (the charts draw a glyph per kind).
    pub control: Control,
    pub label: String,
    pub rejected: Option<String>,
}

/// Something worth telling the user when it arrives.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Control(ControlMark),
    Divergence(String),
    Folding(FoldingReport),
    End(RunEnd),
}

/// Steps per second over the last couple of seconds of run time.
#[derive(Clone, Debug, Default)]
pub struct StepRate {
    samples: VecDeque<(f64, u64)>,
}

impl StepRate {
    const WINDOW_S: f64 = 2.0;

    fn observe(&mut self, time_s: f64, step: u64) {
        self.samples.push_back((time_s, step));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| time_s - t > Self::WINDOW_S)
        {
            self.samples.pop_front();
        }
    }

    pub fn per_second(&self) -> Option<f64> {
        let (t0, s0) = *self.samples.front()?;
        let (t1, s1) = *self.samples.back()?;
        (t1 > t0).then(|| (s1 as f64 - s0 as f64) / (t1 - t0))
    }
}

/// What the header shows of a run at a checkpoint (and at step 0 for a restart).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SavedView {
    pub epoch: u64,
    pub loss: f32,
    pub batch_accuracy: f32,
    pub lr: f32,
    pub data_order: String,
}

#[derive(Clone, Debug, Default)]
pub struct RunState {
    pub header: Option<RunHeader>,
    pub step: u64,
    pub epoch: u64,
    pub time_s: f64,
    pub loss: f32,
    pub batch_accuracy: f32,
    pub lr: f32,
    /// As in the header, then as changed by controls.
    pub data_order: String,
    pub paused: bool,
    pub layers: Vec<LayerState>,
    pub loss_history: Series,
    pub heldout_batch_stats: Series,
    pub heldout_running_stats: Series,
    /// Three-way evaluations only (PreciseBN statistics), and the latest of them.
    pub heldout_precise_stats: Series,
    pub last_three_way: Option<Evaluation>,
    pub last_evaluation: Option<Evaluation>,
    pub last_folding: Option<FoldingReport>,
    pub last_population: Option<PopulationReport>,
    pub last_probe: Option<ProbeReport>,
    pub controls: VecDeque<ControlMark>,
    pub end: Option<RunEnd>,
    pub rate: StepRate,
    /// Records of a kind this version does not know (from a newer bntop), skipped.
    pub unknown_records: u64,
    /// The header's values when the latest checkpoint was saved: a restore shows them until
    /// the next snapshot.
    pub checkpoint: Option<SavedView>,
    pub snapshots: u64,
}

impl Default for Series {
    fn default() -> Self {
        Series::new(SERIES_CAPACITY)
    }
}

impl RunState {
    pub fn new() -> RunState {
        RunState::default()
    }

    pub fn layer_name(&self, layer: Option<usize>) -> String {
        match layer {
            None => "all layers".into(),
            Some(i) => self
                .layers
                .get(i)
                .map_or_else(|| format!("layer {i}"), |l| l.name.clone()),
        }
    }

    /// Fold one event in; returns what the user should be told about, if anything.
    pub fn apply(&mut self, event: &Event) -> Option<Notice> {
        match event {
            Event::Header(header) => {
                self.on_header(header);
                None
            }
            Event::Snapshot(snapshot) => {
                self.on_snapshot(snapshot);
                None
            }
            Event::Control(control) => Some(Notice::Control(self.on_control(control))),
            Event::Evaluation(evaluation) => {
                let step = evaluation.step;
                self.heldout_batch_stats
                    .push(step, evaluation.batch_stats.accuracy);
                self.heldout_running_stats
                    .push(step, evaluation.running_stats.accuracy);
                if let Some(precise) = evaluation.precise_stats {
                    self.heldout_precise_stats.push(step, precise.accuracy);
                    self.last_three_way = Some(evaluation.clone());
                }
                self.last_evaluation = Some(evaluation.clone());
                None
            }
            Event::Marker(marker) => match marker.kind {
                MarkerKind::Divergence => Some(Notice::Divergence(marker.label.clone())),
                MarkerKind::Epoch => None,
            },
            Event::End(end) => {
                self.end = Some(end.clone());
                self.paused = false;
                Some(Notice::End(end.clone()))
            }
            Event::Folding(report) => {
                self.last_folding = Some(report.clone());
                Some(Notice::Folding(report.clone()))
            }
            Event::Population(report) => {
                self.last_population = Some(report.clone());
                None
            }
            Event::Probe(report) => {
                self.last_probe = Some(report.clone());
                None
            }
            Event::Unknown => {
                self.unknown_records += 1;
                None
            }
        }
    }

    fn on_header(&mut self, header: &RunHeader) {
        let config = &header.config;
        self.lr = config.optimizer.lr;
        self.data_order = config.data_order.clone();
        let channels: Vec<usize> = header.layers.iter().map(|l| l.channels).collect();
        let plan = HistoryPlan::for_layers(&channels);
        self.layers = header
            .layers
            .iter()
            .map(|l| {
                let mut layer = LayerState::new(
                    l.name.clone(),
                    l.channels,
                    BnMode::Train,
                    config.bn_momentum,
                    plan,
                );
                layer.kind = l.kind;
                layer
            })
            .collect();
        self.header = Some(header.clone());
    }

    fn on_snapshot(&mut self, s: &Snapshot) {
        self.step = s.step;
        self.epoch = s.epoch;
        self.time_s = s.time_s;
        self.loss = s.loss;
        self.batch_accuracy = s.batch_accuracy;
        self.lr = s.lr;
        self.snapshots += 1;
        self.rate.observe(s.time_s, s.step);
        self.loss_history.push(s.step, s.loss);
        for (i, layer) in s.layers.iter().enumerate() {
            if self.layers.len() <= i {
                let name = format!("layer{}", i + 1);
                let plan = HistoryPlan::headerless();
                let width = layer.batch_mean.len();
                let state = LayerState::new(name, width, layer.mode, layer.momentum, plan);
                self.layers.push(state);
            }
            self.layers[i].observe(s.step, layer, s.partial);
        }
    }

    fn on_control(&mut self, event: &ControlEvent) -> ControlMark {
        if event.rejected.is_none() {
            self.apply_control(&event.control);
            if event.control.goes_back() {
                self.rewind(event.step);
            }
        }
        let mark = ControlMark {
            step: event.step,
            control: event.control.clone(),
            label: self.describe(&event.control),
            rejected: event.rejected.clone(),
        };
        if self.controls.len() == CONTROLS_KEPT {
            self.controls.pop_front();
        }
        self.controls.push_back(mark.clone());
        mark
    }

    fn apply_control(&mut self, control: &Control) {
        let indices = |layer: Option<usize>, n: usize| match layer {
            None => 0..n,
            Some(i) => i.min(n)..(i + 1).min(n),
        };
        let n = self.layers.len();
        match *control {
            Control::SetMode { layer, mode } => {
                for i in indices(layer, n) {
                    self.layers[i].mode = mode;
                }
            }
            Control::SetMomentum { layer, momentum } => {
                for i in indices(layer, n) {
                    self.layers[i].momentum = momentum;
                    self.layers[i].cumulative = false;
                }
            }
            // The next snapshot carries the momentum (1/n) of the cumulative average.
            Control::SetMomentumCumulative { layer } => {
                for i in indices(layer, n) {
                    self.layers[i].cumulative = true;
                }
            }
            Control::SetLr { lr } => self.lr = lr,
            Control::SetDataOrder { order } => self.data_order = order.name().to_string(),
            Control::Pause => self.paused = true,
            Control::Resume => self.paused = false,
            Control::SaveCheckpoint => self.checkpoint = Some(self.saved_view()),
            Control::RestoreCheckpoint { .. } => {
                if let Some(saved) = self.checkpoint.clone() {
                    self.show_saved(saved);
                }
            }
            Control::Restart { .. } => {
                let (lr, data_order) = self.header.as_ref().map_or_else(
                    || (self.lr, self.data_order.clone()),
                    |h| (h.config.optimizer.lr, h.config.data_order.clone()),
                );
                self.show_saved(SavedView {
                    lr,
                    data_order,
                    ..SavedView::default()
                });
            }
            Control::Step
            | Control::ResetRunningStats { .. }
            | Control::FoldCheck
            | Control::PreciseBn
            | Control::ApplyPreciseBn { .. }
            | Control::PhantomProbe
            | Control::Quit => {}
        }
    }

    /// A control in words: "block2 -> EVAL", "lr = 0.025".
    pub fn describe(&self, control: &Control) -> String {
        match *control {
            Control::SetMode { layer, mode } => {
                let mode = match mode {
                    BnMode::Train => "TRAIN",
                    BnMode::Eval => "EVAL",
                };
                format!("{} -> {mode}", self.layer_name(layer))
            }
            Control::SetMomentum { layer, momentum } => format!(
                "{} momentum = {}",
                self.layer_name(layer),
                super::format::momentum(momentum)
            ),
            Control::SetMomentumCumulative { layer } => format!(
                "{} momentum = None (cumulative average)",
                self.layer_name(layer)
            ),
            Control::SetLr { lr } => format!("lr = {}", super::format::num(f64::from(lr), 3)),
            Control::SetDataOrder { order } => format!("data order = {}", order.name()),
            Control::Pause => "pause".into(),
            Control::Resume => "resume".into(),
            Control::Step => "single step".into(),
            Control::ResetRunningStats { layer } => {
                format!("{} running stats reset", self.layer_name(layer))
            }
            Control::FoldCheck => "fold conv + BN and check".into(),
            Control::PreciseBn => "PreciseBN statistics and three-way evaluation".into(),
            Control::ApplyPreciseBn { layer } => {
                format!("{} running stats <- PreciseBN", self.layer_name(layer))
            }
            Control::PhantomProbe => "phantom-gradient probe".into(),
            Control::Quit => "quit".into(),
            Control::SaveCheckpoint => "save checkpoint".into(),
            Control::RestoreCheckpoint { from: None } => "restore the latest checkpoint".into(),
            Control::RestoreCheckpoint { from: Some(from) } => {
                format!("restored checkpoint (run was at step {from})")
            }
            Control::Restart { from: None } => "restart from step 0".into(),
            Control::Restart { from: Some(from) } => {
                format!("restarted from step 0 (run was at step {from})")
            }
        }
    }

    fn saved_view(&self) -> SavedView {
        SavedView {
            epoch: self.epoch,
            loss: self.loss,
            batch_accuracy: self.batch_accuracy,
            lr: self.lr,
            data_order: self.data_order.clone(),
        }
    }

    fn show_saved(&mut self, saved: SavedView) {
        self.epoch = saved.epoch;
        self.loss = saved.loss;
        self.batch_accuracy = saved.batch_accuracy;
        self.lr = saved.lr;
        self.data_order = saved.data_order;
    }

    /// The run went back to `step` (a restore or a restart): forget what came after it, so the
    /// charts show the run from there on and no line is drawn back over the abandoned steps.
    fn rewind(&mut self, step: u64) {
        self.step = step;
        self.end = None;
        self.rate = StepRate::default();
        for series in [
            &mut self.loss_history,
            &mut self.heldout_batch_stats,
            &mut self.heldout_running_stats,
            &mut self.heldout_precise_stats,
        ] {
            series.truncate_after(step);
        }
        let after = |s: u64| s > step;
        if self.last_evaluation.as_ref().is_some_and(|e| after(e.step)) {
            self.last_evaluation = None;
        }
        if self.last_three_way.as_ref().is_some_and(|e| after(e.step)) {
            self.last_three_way = None;
        }
        if self.last_folding.as_ref().is_some_and(|r| after(r.step)) {
            self.last_folding = None;
        }
        if self.last_population.as_ref().is_some_and(|r| after(r.step)) {
            self.last_population = None;
        }
        if self.last_probe.as_ref().is_some_and(|r| after(r.step)) {
            self.last_probe = None;
        }
        self.controls.retain(|c| !after(c.step));
        for layer in &mut self.layers {
            layer.rewind(step);
        }
    }

    /// SGD without weight decay: no equilibrium, but the t^(-1/2) law of BN-METRICS §5.
    pub fn no_decay_sgd(&self) -> bool {
        self.header.as_ref().is_some_and(|h| {
            let o = &h.config.optimizer;
            o.kind == OptimizerKind::Sgd && o.weight_decay == 0.0
        })
    }

    /// The equilibrium angular update θ* of a normalised filter under SGD with weight decay, at
    /// the current learning rate (BN-METRICS §5); `None` for Adam or without weight decay.
    pub fn theta_star(&self) -> Option<f64> {
        let o = &self.header.as_ref()?.config.optimizer;
        if o.kind != OptimizerKind::Sgd || o.weight_decay <= 0.0 {
            return None;
        }
        let (lr, wd, mu) = (
            f64::from(self.lr),
            f64::from(o.weight_decay),
            f64::from(o.momentum),
        );
        Some(match o.weight_decay_mode {
            WeightDecayMode::Coupled => theta_star_coupled(lr, wd, mu),
            WeightDecayMode::Decoupled => theta_star_decoupled(lr, wd, mu),
        })
    }

    /// Heap bytes held by the history (ring buffers are preallocated, so this does not grow with
    /// the run).
    pub fn history_bytes(&self) -> usize {
        let run = [
            &self.loss_history,
            &self.heldout_batch_stats,
            &self.heldout_running_stats,
            &self.heldout_precise_stats,
        ];
        let layers = self.layers.iter().flat_map(LayerState::series);
        run.into_iter().chain(layers).map(Series::heap_bytes).sum()
    }

    /// Heap bytes of everything kept that grows with the layers and channels: the history, the
    /// EMA windows, the latest arrays. Bounded by the budgets above (tests/memory.rs).
    pub fn retained_bytes(&self) -> usize {
        self.history_bytes()
            + self
                .layers
                .iter()
                .map(LayerState::other_bytes)
                .sum::<usize>()
    }

    /// Is the run over (ended, or failed)?
    pub fn finished(&self) -> Option<EndReason> {
        self.end.as_ref().map(|e| e.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::synthetic;

    #[test]
    fn theta_star_follows_the_optimizer_and_the_live_lr() {
        let mut state = RunState::new();
        for e in &synthetic::run(5, 1) {
            state.apply(e);
        }
        // SGD lr 0.05, momentum 0.9, coupled wd 5e-4: sqrt(2*0.05*5e-4/1.9).
        let expected = (2.0 * 0.05 * 5e-4 / 1.9f64).sqrt();
        assert!(state
            .theta_star()
            .is_some_and(|t| (t - expected).abs() < 1e-6));
        state.apply(&Event::Control(ControlEvent {
            step: 5,
            control: Control::SetLr { lr: 0.2 },
            rejected: None,
        }));
        assert!(state
            .theta_star()
            .is_some_and(|t| (t - 2.0 * expected).abs() < 1e-5));
        if let Some(h) = state.header.as_mut() {
            h.config.optimizer.kind = OptimizerKind::Adam;
        }
        assert_eq!(state.theta_star(), None);
    }

    /// A recording's summary-only snapshots update the summary series but keep the last whole
    /// snapshot's per-channel arrays (no NaN channel means).
    #[test]
    fn summary_only_snapshots_keep_the_last_arrays() {
        let mut state = RunState::new();
        let events = synthetic::run(20, 1);
        for e in &events {
            state.apply(e);
        }
        let arrays = state.layers[0]
            .latest
            .as_ref()
            .map(|l| l.batch_mean.clone());
        let Some(Event::Snapshot(mut next)) = synthetic::run(21, 1).into_iter().last() else {
            panic!("the synthetic run ends with a snapshot")
        };
        for layer in &mut next.layers {
            layer.batch_mean.clear();
            layer.summary.drift = 0.75;
        }
        let points = state.layers[0].channel_history[0]
            .batch_mean
            .buckets()
            .len();
        state.apply(&Event::Snapshot(next));
        let layer = &state.layers[0];
        assert_eq!(layer.latest.as_ref().map(|l| l.batch_mean.clone()), arrays);
        assert_eq!(layer.latest.as_ref().map(|l| l.summary.drift), Some(0.75));
        assert_eq!(layer.drift.last_value(), Some(0.75));
        assert_eq!(layer.channel_history[0].batch_mean.buckets().len(), points);
    }

    /// A partial snapshot (bntop-torch over its measurement budget) has NaN where the optional
    /// passes did not run: the table keeps the last measured values and the weight charts get no
    /// point, while the BN statistics it did measure go in as usual.
    #[test]
    fn partial_snapshots_keep_the_last_measured_weights() {
        let mut state = RunState::new();
        for e in &synthetic::run(20, 1) {
            state.apply(e);
        }
        let before = state.layers[0].latest.as_ref().map(|l| l.summary.clone());
        let Some(Event::Snapshot(mut next)) = synthetic::run(21, 1).into_iter().last() else {
            panic!("the synthetic run ends with a snapshot")
        };
        next.partial = true;
        for layer in &mut next.layers {
            layer.batch_mean.clear();
            let summary = &mut layer.summary;
            summary.drift = 0.75;
            summary.weight_norm = f32::NAN;
            summary.angular_update = f32::NAN;
            summary.effective_lr = f32::NAN;
            summary.max_abs_cos = f32::NAN;
            summary.relu_active = f32::NAN;
            summary.radial_fraction = f32::NAN;
        }
        state.apply(&Event::Snapshot(next.clone()));
        let layer = &state.layers[0];
        let Some((now, before)) = layer.latest.as_ref().map(|l| &l.summary).zip(before) else {
            panic!("a layer summary")
        };
        assert_eq!(now.drift, 0.75);
        assert_eq!(layer.drift.last_step(), Some(21));
        let kept = |s: &crate::protocol::LayerSummary| {
            let fields = [
                s.weight_norm,
                s.angular_update,
                s.effective_lr,
                s.max_abs_cos,
            ];
            (fields, s.relu_active, s.radial_fraction.to_bits())
        };
        assert_eq!(kept(now), kept(&before));
        assert!(now.weight_norm.is_finite() && now.relu_active.is_finite());
        assert_eq!(layer.weight_norm.last_step(), Some(20));
        assert_eq!(layer.angular_update.last_step(), Some(20));
        // The same snapshot measured whole: its values are taken.
        next.partial = false;
        next.step = 22;
        next.layers[0].summary.weight_norm = 3.5;
        state.apply(&Event::Snapshot(next));
        let layer = &state.layers[0];
        assert_eq!(
            layer.latest.as_ref().map(|l| l.summary.weight_norm),
            Some(3.5)
        );
        assert_eq!(layer.weight_norm.last_value(), Some(3.5));
    }

    /// A momentum control arrives before the snapshot that carries the new momentum: the EMA
    /// window still starts over with that snapshot (it once compared with the momentum the
    /// control had already set, and mixed two momenta in one fit).
    #[test]
    fn a_momentum_change_starts_the_ema_window_over() {
        let mut state = RunState::new();
        let events = synthetic::run(200, 1);
        for e in &events {
            state.apply(e);
        }
        assert!(state.layers[0].ema_window.len() > 100);
        let Some(mut next) = events.iter().rev().find_map(|e| match e {
            Event::Snapshot(s) => Some(s.clone()),
            _ => None,
        }) else {
            panic!("the synthetic run has snapshots")
        };
        state.apply(&Event::Control(ControlEvent {
            step: next.step,
            control: Control::SetMomentum {
                layer: Some(0),
                momentum: 0.5,
            },
            rejected: None,
        }));
        next.step += 1;
        next.layers[0].momentum = 0.5;
        state.apply(&Event::Snapshot(next));
        assert_eq!(state.layers[0].ema_window.len(), 1);
        assert!(state.layers[2].ema_window.len() > 100, "other layers go on");
    }

    /// Every channel lands in the heatmap row whose range holds it, for any width.
    #[test]
    fn heat_rows_cover_every_channel_once() {
        for channels in [1usize, 3, 63, 64, 65, 100, 2048, 4096] {
            let rows = spread(channels, HEATMAP_ROWS);
            assert_eq!(rows.len(), channels.min(HEATMAP_ROWS));
            for c in 0..channels {
                let row = ((c + 1) * rows.len() - 1) / channels;
                let end = rows.get(row + 1).copied().unwrap_or(channels);
                assert!(
                    rows[row] <= c && c < end,
                    "{channels}: channel {c} in row {row}"
                );
            }
        }
    }

    /// The budgets: a small network keeps full history; ResNet-50 and the widest header the
    /// limits allow share the fixed totals.
    #[test]
    fn history_plans_share_fixed_budgets() {
        let small = HistoryPlan::for_layers(&[16, 32, 64]);
        assert_eq!(
            (
                small.charted_per_layer,
                small.channel_capacity,
                small.layer_capacity
            ),
            (CHARTED_PER_LAYER, CHANNEL_SERIES_CAPACITY, SERIES_CAPACITY)
        );
        let widths: Vec<usize> = synthetic::resnet50_layers()
            .iter()
            .map(|l| l.channels)
            .collect();
        assert_eq!((widths.len(), widths.iter().sum::<usize>()), (53, 26_560));
        let resnet = HistoryPlan::for_layers(&widths);
        assert!(resnet.channel_capacity >= 128, "{resnet:?}");
        let worst = vec![limits::MAX_TOTAL_CHANNELS / limits::MAX_LAYERS; limits::MAX_LAYERS];
        for plan in [
            resnet,
            HistoryPlan::for_layers(&worst),
            HistoryPlan::headerless(),
        ] {
            let layers = if plan == resnet {
                53
            } else {
                limits::MAX_LAYERS
            };
            assert!(plan.charted_per_layer * layers <= CHARTED_TOTAL.max(layers));
            assert!(4 * layers * plan.layer_capacity <= LAYER_HISTORY_BUDGET);
        }
    }
}
