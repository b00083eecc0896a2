//! The training loop: controls between steps, one step, its snapshot, evaluations, the end.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use dfdx::losses::cross_entropy_with_logits_loss;
use dfdx::prelude::*;

use super::host::{from_host, to_host};

use super::batches::Batches;
use super::checkpoint::Checkpoint;
use super::config::TrainConfig;
use super::conv::Im2colCache;
use super::data::DataSet;
use super::evaluate::{cross_entropy_and_hits, HeldOut};
use super::forward::{BlockObservation, Observer, PassConfig};
use super::layer_snapshot::BlockStep;
use super::model::{block_geometries, one_hot, Net, PerChannel, Widths, CLASSES};
use super::optimizer::{MeasureFilters, NetOptimizer};
use super::population;
use super::publisher::{Publisher, StepRecord};
use super::weight_step::RowStep;
use crate::protocol::{
    BnKind, BnMode, Control, ControlEvent, Conventions, DataInfo, EndReason, Event, LayerInfo,
    Marker, MarkerKind, RunConfig, RunEnd, RunHeader, Snapshot, FORMAT_NAME, FORMAT_VERSION_MAJOR,
    FORMAT_VERSION_MINOR,
};

mod checkpoints;
mod lab;
#[cfg(test)]
mod tests;

/// How long a paused engine waits for a control before checking on its consumer again.
const PAUSED_POLL: Duration = Duration::from_millis(50);

pub struct Trainer {
    cfg: TrainConfig,
    dev: Cpu,
    widths: Widths,
    net: Net,
    opt: NetOptimizer,
    grads: Gradients<f32, Cpu>,
    cache: Im2colCache,
    data: DataSet,
    batches: Batches,
    heldout: HeldOut,
    /// One per block.
    modes: Vec<BnMode>,
    lr: f32,
    step: u64,
    last_evaluated: Option<u64>,
    started: Instant,
    paused: bool,
    steps_granted: u32,
    quit: bool,
    outbox: Publisher,
    controls: Receiver<Control>,
    /// The state before the first step (what a restart goes back to), and the latest checkpoint
    /// the user saved.
    initial: Checkpoint,
    saved: Option<Checkpoint>,
}

impl Trainer {
    /// Builds the network (`cfg.widths`, or the default for the data's image size) and the
    /// optimizer. Call on the training thread.
    pub fn new(
        cfg: TrainConfig,
        data: DataSet,
        outbox: Publisher,
        controls: Receiver<Control>,
    ) -> Self {
        let dev = Cpu::seed_from_u64(cfg.seed);
        dev.enable_cache();
        let images = &data.train;
        let widths = (cfg.widths.clone())
            .unwrap_or_else(|| Widths::default_for(images.height, images.width));
        let mut net = Net::new(&dev, images.channels, &widths);
        for block in &mut net.blocks {
            block.set_momentum(cfg.bn_momentum as f64);
        }
        let opt = NetOptimizer::new(&cfg.optimizer);
        let batches = Batches::new(data.train.len(), cfg.batch_size, cfg.seed, cfg.data_order);
        let heldout = HeldOut::new(&data.heldout, cfg.eval_samples, cfg.batch_size);
        let modes = vec![BnMode::Train; widths.as_slice().len()];
        let initial = Checkpoint {
            step: 0,
            net: net.clone(),
            opt: opt.clone(),
            batches: batches.clone(),
            modes: modes.clone(),
            lr: cfg.optimizer.lr,
        };
        Trainer {
            lr: cfg.optimizer.lr,
            paused: cfg.start_paused,
            cfg,
            dev,
            modes,
            widths,
            net,
            opt,
            // Allocated with the first step's `zero_grads`.
            grads: Gradients::leaky(),
            cache: Im2colCache::default(),
            data,
            batches,
            heldout,
            step: 0,
            last_evaluated: None,
            started: Instant::now(),
            steps_granted: 0,
            quit: false,
            outbox,
            controls,
            initial,
            saved: None,
        }
    }

