//! `bntop` / `bntop train`: the training options, the dashboard on a live run (the default), the
//! headless run, and where the run is recorded.
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use bntop::engine::model::Widths;
use bntop::engine::{self, EngineError, TrainConfig};
use bntop::protocol::{DataOrder, EndReason, OptimizerConfig, OptimizerKind, WeightDecayMode};
use bntop::session::{RecordDetail, Recorder};
use bntop::ui::keys::Context;
use bntop::ui::{self, ColorChoice, UiOptions};
use bntop::{headless, live};

use super::{exit_after_signal, load_data, Failure};

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Run without the dashboard: progress lines on stderr, or events as JSON lines with --json.
    #[arg(long)]
    pub headless: bool,
    /// Write every event to stdout as one JSON object per line (the records the dashboard receives).
    #[arg(long, requires = "headless")]
    pub json: bool,
    /// Stop after this many optimizer steps (default: run until stopped).
    #[arg(long)]
    pub steps: Option<u64>,
    /// `mnist` (the default: 10,000 real MNIST digits) or `digits` (1,797 8x8 digits, learnt in
    /// seconds): an embedded set; anything else is a path to an MNIST/Fashion-MNIST IDX directory
    /// or CIFAR-10 binary batches (`./mnist` for a directory named mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Channels of each conv -> BN -> ReLU block, comma-separated: the first block at stride 1,
    /// the rest at stride 2, 1 to 8 blocks of 1 to 512 (default: 16,32,64 for images up to 16x16,
    /// 16,32,64,128 for larger ones).
    #[arg(long)]
    pub widths: Option<Widths>,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    pub optimizer: OptimizerArg,
    #[arg(long, default_value_t = TrainConfig::default().optimizer.lr, allow_negative_numbers = true)]
    pub lr: f32,
    /// SGD momentum (ignored by Adam).
    #[arg(long, default_value_t = TrainConfig::default().optimizer.momentum, allow_negative_numbers = true)]
    pub momentum: f32,
    #[arg(long, default_value_t = TrainConfig::default().optimizer.weight_decay, allow_negative_numbers = true)]
    pub weight_decay: f32,
    /// Coupled (L2 added to the gradient) or decoupled (SGDW/AdamW) weight decay.
    #[arg(long, value_enum, default_value_t = DecayArg::Coupled)]
    pub weight_decay_mode: DecayArg,
    /// Initial BN momentum of every layer, PyTorch convention (running <- (1-m)·running + m·batch).
    #[arg(long, default_value_t = TrainConfig::default().bn_momentum, allow_negative_numbers = true)]
    pub bn_momentum: f32,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Held-out evaluation (batch and running statistics) every this many steps.
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    pub eval_every: u64,
    /// Held-out images per evaluation (at most the held-out split).
    #[arg(long, default_value_t = TrainConfig::default().eval_samples)]
    pub eval_samples: usize,
    /// PreciseBN statistics, a three-way held-out evaluation (batch / EMA / PreciseBN) and the
    /// phantom-gradient probe every this many steps (0: only on demand, keys P and b).
    #[arg(long, default_value_t = TrainConfig::default().lab_every)]
    pub lab_every: u64,
    /// Shuffled training images behind each PreciseBN estimate.
    #[arg(long, default_value_t = TrainConfig::default().precise_samples)]
    pub precise_samples: usize,
    /// Add a learnable bias before each BN (redundant: BN's mean subtraction cancels it).
    #[arg(long)]
    pub conv_bias: bool,
    /// The order training batches arrive in: shuffled (i.i.d.), class-sorted (one or two classes
    /// per batch), clips (consecutive frames are shifts of one image), drifting (contrast and
    /// brightness ramp slowly). The dashboard's `o` key changes it live.
    #[arg(long, value_parser = parse_data_order, default_value = "shuffled")]
    pub data_order: DataOrder,
    /// Record the session to this file (default: sessions/<UTC date-time>.jsonl).
    #[arg(long, conflicts_with = "no_record")]
    pub record: Option<PathBuf>,
    /// Do not record the session.
    #[arg(long)]
    pub no_record: bool,
    /// What the recording keeps: `thin` (25 snapshots per second of run time, per-channel arrays
    /// every 2 s), `full` (per-channel arrays in each of those snapshots), `every-step` (every
    /// step whole, what the live dashboard sees), or a number: arrays at most every that many
    /// seconds. Sizes per hour: README, Sessions.
    #[arg(long, default_value = "thin")]
    pub record_detail: RecordDetail,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

