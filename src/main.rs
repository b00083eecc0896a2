//! The `bntop` command line: subcommands, argument checks and exit codes
//! (0 success, 1 the run failed or diverged, 2 bad arguments or data).
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use bntop::engine::{self, data, TrainConfig};
use bntop::protocol::{EndReason, OptimizerConfig, OptimizerKind, WeightDecayMode};
use bntop::session::{self, Recorder};
use bntop::ui::keys::Context;
use bntop::ui::{self, ColorChoice, UiOptions};
use bntop::{bench, headless, live, remote};

#[derive(Parser)]
#[command(
    name = "bntop",
    version,
    about = "top for BatchNorm: watch what BatchNorm does inside a CNN while it trains"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: `train` with these options.
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train a conv -> BN -> ReLU network and stream every BatchNorm statistic.
    Train(TrainArgs),
    /// Measure training speed with per-layer metrics on and off (use a release build).
    Bench(BenchArgs),
    /// Measure the dashboard: render time, bytes per second to the terminal, history memory.
    BenchDashboard(BenchDashboardArgs),
    /// Replay a recorded session in the dashboard (--follow: one that is still being written).
    Replay(ReplayArgs),
    /// Write a session's per-step, per-layer scalars as CSV.
    Export(ExportArgs),
    /// Measure session reading: first frame and seeks on a generated 500 MB file.
    BenchSession(BenchSessionArgs),
    /// Train headless (recording as usual) and serve the run to viewers (`bntop attach`).
    Serve(ServeArgs),
    /// Open the dashboard on a running `bntop serve`: a socket path (default: yours),
    /// tcp://HOST:PORT, or ssh://[user@]host[:port][/socket].
    Attach(AttachArgs),
    /// Join standard input and output to the local server's socket (what attach runs over ssh).
    Bridge(BridgeArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Unix socket to listen on (default: $XDG_RUNTIME_DIR/bntop.sock or /tmp/bntop-UID/bntop.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Also listen on TCP at this address (e.g. 127.0.0.1:7777); viewers need the token.
    #[arg(long)]
    tcp: Option<std::net::SocketAddr>,
    /// The token TCP viewers must present (default: a random one, printed at start).
    #[arg(long, env = "BNTOP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Allow --tcp on an address other than loopback.
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Args)]
struct AttachArgs {
    /// Socket path, tcp://HOST:PORT or ssh://[user@]host[:port][/socket] (default: your socket).
    target: Option<String>,
    /// Token for tcp:// targets.
    #[arg(long, env = "BNTOP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Watch only: controls are not sent.
    #[arg(long)]
    readonly: bool,
    #[command(flatten)]
    dashboard: DashboardArgs,
}

#[derive(Args)]
struct BridgeArgs {
    /// The server's socket (default: your socket).
    socket: Option<PathBuf>,
}

#[derive(Args)]
struct ReplayArgs {
    /// A session file (JSON lines, see sessions/FORMAT.md).
    file: PathBuf,
    /// Keep reading as another bntop writes the file.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    dashboard: DashboardArgs,
}