    /// Runs until the step limit, a quit, divergence or an error; the last event is always `End`.
    pub fn run(mut self) {
        self.outbox.send(Event::Header(Box::new(self.header())));
        self.evaluate_and_probe();
        let (reason, message) = loop {
            if let Some(reason) = self.wait_for_go() {
                break (reason, None);
            }
            if self.cfg.max_steps.is_some_and(|max| self.step >= max) {
                break (EndReason::Completed, None);
            }
            match self.train_step() {
                Ok(record) => {
                    let diverged = !record.snapshot.loss.is_finite();
                    self.outbox.send_step(record);
                    if diverged {
                        self.outbox.send(Event::Marker(Marker {
                            step: self.step,
                            kind: MarkerKind::Divergence,
                            label: "loss is not finite".into(),
                        }));
                        break (
                            EndReason::Diverged,
                            Some(format!("the loss became non-finite at step {}", self.step)),
                        );
                    }
                    self.evaluate_and_probe();
                }
                Err(message) => break (EndReason::Error, Some(message)),
            }
        };
        if reason != EndReason::Diverged && self.last_evaluated != Some(self.step) {
            self.evaluate(None);
        }
        self.outbox.send(Event::End(RunEnd {
            step: self.step,
            reason,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            message,
        }));
        self.outbox.finish();
    }

    /// Applies pending controls; while paused, blocks until resumed, stepped or told to quit.
    /// Returns why the run must end, if it must.
    fn wait_for_go(&mut self) -> Option<EndReason> {
        loop {
            while let Ok(control) = self.controls.try_recv() {
                self.handle(control);
            }
            if self.quit || self.outbox.is_disconnected() {
                return Some(EndReason::Quit);
            }
            if !self.paused {
                return None;
            }
            if self.steps_granted > 0 {
                self.steps_granted -= 1;
                return None;
            }
            match self.controls.recv_timeout(PAUSED_POLL) {
                Ok(control) => self.handle(control),
                Err(RecvTimeoutError::Timeout) => {}
                // Paused with nobody left to resume the run.
                Err(RecvTimeoutError::Disconnected) => return Some(EndReason::Quit),
            }
        }
    }

    fn handle(&mut self, control: Control) {
        let from = self.step;
        let rejected = self.apply(&control).err();
        let accepted = rejected.is_none();
        // A restore or restart is echoed at the step the run went back to, with where it was.
        let control = match control {
            Control::RestoreCheckpoint { .. } if accepted => {
                Control::RestoreCheckpoint { from: Some(from) }
            }
            Control::Restart { .. } if accepted => Control::Restart { from: Some(from) },
            other => other,
        };
        self.outbox.send(Event::Control(ControlEvent {
            step: self.step,
            control: control.clone(),
            rejected,
        }));
        // The answers of the on-demand lab controls follow their echo.
        match control {
            Control::FoldCheck => self.report_folding(),
            Control::PreciseBn => {
                let population = self.report_population();
                self.evaluate(Some(&population));
            }
            Control::ApplyPreciseBn { .. } if accepted => {
                self.report_population();
            }
            Control::PhantomProbe => self.report_probe(),
            // The held-out numbers (and the lab's, when due) of the state gone back to, as a
            // run at that step would have them.
            Control::RestoreCheckpoint { .. } | Control::Restart { .. } if accepted => {
                self.evaluate_and_probe();
            }
            _ => {}
        }
    }

    fn apply(&mut self, control: &Control) -> Result<(), String> {
        match *control {
            Control::SetMode { layer, mode } => {
                for i in self.layers(layer)? {
                    self.modes[i] = mode;
                }
            }
            Control::SetMomentum { layer, momentum } => {
                if !(0.0..=1.0).contains(&momentum) {
                    return Err(format!("momentum must be in [0, 1], got {momentum}"));
                }
                for i in self.layers(layer)? {
                    self.net.blocks[i].set_momentum(momentum as f64);
                }
            }
            Control::SetMomentumCumulative { .. } => {
                return Err(CUMULATIVE_REFUSED.into());
            }
            Control::SetLr { lr } => {
                if !(lr.is_finite() && lr > 0.0) {
                    return Err(format!("learning rate must be a positive number, got {lr}"));
                }
                self.lr = lr;
                self.opt.set_lr(lr as f64);
            }
            Control::SetDataOrder { order } => self.batches.set_order(order),
            // Answered after the echo (see `handle`).
            Control::FoldCheck | Control::PreciseBn | Control::PhantomProbe => {}
            Control::ApplyPreciseBn { layer } => {
                let layers = self.layers(layer)?;
                let population = self.population();
                population::apply(&mut self.net, &population, layers);
            }
            Control::Pause => self.paused = true,
            Control::Resume => self.paused = false,
            Control::Step => {
                if !self.paused {
                    return Err("single step works while paused".into());
                }
                self.steps_granted += 1;
            }
            Control::ResetRunningStats { layer } => {
                for i in self.layers(layer)? {
                    self.net.blocks[i].reset_running_stats();
                }
            }
            Control::Quit => self.quit = true,
            Control::SaveCheckpoint => self.saved = Some(self.checkpoint()),
            Control::RestoreCheckpoint { .. } => self.restore_latest()?,
            Control::Restart { .. } => self.restart(),
        }
        Ok(())
    }

