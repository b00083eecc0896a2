//! A fixed, synthetic event stream with the shape of a real run (three BN layers, a layer switched
//! to eval mode, a momentum change, evaluations): for the dashboard's snapshot tests and the render
//! benchmark, where the output must not depend on timing or on training.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::protocol::{
    BnKind, BnMode, Control, ControlEvent, Conventions, DataInfo, DataOrder, EvalScore, Evaluation,
    Event, LayerInfo, LayerSnapshot, LayerSummary, OptimizerConfig, OptimizerKind, PopulationLayer,
    PopulationReport, ProbeLayer, ProbeReport, Producer, RunConfig, RunHeader, Snapshot,
    WeightDecayMode, FORMAT_NAME, FORMAT_VERSION_MAJOR, FORMAT_VERSION_MINOR,
};

const CHANNELS: [usize; 3] = [16, 32, 64];

pub fn header() -> RunHeader {
    RunHeader {
        format: FORMAT_NAME.into(),
        version_major: FORMAT_VERSION_MAJOR,
        version_minor: FORMAT_VERSION_MINOR,
        started_unix_ms: 0,
        producer: None,
        config: RunConfig {
            optimizer: OptimizerConfig {
                kind: OptimizerKind::Sgd,
                name: None,
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 5e-4,
                weight_decay_mode: WeightDecayMode::Coupled,
            },
            batch_size: 64,
            seed: Some(1),
            bn_momentum: 0.1,
            eval_every: 50,
            eval_samples: 360,
            max_steps: None,
            conv_bias: false,
            data_order: "shuffled".into(),
            layer_metrics: true,
            lab_every: 100,
            precise_samples: 1024,
        },
        data: Some(DataInfo {
            name: "digits".into(),
            source: "synthetic".into(),
            train_images: 1437,
            heldout_images: 360,
            channels: 1,
            height: 8,
            width: 8,
            classes: 10,
            channel_mean: vec![0.3],
            channel_std: vec![0.4],
        }),
        layers: CHANNELS
            .iter()
            .enumerate()
            .map(|(i, &c)| LayerInfo {
                name: format!("block{}", i + 1),
                kind: BnKind::Bn2d,
                sync: false,
                feeds_from: None,
                in_channels: if i == 0 { 1 } else { CHANNELS[i - 1] },
                channels: c,
                kernel: 3,
                stride: if i == 0 { 1 } else { 2 },
                padding: 1,
                conv_bias: false,
                in_height: 8 >> i.saturating_sub(1),
                in_width: 8 >> i.saturating_sub(1),
                out_height: 8 >> i,
                out_width: 8 >> i,
            })
            .collect(),
        conventions: Conventions::bntop(1e-5),
        recording: None,
    }
}

/// The snapshot of a synthetic step: a loss falling with `progress` (0..1) plus `noise` (0..1).
fn snapshot(step: u64, progress: f32, noise: f32, layers: Vec<LayerSnapshot>) -> Snapshot {
    let loss = 2.3 * (-6.0 * progress).exp() + 0.02 + 0.05 * noise;
    Snapshot {
        step,
        epoch: step / 23,
        time_s: step as f64 / 150.0,
        loss,
        batch_accuracy: (1.0 - loss / 2.5).clamp(0.0, 1.0),
        lr: 0.05,
        partial: false,
        layers,
    }
}

/// The run's events up to `steps`: the header, one snapshot per step, evaluations every 50
/// steps, block2 switched to EVAL at 40% of the run and its momentum lowered at 70%.
pub fn run(steps: u64, seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut events = vec![Event::Header(Box::new(header()))];
    let mut modes = [BnMode::Train; 3];
    let mut momenta = [0.1f32; 3];
    let mut running: Vec<Vec<(f32, f32)>> = CHANNELS.iter().map(|&c| vec![(0.0, 1.0); c]).collect();
    let eval_step = steps * 2 / 5;
    let momentum_step = steps * 7 / 10;
    for step in 1..=steps {
        if step == eval_step {
            modes[1] = BnMode::Eval;
            events.push(control(
                step,
                Control::SetMode {
                    layer: Some(1),
                    mode: BnMode::Eval,
                },
            ));
        }
        if step == momentum_step {
            momenta[1] = 0.01;
            events.push(control(
                step,
                Control::SetMomentum {
                    layer: Some(1),
                    momentum: 0.01,
                },
            ));
        }
        let progress = step as f32 / steps.max(1) as f32;
        let layers = (0..3)
            .map(|l| {
                layer(
                    &mut rng,
                    l,
                    step,
                    progress,
                    modes[l],
                    momenta[l],
                    &mut running[l],
                )
            })
            .collect();
        events.push(Event::Snapshot(snapshot(step, progress, rng.gen(), layers)));
        // The lab every 100 steps: PreciseBN (its evaluation is three-way) and the probe.
        let lab = step % 100 == 0;
        if lab {
            events.push(Event::Population(population(step, modes)));
            events.push(Event::Probe(probe(step, modes)));
        }
        if step % 50 == 0 {
            let acc = 0.99 - 0.8 * (-6.0 * progress).exp();
            let eval_penalty = if step >= eval_step { 0.03 } else { 0.0 };
            events.push(Event::Evaluation(Evaluation {
                precise_stats: lab.then_some(EvalScore {
                    loss: 1.0 - acc + 0.01,
                    accuracy: acc - 0.01,
                }),
                step,
                samples: 360,
                batch_stats: EvalScore {
                    loss: 1.0 - acc,
                    accuracy: acc,
                },
                running_stats: EvalScore {
                    loss: 1.0 - acc + eval_penalty,
                    accuracy: acc - eval_penalty,
                },
            }));
        }
    }
    events
}

