//! The `bntop` command line: subcommands, argument checks and exit codes
//! (0 success, 1 the run failed or diverged, 2 bad arguments or data).
mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bntop::remote;
use cmd::bench::{run_bench, run_bench_dashboard, run_bench_session};
use cmd::bench::{BenchArgs, BenchDashboardArgs, BenchSessionArgs};
use cmd::plot::{plot, PlotArgs};
use cmd::remote::{attach, serve, AttachArgs, BridgeArgs, ServeArgs};
use cmd::session::{export, replay, ExportArgs, ReplayArgs};
use cmd::train::{train, TrainArgs};
use cmd::Failure;

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
    /// Draw a session's main charts (loss, held-out accuracy, D with D0, θ with θ*, controls)
    /// as an SVG or PNG.
    Plot(PlotArgs),
    /// Measure session reading: first frame and seeks on a generated 500 MB file.
    BenchSession(BenchSessionArgs),
    /// Train headless (recording as usual) and serve the run to viewers (`bntop attach`);
    /// `--source -`: serve the run an external producer writes to standard input instead.
    Serve(ServeArgs),
    /// Open the dashboard on a running `bntop serve`: a socket path (default: yours),
    /// tcp://HOST:PORT, or ssh://[user@]host[:port][/socket].
    Attach(AttachArgs),
    /// Join standard input and output to the local server's socket (what attach runs over ssh).
    Bridge(BridgeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Train(args)) => train(&args),
        Some(Command::Bench(args)) => run_bench(&args),
        Some(Command::BenchDashboard(args)) => run_bench_dashboard(&args),
        Some(Command::Replay(args)) => replay(&args),
        Some(Command::Export(args)) => export(&args),
        Some(Command::Plot(args)) => plot(&args),
        Some(Command::BenchSession(args)) => run_bench_session(&args),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Attach(args)) => attach(&args),
        Some(Command::Bridge(args)) => {
            let socket = args
                .socket
                .clone()
                .unwrap_or_else(remote::wire::default_socket);
            remote::bridge::run(&socket).map_err(Failure::from)
        }
        None => train(&cli.train),
    };
    result.map_or_else(Failure::exit, |()| ExitCode::SUCCESS)
}