#[derive(Args)]
struct ExportArgs {
    /// A session file.
    file: PathBuf,
    /// CSV output (the only format so far; the flag keeps room for others).
    #[arg(long, required = true)]
    csv: bool,
    /// Only this layer: its name (block2) or 0-based index.
    #[arg(long)]
    layer: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct BenchSessionArgs {
    /// Size of the generated session file, in MB.
    #[arg(long, default_value_t = 500)]
    megabytes: u64,
    #[arg(long, default_value_t = 100)]
    seeks: usize,
}

#[derive(Args)]
struct BenchDashboardArgs {
    /// Steps of history before the render timing starts.
    #[arg(long, default_value_t = 10_000)]
    history: u64,
    /// Frames timed.
    #[arg(long, default_value_t = 300)]
    frames: usize,
    /// Seconds of live training before the bandwidth measurement starts.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Seconds the bandwidth is measured over.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
}

#[derive(Args, Clone)]
struct TrainArgs {
    /// Run without the dashboard: progress lines on stderr, or events as JSON lines with --json.
    #[arg(long)]
    headless: bool,
    /// Write every event to stdout as one JSON object per line (the records the dashboard receives).
    #[arg(long, requires = "headless")]
    json: bool,
    /// Stop after this many optimizer steps (default: run until stopped).
    #[arg(long)]
    steps: Option<u64>,
    /// MNIST/Fashion-MNIST IDX directory or CIFAR-10 binary batches (default: the embedded digits).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    batch: usize,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    optimizer: OptimizerArg,
    #[arg(long, default_value_t = TrainConfig::default().optimizer.lr, allow_negative_numbers = true)]
    lr: f32,
    /// SGD momentum (ignored by Adam).
    #[arg(long, default_value_t = TrainConfig::default().optimizer.momentum, allow_negative_numbers = true)]
    momentum: f32,
    #[arg(long, default_value_t = TrainConfig::default().optimizer.weight_decay, allow_negative_numbers = true)]
    weight_decay: f32,
    /// Coupled (L2 added to the gradient) or decoupled (SGDW/AdamW) weight decay.
    #[arg(long, value_enum, default_value_t = DecayArg::Coupled)]
    weight_decay_mode: DecayArg,
    /// Initial BN momentum of every layer, PyTorch convention (running <- (1-m)·running + m·batch).
    #[arg(long, default_value_t = TrainConfig::default().bn_momentum, allow_negative_numbers = true)]
    bn_momentum: f32,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    seed: u64,
    /// Held-out evaluation (batch and running statistics) every this many steps.
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    eval_every: u64,
    /// Held-out images per evaluation (at most the held-out split).
    #[arg(long, default_value_t = TrainConfig::default().eval_samples)]
    eval_samples: usize,
    /// Add a learnable bias before each BN (redundant: BN's mean subtraction cancels it).
    #[arg(long)]
    conv_bias: bool,
    /// Record the session to this file (default: sessions/<UTC date-time>.jsonl).
    #[arg(long, conflicts_with = "no_record")]
    record: Option<PathBuf>,
    /// Do not record the session.
    #[arg(long)]
    no_record: bool,
    #[command(flatten)]
    dashboard: DashboardArgs,
}

#[derive(Args, Clone)]
struct DashboardArgs {
    /// Dashboard frames per second, at most (1-60).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    fps: u32,
    /// Colour depth; `auto` reads NO_COLOR, COLORTERM and TERM.
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    color: ColorArg,
    /// Only ASCII glyphs (no Braille, box drawing or Greek letters).
    #[arg(long)]
    ascii: bool,
    /// Capture the mouse (off by default, so the terminal's own selection works).
    #[arg(long)]
    mouse: bool,
}

#[derive(ValueEnum, Clone, Copy)]
enum ColorArg {
    Auto,
    Truecolor,
    #[value(name = "256")]
    Ansi256,
    #[value(name = "16")]
    Ansi16,
    None,
}

impl DashboardArgs {
    fn options(&self) -> UiOptions {
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

#[derive(Args)]
struct BenchArgs {
    /// Timed steps per measurement (after the warm-up).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    #[arg(long, default_value_t = 30)]
    warmup: u64,
    /// Rounds per configuration; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, value_delimiter = ',', default_values_t = [32, 64, 128])]
    batches: Vec<usize>,
}

#[derive(ValueEnum, Clone, Copy)]
enum OptimizerArg {
    Sgd,
    Adam,
}

#[derive(ValueEnum, Clone, Copy)]
enum DecayArg {
    Coupled,
    Decoupled,
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            optimizer: OptimizerConfig {
                kind: match self.optimizer {
                    OptimizerArg::Sgd => OptimizerKind::Sgd,
                    OptimizerArg::Adam => OptimizerKind::Adam,
                },
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
            max_steps: self.steps,
            conv_bias: self.conv_bias,
            ..TrainConfig::default()
        }
    }
}

/// A failure with its exit code.
struct Failure(u8, String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Train(args)) => train(&args),
        Some(Command::Bench(args)) => run_bench(&args),
        Some(Command::BenchDashboard(args)) => run_bench_dashboard(&args),
        Some(Command::Replay(args)) => replay(&args),
        Some(Command::Export(args)) => export(&args),
        Some(Command::BenchSession(args)) => run_bench_session(&args),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Attach(args)) => attach(&args),
        Some(Command::Bridge(args)) => {
            let socket = args
                .socket
                .clone()
                .unwrap_or_else(remote::wire::default_socket);
            remote::bridge::run(&socket).map_err(|e| Failure(2, e))
        }
        None => train(&cli.train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("bntop: {message}");
            ExitCode::from(code)
        }
    }
}

fn load_data(path: Option<&std::path::Path>) -> Result<data::DataSet, Failure> {
    match path {
        Some(path) => data::load_path(path),
        None => data::embedded_digits(),
    }
    .map_err(|e| Failure(2, e.to_string()))
}