#[derive(Args, Clone)]
pub struct DashboardArgs {
    /// Dashboard frames per second, at most (1-60).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: u32,
    /// Colour depth; `auto` reads NO_COLOR, COLORTERM and TERM.
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
    /// Only ASCII glyphs (no Braille, box drawing or Greek letters).
    #[arg(long)]
    pub ascii: bool,
    /// Capture the mouse: a click in a chart puts the step cursor there (off by default, so the
    /// terminal's own selection works).
    #[arg(long)]
    pub mouse: bool,
    /// Compare with a recorded session (run B): its lines dotted and dimmed behind every chart,
    /// aligned by step, and its values in the layers table (key B). Read whole at start.
    #[arg(long, value_name = "B.jsonl")]
    pub compare: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum ColorArg {
    Auto,
    Truecolor,
    #[value(name = "256")]
    Ansi256,
    #[value(name = "16")]
    Ansi16,
    None,
}

impl DashboardArgs {
    /// Run B of `--compare`, read before the terminal is taken over (a bad file: exit 2).
    pub fn comparison(&self) -> Result<Option<ui::compare::Comparison>, Failure> {
        self.compare
            .as_deref()
            .map(super::session::load_comparison)
            .transpose()
    }

    pub fn options(&self) -> UiOptions {
        let choice = match self.color {
            ColorArg::Auto => ColorChoice::Auto,
            ColorArg::Truecolor => ColorChoice::TrueColor,
            ColorArg::Ansi256 => ColorChoice::Ansi256,
            ColorArg::Ansi16 => ColorChoice::Ansi16,
            ColorArg::None => ColorChoice::None,
        };
        UiOptions {
            readonly: false,
            fps: self.fps,
            color: choice.resolve(|name| std::env::var(name).ok()),
            ascii: self.ascii,
            mouse: self.mouse,
        }
    }
}

#[derive(ValueEnum, Clone, Copy)]
pub enum OptimizerArg {
    Sgd,
    Adam,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum DecayArg {
    Coupled,
    Decoupled,
}

impl TrainArgs {
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            optimizer: OptimizerConfig {
                kind: match self.optimizer {
                    OptimizerArg::Sgd => OptimizerKind::Sgd,
                    OptimizerArg::Adam => OptimizerKind::Adam,
                },
                name: None,
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
                weight_decay_mode: match self.weight_decay_mode {
                    DecayArg::Coupled => WeightDecayMode::Coupled,
                    DecayArg::Decoupled => WeightDecayMode::Decoupled,
                },
            },
            batch_size: self.batch,
            seed: self.seed,
            bn_momentum: self.bn_momentum,
            eval_every: self.eval_every,
            eval_samples: self.eval_samples,
            lab_every: self.lab_every,
            precise_samples: self.precise_samples,
            max_steps: self.steps,
            widths: self.widths.clone(),
            conv_bias: self.conv_bias,
            data_order: self.data_order,
            ..TrainConfig::default()
        }
    }
}

