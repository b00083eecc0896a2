//! `bntop bench`, `bench-dashboard` and `bench-session`: the benchmarks' arguments and runs.
use std::path::PathBuf;

use clap::Args;

use bntop::bench;
use bntop::engine;
use bntop::engine::model::Widths;

use super::{load_data, Failure, EMBEDDED_DIGITS};

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
    /// `digits` (the default here, so a bench takes seconds) or `mnist`: an embedded set; anything
    /// else is a data path, as for training.
    #[arg(long, conflicts_with = "shape")]
    pub data: Option<PathBuf>,
    /// Random images of this shape, channels,height,width (e.g. 3,32,32 for CIFAR-10's), instead
    /// of a data set: speed only. Channels 1 or 3.
    #[arg(long, value_parser = parse_shape)]
    pub shape: Option<[usize; 3]>,
    /// Channels of each conv -> BN -> ReLU block, as for training (default: 16,32,64 for images
    /// up to 16x16, 16,32,64,128 for larger ones).
    #[arg(long)]
    pub widths: Option<Widths>,
}

/// Largest random image accepted by `--shape`, in pixels (3x256x256), so a typo cannot ask for
/// gigabytes.
const MAX_SHAPE_PIXELS: usize = 3 * 256 * 256;

/// Largest random set `--shape` generates, in f32 pixels (512 MB).
const MAX_RANDOM_PIXELS: usize = 1 << 27;

fn parse_shape(text: &str) -> Result<[usize; 3], String> {
    let dims: Vec<usize> = text
        .split(',')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{text:?} is not three comma-separated sizes, e.g. 3,32,32"))?;
    let [channels, height, width] = <[usize; 3]>::try_from(dims)
        .map_err(|_| format!("{text:?} is not three comma-separated sizes, e.g. 3,32,32"))?;
    if channels != 1 && channels != 3 {
        return Err(format!(
            "{channels} channels: --shape makes 1 or 3 (grey or colour images)"
        ));
    }
    if height == 0 || width == 0 {
        return Err("height and width must be positive".into());
    }
    if height.saturating_mul(width).saturating_mul(channels) > MAX_SHAPE_PIXELS {
        return Err(format!(
            "{channels}x{height}x{width} is larger than the {MAX_SHAPE_PIXELS} pixels allowed"
        ));
    }
    Ok([channels, height, width])
}

/// Random training images for `--shape`: a few batches' worth, so batches are drawn from more
/// than one fixed set of images, as on real data.
fn random_train_images(batches: &[usize]) -> usize {
    batches.iter().max().map_or(0, |b| b * 4).max(512)
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
    let data = match args.shape {
        Some(shape) => {
            let largest = args.batches.iter().copied().max().unwrap_or(1);
            let train = random_train_images(&args.batches);
            let pixels = (train + largest).saturating_mul(shape.iter().product());
            if pixels > MAX_RANDOM_PIXELS {
                return Err(Failure::BadInput(format!(
                    "--shape {}x{}x{} with --batches up to {largest} needs {} MB of random images \
                     (at most {} MB)",
                    shape[0],
                    shape[1],
                    shape[2],
                    pixels / (1 << 18),
                    MAX_RANDOM_PIXELS / (1 << 18)
                )));
            }
            engine::data::synthetic(shape, train, largest)
        }
        None => load_data(Some(
            args.data.as_deref().unwrap_or(EMBEDDED_DIGITS.as_ref()),
        ))?,
    };
    let plan = bench::training::Plan {
        steps: args.steps,
        warmup: args.warmup,
        rounds: args.rounds,
        batches: args.batches.clone(),
        widths: args.widths.clone(),
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
    // The digits: the dashboard's figures were measured on them, and they train fastest.
    let data = load_data(Some(EMBEDDED_DIGITS.as_ref()))?;
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