fn train(args: &TrainArgs) -> Result<(), Failure> {
    let config = args.config();
    config.validate().map_err(|e| Failure(2, e))?;
    let data = load_data(args.data.as_deref())?;
    let mut recorder = recorder(args)?;
    let engine = engine::spawn(config, data).map_err(|e| Failure(2, e))?;
    if !args.headless {
        return dashboard(engine, recorder, &args.dashboard);
    }
    let stdout = std::io::stdout();
    let mut json_out = std::io::BufWriter::new(stdout.lock());
    let json: Option<&mut dyn Write> = if args.json { Some(&mut json_out) } else { None };
    let outcome = headless::consume(
        &engine.events,
        json,
        &mut recorder,
        &mut std::io::stderr(),
        0.97,
    )
    .map_err(|e| Failure(1, format!("cannot write output: {e}")))?;
    json_out
        .flush()
        .map_err(|e| Failure(1, format!("cannot write output: {e}")))?;
    drop(engine.controls);
    engine
        .thread
        .join()
        .map_err(|_| Failure(1, "the training thread panicked".into()))?;
    match outcome.end.map(|e| (e.reason, e.message)) {
        Some((EndReason::Completed | EndReason::Quit, _)) => Ok(()),
        Some((_, message)) => Err(Failure(
            1,
            message.unwrap_or_else(|| "training failed".into()),
        )),
        None => Err(Failure(
            1,
            "the training thread stopped without an end record".into(),
        )),
    }
}

fn dashboard(
    engine: engine::EngineHandle,
    recorder: Recorder,
    args: &DashboardArgs,
) -> Result<(), Failure> {
    let relay = live::spawn(engine, recorder).map_err(|e| Failure(1, e))?;
    let result = ui::run(&relay.feed, &relay.commands, args.options(), Context::Live);
    // Closing the command channel tells the relay to stop training and finish the recording.
    drop(relay.commands);
    drop(relay.feed);
    let end = relay
        .thread
        .join()
        .map_err(|_| Failure(1, "the relay thread panicked".into()))?;
    let outcome = result.map_err(|e| Failure(1, e))?;
    if let Some(signal) = outcome.signal {
        // The shell convention for "terminated by signal n".
        return Err(Failure(
            128 + signal as u8,
            format!("stopped by signal {signal}; terminal restored"),
        ));
    }
    match end.map(|e| (e.reason, e.message)).or(outcome.end) {
        Some((EndReason::Diverged | EndReason::Error, message)) => Err(Failure(
            1,
            message.unwrap_or_else(|| "training failed".into()),
        )),
        _ => Ok(()),
    }
}

/// The session file of a live run: `--record PATH`, none with `--no-record`, otherwise a new file
/// named by the date and time under sessions/.
fn recorder(args: &TrainArgs) -> Result<Recorder, Failure> {
    if args.no_record {
        return Ok(Recorder::off());
    }
    let path = match &args.record {
        Some(path) => path.clone(),
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            session::default_path(std::path::Path::new("sessions"), now)
        }
    };
    Recorder::create(&path).map_err(|e| Failure(2, e))
}

fn replay(args: &ReplayArgs) -> Result<(), Failure> {
    let replay = session::replay::spawn(&args.file, args.follow).map_err(|e| Failure(2, e))?;
    let result = ui::run(
        &replay.feed,
        &replay.commands,
        args.dashboard.options(),
        Context::Replay,
    );
    drop(replay.commands);
    drop(replay.feed);
    let skipped = replay
        .thread
        .join()
        .map_err(|_| Failure(1, "the replay thread panicked".into()))?;
    if skipped.lines > 0 {
        let last = skipped.last_problem.unwrap_or_default();
        eprintln!(
            "bntop: {}: skipped {} bad lines (last: {last})",
            args.file.display(),
            skipped.lines
        );
    }
    let outcome = result.map_err(|e| Failure(1, e))?;
    match outcome.signal {
        Some(signal) => Err(Failure(
            128 + signal as u8,
            format!("stopped by signal {signal}; terminal restored"),
        )),
        None => Ok(()),
    }
}