pub fn train(args: &TrainArgs) -> Result<(), Failure> {
    let config = args.config();
    config.validate().map_err(EngineError::Config)?;
    if args.headless && args.dashboard.compare.is_some() {
        return Err(Failure::BadInput(
            "--compare draws in the dashboard: not with --headless".into(),
        ));
    }
    let compare = args.dashboard.comparison()?;
    let data = load_data(args.data.as_deref())?;
    let mut recorder = recorder(args)?;
    let engine = engine::spawn(config, data)?;
    if !args.headless {
        return dashboard(engine, recorder, &args.dashboard, compare);
    }
    // A signal stops training the way `q` would: the run ends with its end record, recorded.
    let stopped_by = stop_on_signals(engine.controls.clone())?;
    let stdout = std::io::stdout();
    let mut json_out = std::io::BufWriter::new(stdout.lock());
    let json: Option<&mut dyn Write> = if args.json { Some(&mut json_out) } else { None };
    // The JSON reader going away (`| head`) or a full disk stops the run, recorded to its end.
    let quit = engine.controls.clone();
    let outcome = headless::consume(
        &engine.events,
        json,
        &mut recorder,
        &mut std::io::stderr(),
        0.97,
        &mut || {
            let _ = quit.send(bntop::protocol::Control::Quit);
        },
    );
    let flushed = json_out.flush();
    drop(engine.controls);
    engine
        .thread
        .join()
        .map_err(|_| Failure::Failed("the training thread panicked".into()))?;
    if let Some(error) = outcome.output_error.or(flushed.err()) {
        return Err(Failure::writing("the event stream", error));
    }
    let signal = stopped_by.load(std::sync::atomic::Ordering::SeqCst);
    if signal != 0 {
        return Err(Failure::Signal {
            signal,
            message: format!("stopped by signal {signal}; the run ended cleanly"),
        });
    }
    match outcome.end.map(|e| (e.reason, e.message)) {
        Some((EndReason::Completed | EndReason::Quit, _)) => Ok(()),
        Some((_, message)) => Err(Failure::Failed(
            message.unwrap_or_else(|| "training failed".into()),
        )),
        None => Err(Failure::Failed(
            "the training thread stopped without an end record".into(),
        )),
    }
}

pub fn dashboard(
    engine: engine::EngineHandle,
    recorder: Recorder,
    args: &DashboardArgs,
    compare: Option<ui::compare::Comparison>,
) -> Result<(), Failure> {
    let relay = live::spawn(engine, recorder).map_err(Failure::Failed)?;
    let (feed, commands) = (&relay.feed, &relay.commands);
    let result = ui::run_comparing(feed, commands, args.options(), Context::Live, compare);
    // Closing the command channel tells the relay to stop training and finish the recording.
    drop(relay.commands);
    drop(relay.feed);
    let end = relay
        .thread
        .join()
        .map_err(|_| Failure::Failed("the relay thread panicked".into()))?;
    let outcome = result.map_err(Failure::Failed)?;
    exit_after_signal(&outcome)?;
    match end.map(|e| (e.reason, e.message)).or(outcome.end) {
        Some((EndReason::Diverged | EndReason::Error, message)) => Err(Failure::Failed(
            message.unwrap_or_else(|| "training failed".into()),
        )),
        _ => Ok(()),
    }
}

/// The session file of a live run: `--record PATH`, none with `--no-record`, otherwise a new file
/// named by the date and time under sessions/.
pub fn recorder(args: &TrainArgs) -> Result<Recorder, Failure> {
    if args.no_record {
        return Ok(Recorder::off());
    }
    let policy = args.record_detail.policy();
    let recorder = match &args.record {
        Some(path) => Recorder::create(path, policy),
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Recorder::create_dated(std::path::Path::new("sessions"), now, policy)
        }
    };
    Ok(recorder?)
}

fn parse_data_order(name: &str) -> Result<DataOrder, String> {
    DataOrder::from_name(&name.replace('-', "_")).ok_or_else(|| {
        let names: Vec<&str> = DataOrder::ALL.iter().map(|o| o.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// On SIGINT, SIGTERM or SIGHUP, ask the run to quit (it then sends, and the recorder writes, its
/// end record). The signal number is stored in the returned cell (0: none).
fn stop_on_signals(
    controls: crossbeam_channel::Sender<bntop::protocol::Control>,
) -> Result<std::sync::Arc<std::sync::atomic::AtomicI32>, Failure> {
    let stopped_by = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let cell = std::sync::Arc::clone(&stopped_by);
    bntop::signals::on_stop_signals(move |signal| {
        cell.store(signal, std::sync::atomic::Ordering::SeqCst);
        let _ = controls.send(bntop::protocol::Control::Quit);
    })
    .map_err(Failure::Failed)?;
    Ok(stopped_by)
}