/// Shuffled batches: the variance ratio is 1 - 1/n_eff with n_eff shrinking in deeper layers.
fn population(step: u64, modes: [BnMode; 3]) -> PopulationReport {
    let layers = (0..3)
        .map(|l| {
            let channels = CHANNELS[l];
            let n_eff = 4000.0 / 8f64.powi(l as i32);
            let eval = modes[l] == BnMode::Eval;
            PopulationLayer {
                mean: vec![0.0; channels],
                var: vec![1.0; channels],
                var_ratio: 1.0 - 1.2 / n_eff,
                n_eff,
                predicted_ratio: 1.0 - 1.0 / n_eff,
                running_var_ratio: if eval { 0.8 } else { 1.01 },
            }
        })
        .collect();
    PopulationReport {
        step,
        samples: 1024,
        order: DataOrder::Shuffled,
        order_batches: 22,
        layers,
    }
}

/// Train-mode bias gradients cancel to rounding; stop-gradient and eval ones do not.
fn probe(step: u64, modes: [BnMode; 3]) -> ProbeReport {
    let layers = (0..3)
        .map(|l| {
            let eval = if modes[l] == BnMode::Eval { 0.03 } else { 0.01 };
            ProbeLayer {
                train: 2e-9,
                train_cancellation: 2e-7,
                stop_gradient: 0.02,
                stop_gradient_predicted: 0.02,
                eval,
                eval_predicted: eval,
            }
        })
        .collect();
    ProbeReport {
        step,
        batch: 64,
        layers,
    }
}

fn control(step: u64, control: Control) -> Event {
    Event::Control(ControlEvent {
        step,
        control,
        rejected: None,
    })
}

fn layer(
    rng: &mut ChaCha8Rng,
    l: usize,
    step: u64,
    progress: f32,
    mode: BnMode,
    momentum: f32,
    running: &mut [(f32, f32)],
) -> LayerSnapshot {
    let channels = running.len();
    let noise = 0.15 / (l as f32 + 1.0);
    let mut s = layer_template(channels, progress, mode, momentum);
    let mut sum_d2 = 0.0f32;
    for (c, run) in running.iter_mut().enumerate() {
        // Channel means wander slowly (learning); eval mode makes them run away (phantom gradient).
        let phase = c as f32 * 0.7 + l as f32;
        let mut center = 0.5 * (phase + 3.0 * progress).sin();
        if mode == BnMode::Eval {
            center += 2.0 * progress;
        }
        let mean = center + noise * (rng.gen::<f32>() - 0.5);
        let var =
            (1.0 + 0.3 * (phase + step as f32 * 0.01).cos()) * (1.0 + noise * rng.gen::<f32>());
        let (rm, rv) = *run;
        let r = ((var + 1e-5) / (rv + 1e-5)).sqrt();
        let d = (mean - rm) / (rv + 1e-5).sqrt();
        let big_d = (d * d + (r - 1.0) * (r - 1.0)).sqrt();
        *run = (
            (1.0 - momentum) * rm + momentum * mean,
            (1.0 - momentum) * rv + momentum * var,
        );
        s.batch_mean.push(mean);
        s.batch_var.push(var);
        s.running_mean_pre.push(rm);
        s.running_var_pre.push(rv);
        s.running_mean_post.push(run.0);
        s.running_var_post.push(run.1);
        s.r.push(r);
        s.d.push(d);
        s.drift.push(big_d);
        sum_d2 += big_d * big_d;
        let sm = &mut s.summary;
        sm.r_min = sm.r_min.min(r);
        sm.r_max = sm.r_max.max(r);
        sm.r_mean += r / channels as f32;
        sm.d_mean_abs += d.abs() / channels as f32;
        sm.d_max_abs = sm.d_max_abs.max(d.abs());
    }
    s.summary.drift = (sum_d2 / channels as f32).sqrt();
    s
}