fn export(args: &ExportArgs) -> Result<(), Failure> {
    let mut reader = session::reader::Reader::open(&args.file).map_err(|e| Failure(2, e))?;
    let stdout = std::io::stdout();
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Failure(2, format!("cannot create {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(stdout.lock())),
    };
    let stats = session::export::write_csv(&mut reader, args.layer.as_deref(), &mut out)
        .map_err(|e| Failure(2, e))?;
    out.flush()
        .map_err(|e| Failure(1, format!("cannot write the CSV: {e}")))?;
    if stats.skipped_lines > 0 {
        eprintln!(
            "bntop: {}: skipped {} bad lines",
            args.file.display(),
            stats.skipped_lines
        );
    }
    Ok(())
}

fn run_bench_session(args: &BenchSessionArgs) -> Result<(), Failure> {
    if args.megabytes == 0 || args.seeks == 0 {
        return Err(Failure(
            2,
            "--megabytes and --seeks must be positive".into(),
        ));
    }
    let plan = bench::session::Plan {
        target_bytes: args.megabytes * 1_000_000,
        seeks: args.seeks,
    };
    bench::session::run(&plan, &mut std::io::stdout()).map_err(|e| Failure(1, e))
}

fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let config = args.train.config();
    config.validate().map_err(|e| Failure(2, e))?;
    let data = load_data(args.train.data.as_deref())?;
    let recorder = recorder(&args.train)?;
    let recording = recorder.status().path;
    let engine = engine::spawn(config, data).map_err(|e| Failure(2, e))?;
    let hub = remote::hub::spawn(engine, recorder).map_err(|e| Failure(1, e))?;
    let options = remote::server::ServeOptions {
        socket: args
            .socket
            .clone()
            .unwrap_or_else(remote::wire::default_socket),
        tcp: args.tcp,
        token: args.token.clone(),
        allow_remote: args.allow_remote,
    };
    let server = match remote::server::start(options, hub.inbox.clone()) {
        Ok(server) => server,
        Err(e) => {
            let _ = hub.inbox.send(remote::hub::HubMessage::Stop);
            let _ = hub.thread.join();
            return Err(Failure(2, e));
        }
    };
    eprintln!(
        "bntop serve: training; attach with: bntop attach {}",
        server.socket.display()
    );
    if let (Some(addr), Some(token)) = (server.tcp, &server.token) {
        eprintln!("bntop serve: also on tcp://{addr} (token {token})");
    }
    if let Some(path) = recording {
        eprintln!("bntop serve: recording to {path}");
    }
    // SIGINT, SIGTERM and SIGHUP stop training; the hub records up to the end record.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| Failure(1, format!("cannot install signal handlers: {e}")))?;
    let inbox = hub.inbox.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            eprintln!("bntop serve: signal {signal}: stopping training");
            let _ = inbox.send(remote::hub::HubMessage::Stop);
        }
    });
    let end = hub
        .thread
        .join()
        .map_err(|_| Failure(1, "the hub thread panicked".into()))?;
    drop(server);
    match end.map(|e| (e.reason, e.step, e.message)) {
        Some((EndReason::Completed | EndReason::Quit, step, _)) => {
            eprintln!("bntop serve: run ended at step {step}");
            Ok(())
        }
        Some((_, _, message)) => Err(Failure(
            1,
            message.unwrap_or_else(|| "training failed".into()),
        )),
        None => Err(Failure(1, "the run stopped without an end record".into())),
    }
}

fn attach(args: &AttachArgs) -> Result<(), Failure> {
    let target =
        remote::client::Target::parse(args.target.as_deref()).map_err(|e| Failure(2, e))?;
    let connection = remote::client::connect(&target, args.token.clone(), args.readonly)
        .map_err(|e| Failure(2, e))?;
    let mut options = args.dashboard.options();
    options.readonly = args.readonly;
    let result = ui::run(
        &connection.feed,
        &connection.commands,
        options,
        Context::Live,
    );
    drop(connection.commands);
    if let Some(mut child) = connection.child {
        let _ = child.kill();
        let _ = child.wait();
    }
    let outcome = result.map_err(|e| Failure(1, e))?;
    match outcome.signal {
        Some(signal) => Err(Failure(
            128 + signal as u8,
            format!("stopped by signal {signal}; terminal restored"),
        )),
        None => Ok(()),
    }
}

fn run_bench(args: &BenchArgs) -> Result<(), Failure> {
    if args.steps == 0 || args.rounds == 0 || args.batches.is_empty() {
        return Err(Failure(
            2,
            "--steps, --rounds and --batches must be non-empty and positive".into(),
        ));
    }
    let data = load_data(None)?;
    let plan = bench::training::Plan {
        steps: args.steps,
        warmup: args.warmup,
        rounds: args.rounds,
        batches: args.batches.clone(),
    };
    bench::training::run(&plan, &data, &mut std::io::stdout()).map_err(|e| Failure(1, e))
}

fn run_bench_dashboard(args: &BenchDashboardArgs) -> Result<(), Failure> {
    let valid = |x: f64| x.is_finite() && x >= 0.0;
    if args.frames == 0
        || args.history == 0
        || !valid(args.warmup)
        || !(valid(args.seconds) && args.seconds > 0.0)
    {
        return Err(Failure(
            2,
            "--frames, --history and --seconds must be positive, --warmup >= 0".into(),
        ));
    }
    let data = load_data(None)?;
    let plan = bench::dashboard::Plan {
        history: args.history,
        frames: args.frames,
        warmup_s: args.warmup,
        seconds: args.seconds,
    };
    bench::dashboard::run(&plan, &data, &mut std::io::stdout()).map_err(|e| Failure(1, e))
}