    fn layers(&self, layer: Option<usize>) -> Result<std::ops::Range<usize>, String> {
        let blocks = self.net.blocks.len();
        match layer {
            None => Ok(0..blocks),
            Some(i) if i < blocks => Ok(i..i + 1),
            Some(i) => Err(format!("no BN layer {i} (layers are 0..{})", blocks - 1)),
        }
    }

    /// One optimizer step on the next batch, and the record its snapshot is made from.
    fn train_step(&mut self) -> Result<StepRecord, String> {
        let batch = self.batches.next(&self.data.train);
        let (pixels, labels, new_epoch) = (batch.pixels, batch.labels, batch.new_epoch);
        if new_epoch {
            let epoch = self.batches.epoch();
            self.outbox.send(Event::Marker(Marker {
                step: self.step,
                kind: MarkerKind::Epoch,
                label: format!("epoch {epoch}"),
            }));
        }
        let n = labels.len();
        let images = &self.data.train;
        let x = from_host(
            &self.dev,
            &pixels,
            (images.channels, n, images.height, images.width),
        );
        let targets = from_host(&self.dev, &one_hot(&labels), (n, Const::<CLASSES>));

        let metrics = self.cfg.layer_metrics
            && (self.cfg.metrics_interleave).is_none_or(|i| i.metrics_on(self.step + 1));
        let mut observer = Observer::default();
        let mut grads = std::mem::replace(&mut self.grads, Gradients::leaky());
        self.net
            .zero_grads(&mut grads)
            .map_err(|e| format!("allocating gradients failed: {e}"))?;
        let mut pass = PassConfig {
            conv_bias: self.cfg.conv_bias,
            cache: &mut self.cache,
        };
        let logits = self.net.forward_train(
            x.traced(grads),
            &self.modes,
            &mut pass,
            metrics.then_some(&mut observer),
        );
        let (_, hits) = cross_entropy_and_hits(&to_host(&logits), &labels);
        let loss = cross_entropy_with_logits_loss(logits, targets);
        let loss_value = loss.array();
        let mut grads = loss.backward();

        // γ, β and the small gradients before the update; the filters are measured across it.
        let before = if metrics {
            self.measure_before(&mut grads)?
        } else {
            Vec::new()
        };
        let measure = metrics.then(|| MeasureFilters {
            pool: self.cache.pool(),
            before: (observer.blocks.iter())
                .map(|seen| Arc::clone(&seen.filters))
                .collect(),
        });
        let weight_rows = self.opt.update(&mut self.net, &mut grads, measure)?;
        self.grads = grads;
        self.step += 1;

        let blocks = if metrics {
            self.block_steps(observer.blocks, before, weight_rows)
        } else {
            Vec::new()
        };
        Ok(StepRecord {
            snapshot: Snapshot {
                step: self.step,
                epoch: self.batches.epoch(),
                time_s: self.started.elapsed().as_secs_f64(),
                loss: loss_value,
                batch_accuracy: hits as f32 / n as f32,
                lr: self.lr,
                partial: false,
                layers: Vec::new(),
            },
            blocks,
            estimates_step: match self.cfg.metrics_interleave {
                Some(interleave) => interleave.on_steps_through(self.step),
                None => self.step,
            },
        })
    }