/// A layer's snapshot with its steady readings filled in and its per-channel batch and running
/// statistics empty, for `layer` to fill channel by channel.
fn layer_template(channels: usize, progress: f32, mode: BnMode, momentum: f32) -> LayerSnapshot {
    LayerSnapshot {
        cumulative: false,
        rank_drift: Vec::new(),
        mode,
        momentum,
        batch_mean: Vec::with_capacity(channels),
        batch_var: Vec::with_capacity(channels),
        running_mean_pre: Vec::with_capacity(channels),
        running_var_pre: Vec::with_capacity(channels),
        running_mean_post: Vec::with_capacity(channels),
        running_var_post: Vec::with_capacity(channels),
        r: Vec::with_capacity(channels),
        d: Vec::with_capacity(channels),
        drift: Vec::with_capacity(channels),
        out_mean: vec![0.0; channels],
        out_var: vec![1.0; channels],
        relu_mean: vec![0.4; channels],
        relu_var: vec![0.34; channels],
        relu_active: (0..channels)
            .map(|c| 0.3 + 0.4 * c as f32 / channels as f32)
            .collect(),
        gamma: (0..channels).map(|c| 1.0 + 0.01 * c as f32).collect(),
        beta: (0..channels).map(|c| 0.01 * c as f32 - 0.1).collect(),
        grad_gamma: vec![1e-3; channels],
        grad_beta: vec![-1e-3; channels],
        weight_norm: vec![1.0 + progress; channels],
        angular_update: vec![0.01 * (1.0 - 0.5 * progress); channels],
        weight_grad_cos: vec![if mode == BnMode::Eval { 0.05 } else { 1e-6 }; channels],
        // With γ ≈ 1, ∂L/∂γ = 1e-3 and σ²_B ≈ 1, BN's ε residual predicts a cos of about 1e-6.
        weight_grad_norm: vec![0.01 / (1.0 + progress); channels],
        bias_grad: None,
        ema: None,
        summary: LayerSummary {
            drift: 0.0,
            r_mean: 0.0,
            r_min: f32::INFINITY,
            r_max: f32::NEG_INFINITY,
            d_mean_abs: 0.0,
            d_max_abs: 0.0,
            weight_norm: (1.0 + progress) * (channels as f32).sqrt(),
            angular_update: 0.01 * (1.0 - 0.5 * progress),
            effective_lr: 0.05 / (1.0 + progress).powi(2),
            max_abs_cos: if mode == BnMode::Eval { 0.05 } else { 1e-6 },
            relu_active: 0.5,
            // A steady norm: -sin(θ/2).
            radial_fraction: -(0.005 * (1.0 - 0.5 * progress)).sin(),
            noise_floor: f32::NAN,
        },
    }
}

/// The BN layers of torchvision's ResNet-18 (20 layers, 4800 channels), named as
/// `model.named_modules()` names them.
pub fn resnet18_layers() -> Vec<LayerInfo> {
    resnet_layers(&[2, 2, 2, 2], false)
}

/// The BN layers of torchvision's ResNet-50 (53 layers, 26,560 channels, up to 2048 per layer).
pub fn resnet50_layers() -> Vec<LayerInfo> {
    resnet_layers(&[3, 4, 6, 3], true)
}

fn resnet_layers(blocks: &[usize; 4], bottleneck: bool) -> Vec<LayerInfo> {
    let mut layers = vec![bn("bn1", 64, BnKind::Bn2d)];
    for (stage, &n) in blocks.iter().enumerate() {
        let width = 64 << stage;
        let out = if bottleneck { 4 * width } else { width };
        for block in 0..n {
            let prefix = format!("layer{}.{block}", stage + 1);
            layers.push(bn(&format!("{prefix}.bn1"), width, BnKind::Bn2d));
            layers.push(bn(&format!("{prefix}.bn2"), width, BnKind::Bn2d));
            if bottleneck {
                layers.push(bn(&format!("{prefix}.bn3"), out, BnKind::Bn2d));
            }
            // torchvision's first block of a stage projects the shortcut when the shape changes.
            if block == 0 && (bottleneck || stage > 0) {
                layers.push(bn(&format!("{prefix}.downsample.1"), out, BnKind::Bn2d));
            }
        }
    }
    layers
}

/// A header layer known only by its name, width and kind (what an external producer sends).
pub fn bn(name: &str, channels: usize, kind: BnKind) -> LayerInfo {
    LayerInfo {
        name: name.into(),
        in_channels: 0,
        channels,
        kind,
        sync: false,
        feeds_from: None,
        kernel: 0,
        stride: 0,
        padding: 0,
        conv_bias: false,
        in_height: 0,
        in_width: 0,
        out_height: 0,
        out_width: 0,
    }
}

