//! `bntop plot FILE -o out.svg|out.png [--compare B.jsonl] [--layer L]...`: a recording's main
//! charts as an image for a report.
use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use bntop::plot;

use super::Failure;

#[derive(Args)]
pub struct PlotArgs {
    /// A session file (JSON lines, see sessions/FORMAT.md).
    pub file: PathBuf,
    /// The image to write; its extension chooses the format: .svg or .png.
    #[arg(long, short, required = true)]
    pub output: PathBuf,
    /// A second recording, drawn dashed and dimmed over the first, aligned by step, on the
    /// layers both have (matched by name).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Only these layers (name or 0-based index; repeat for several). Default: the first 12.
    #[arg(long)]
    pub layer: Vec<String>,
}

pub fn plot(args: &PlotArgs) -> Result<(), Failure> {
    let plotted = plot::plot(
        &args.file,
        args.compare.as_deref(),
        &args.output,
        &args.layer,
    )
    .map_err(Failure::BadInput)?;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "bntop: wrote {}: {} panels ({} layers), {} control markers",
        args.output.display(),
        plotted.panels,
        plotted.layers,
        plotted.markers
    );
    if plotted.skipped_lines > 0 {
        let _ = writeln!(err, "bntop: skipped {} bad lines", plotted.skipped_lines);
    }
    Ok(())
}