    /// What the weight metrics need of each block before the update, besides its filters: γ,
    /// β and their gradients, and the pre-BN bias's gradient.
    fn measure_before(&self, grads: &mut Gradients<f32, Cpu>) -> Result<Vec<BlockBefore>, String> {
        let read = |e: dfdx::tensor::CpuError| format!("reading gradients failed: {e}");
        (self.net.blocks.iter())
            .map(|b| {
                let mut grad_of = |t: &PerChannel| grads.get_or_alloc_mut(t).map(|g| g.to_vec());
                Ok(BlockBefore {
                    gamma: b.gamma(),
                    beta: b.beta(),
                    grad_gamma: grad_of(&b.bn.scale).map_err(read)?,
                    grad_beta: grad_of(&b.bn.bias).map_err(read)?,
                    grad_bias: grad_of(&b.bias).map_err(read)?,
                })
            })
            .collect()
    }

    /// Everything the publisher needs to compute each layer's snapshot off this thread.
    fn block_steps(
        &self,
        observations: Vec<BlockObservation>,
        before: Vec<BlockBefore>,
        weight_rows: Vec<Vec<RowStep>>,
    ) -> Vec<BlockStep> {
        self.net
            .blocks
            .iter()
            .zip(observations.into_iter().zip(before).zip(weight_rows))
            .zip(self.modes.iter().copied())
            .map(|((block, ((seen, before), weight_rows)), mode)| BlockStep {
                mode,
                momentum: block.momentum(),
                epsilon: block.epsilon(),
                lr: self.lr as f64,
                conv_bias: self.cfg.conv_bias,
                seen,
                gamma: before.gamma,
                beta: before.beta,
                grad_gamma: before.grad_gamma,
                grad_beta: before.grad_beta,
                grad_bias: before.grad_bias,
                weight_rows,
            })
            .collect()
    }

    fn header(&self) -> RunHeader {
        let images = &self.data.train;
        let input = [images.channels, images.height, images.width];
        let layers = block_geometries(&self.widths, input, self.cfg.batch_size)
            .map(|(spec, geometry)| LayerInfo {
                name: spec.name.into(),
                in_channels: geometry.in_channels,
                channels: spec.channels,
                kind: BnKind::Bn2d,
                sync: false,
                feeds_from: None,
                kernel: geometry.kernel,
                stride: geometry.stride,
                padding: geometry.padding,
                conv_bias: self.cfg.conv_bias,
                in_height: geometry.height,
                in_width: geometry.width,
                out_height: geometry.out_height(),
                out_width: geometry.out_width(),
            })
            .collect();
        let started_unix_ms = SystemTime::now()
            .checked_sub(self.started.elapsed())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        RunHeader {
            format: FORMAT_NAME.into(),
            version_major: FORMAT_VERSION_MAJOR,
            version_minor: FORMAT_VERSION_MINOR,
            started_unix_ms,
            config: RunConfig {
                optimizer: self.cfg.optimizer.clone(),
                batch_size: self.cfg.batch_size,
                seed: Some(self.cfg.seed),
                bn_momentum: self.cfg.bn_momentum,
                eval_every: self.cfg.eval_every,
                eval_samples: self.heldout.samples(),
                max_steps: self.cfg.max_steps,
                conv_bias: self.cfg.conv_bias,
                data_order: self.cfg.data_order.name().into(),
                layer_metrics: self.cfg.layer_metrics,
                lab_every: self.cfg.lab_every,
                precise_samples: self.cfg.precise_samples,
            },
            producer: None,
            data: Some(DataInfo {
                name: self.data.name.clone(),
                source: self.data.source.clone(),
                train_images: self.data.train.len(),
                heldout_images: self.data.heldout.len(),
                channels: images.channels,
                height: images.height,
                width: images.width,
                classes: self.data.classes,
                channel_mean: self.data.channel_mean.clone(),
                channel_std: self.data.channel_std.clone(),
            }),
            layers,
            conventions: Conventions::bntop(self.net.blocks.first().map_or(1e-5, |b| b.epsilon())),
            recording: None,
        }
    }
}

/// Why the engine refuses PyTorch's `momentum=None` (a control for external producers).
const CUMULATIVE_REFUSED: &str =
    "the built-in engine keeps exponential running statistics; cumulative momentum is for PyTorch runs";

/// A block's parameters and gradients between backward and the optimizer update.
struct BlockBefore {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    grad_gamma: Vec<f32>,
    grad_beta: Vec<f32>,
    grad_bias: Vec<f32>,
}