/// A header as bntop-torch would write it: the producer, no data set, `layers`.
pub fn producer_header(layers: Vec<LayerInfo>, world_size: u32) -> RunHeader {
    let mut h = header();
    h.producer = Some(Producer {
        name: "bntop-torch".into(),
        version: "0.1.0".into(),
        framework: "torch 2.5.1".into(),
        model: "ResNet".into(),
        device: "cpu".into(),
        world_size,
        controls: Some(
            [
                "set_mode",
                "set_momentum",
                "set_momentum_cumulative",
                "set_lr",
                "pause",
                "resume",
                "step",
                "reset_running_stats",
                "quit",
            ]
            .map(String::from)
            .to_vec(),
        ),
    });
    h.data = None;
    h.config.seed = None;
    h.config.data_order = String::new();
    h.layers = layers;
    h
}

/// The synthetic stream for any header: one snapshot per step (every per-channel array; with
/// `rank_drift` when the producer's world size is above 1), an evaluation every 50 steps, and
/// layer 2 switched to EVAL at 40% of the run so it drifts away. A BN momentum of NaN in the
/// header makes every layer's momentum PyTorch's None (1/n, `cumulative`). An iterator, so a
/// long run of a wide network is never held in memory.
pub struct NetworkRun {
    header: Option<RunHeader>,
    rng: ChaCha8Rng,
    channels: Vec<usize>,
    running: Vec<Vec<(f32, f32)>>,
    world_size: u32,
    cumulative: bool,
    step: u64,
    steps: u64,
    pending: Vec<Event>,
}

impl NetworkRun {
    pub fn new(header: RunHeader, steps: u64, seed: u64) -> NetworkRun {
        let channels: Vec<usize> = header.layers.iter().map(|l| l.channels).collect();
        NetworkRun {
            rng: ChaCha8Rng::seed_from_u64(seed),
            running: channels.iter().map(|&c| vec![(0.0, 1.0); c]).collect(),
            world_size: header.producer.as_ref().map_or(1, |p| p.world_size),
            cumulative: header.config.bn_momentum.is_nan(),
            channels,
            header: Some(header),
            step: 0,
            steps,
            pending: Vec::new(),
        }
    }

    fn next_step(&mut self) {
        self.step += 1;
        let step = self.step;
        let progress = step as f32 / self.steps.max(1) as f32;
        let eval_step = self.steps * 2 / 5;
        if step == eval_step && self.channels.len() > 2 {
            self.pending.push(control(
                step - 1,
                Control::SetMode {
                    layer: Some(2),
                    mode: BnMode::Eval,
                },
            ));
        }
        let momentum = if self.cumulative {
            1.0 / step as f32
        } else {
            0.1
        };
        let mut layers = Vec::with_capacity(self.channels.len());
        for (l, running) in self.running.iter_mut().enumerate() {
            let mode = if l == 2 && step >= eval_step {
                BnMode::Eval
            } else {
                BnMode::Train
            };
            // Statistics that barely move (layer() ties their drift to `progress`) and the
            // default network's three noise levels: a healthy layer's D is near its D0.
            let settled = 0.3 + 0.02 * progress;
            let mut s = layer(&mut self.rng, l % 3, step, settled, mode, momentum, running);
            s.cumulative = self.cumulative;
            if self.world_size > 1 {
                // Each rank's batch sits a little further from the global one than the last.
                let d = s.summary.drift;
                s.rank_drift = (0..self.world_size)
                    .map(|k| d * (0.8 + 0.15 * k as f32) + 0.01 * self.rng.gen::<f32>())
                    .collect();
            }
            layers.push(s);
        }
        let noise = self.rng.gen();
        self.pending
            .push(Event::Snapshot(snapshot(step, progress, noise, layers)));
        if step.is_multiple_of(50) {
            let acc = 0.99 - 0.8 * (-6.0 * progress).exp();
            self.pending.push(Event::Evaluation(Evaluation {
                precise_stats: None,
                step,
                samples: 360,
                batch_stats: EvalScore {
                    loss: 1.0 - acc,
                    accuracy: acc,
                },
                running_stats: EvalScore {
                    loss: 1.0 - acc + 0.02,
                    accuracy: acc - 0.02,
                },
            }));
        }
        self.pending.reverse();
    }
}

impl Iterator for NetworkRun {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if let Some(h) = self.header.take() {
            return Some(Event::Header(Box::new(h)));
        }
        if self.pending.is_empty() && self.step < self.steps {
            self.next_step();
        }
        self.pending.pop()
    }
}
