//! `bntop bench`, `bench-dashboard` and `bench-session`: the benchmarks' arguments and runs.
use clap::Args;

use bntop::bench;

use super::{load_data, Failure};

#[derive(Args)]
pub struct BenchArgs {
    /// Timed steps per measurement (after the warm-up).
    #[arg(long, default_value_t = 300)]
    pub steps: u64,
    #[arg(long, default_value_t = 30)]
    pub warmup: u64,
    /// Rounds per configuration; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Batch sizes to measure, comma-separated (e.g. 32,64,128).
    #[arg(long, value_delimiter = ',', default_values_t = [32, 64, 128])]
    pub batches: Vec<usize>,
}

#[derive(Args)]
pub struct BenchDashboardArgs {
    /// Steps of history before the render timing starts.
    #[arg(long, default_value_t = 10_000)]
    pub history: u64,
    /// Frames timed.
    #[arg(long, default_value_t = 300)]
    pub frames: usize,
    /// Seconds of live training before the bandwidth measurement starts.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Seconds the bandwidth is measured over.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
}

#[derive(Args)]
pub struct BenchSessionArgs {
    /// Size of the generated session file, in MB.
    #[arg(long, default_value_t = 500)]
    pub megabytes: u64,
    #[arg(long, default_value_t = 100)]
    pub seeks: usize,
}

pub fn run_bench(args: &BenchArgs) -> Result<(), Failure> {
    if args.steps == 0 || args.rounds == 0 || args.batches.is_empty() {
        return Err(Failure::BadInput(
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
    bench::training::run(&plan, &data, &mut std::io::stdout()).map_err(Failure::Failed)
}

pub fn run_bench_dashboard(args: &BenchDashboardArgs) -> Result<(), Failure> {
    let valid = |x: f64| x.is_finite() && x >= 0.0;
    if args.frames == 0
        || args.history == 0
        || !valid(args.warmup)
        || !(valid(args.seconds) && args.seconds > 0.0)
    {
        return Err(Failure::BadInput(
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
    bench::dashboard::run(&plan, &data, &mut std::io::stdout()).map_err(Failure::Failed)
}

pub fn run_bench_session(args: &BenchSessionArgs) -> Result<(), Failure> {
    if args.megabytes == 0 || args.seeks == 0 {
        return Err(Failure::BadInput(
            "--megabytes and --seeks must be positive".into(),
        ));
    }
    let plan = bench::session::Plan {
        target_bytes: args.megabytes * 1_000_000,
        seeks: args.seeks,
    };
    bench::session::run(&plan, &mut std::io::stdout()).map_err(Failure::Failed)
}
