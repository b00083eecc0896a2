//! `bntop replay` and `bntop export`: reading recorded sessions; and run B of `--compare`.
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use bntop::session::{self, SessionError};
use bntop::ui;
use bntop::ui::compare::Comparison;
use bntop::ui::keys::Context;

use super::train::DashboardArgs;
use super::{exit_after_signal, Failure};

#[derive(Args)]
pub struct ReplayArgs {
    /// A session file (JSON lines, see sessions/FORMAT.md).
    pub file: PathBuf,
    /// Keep reading as another bntop writes the file.
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A session file.
    pub file: PathBuf,
    /// CSV output (the only format so far; the flag keeps room for others).
    #[arg(long, required = true)]
    pub csv: bool,
    /// Only this layer: its name (block2) or 0-based index.
    #[arg(long)]
    pub layer: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn replay(args: &ReplayArgs) -> Result<(), Failure> {
    let compare = args.dashboard.comparison()?;
    let replay = session::replay::spawn(&args.file, args.follow)?;
    let result = ui::run_comparing(
        &replay.feed,
        &replay.commands,
        args.dashboard.options(),
        Context::Replay,
        compare,
    );
    drop(replay.commands);
    drop(replay.feed);
    let skipped = replay
        .thread
        .join()
        .map_err(|_| Failure::Failed("the replay thread panicked".into()))?;
    if skipped.lines > 0 {
        let last = skipped.last_problem.unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "bntop: {}: skipped {} bad lines (last: {last})",
            args.file.display(),
            skipped.lines
        );
    }
    let outcome = result.map_err(Failure::Failed)?;
    exit_after_signal(&outcome)
}

/// Run B of `--compare`: the whole session at `path`, read into the dashboard's history. A file
/// that cannot be read, or holds no record, is bad input (exit 2, one line).
pub fn load_comparison(path: &Path) -> Result<Comparison, Failure> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut b = Comparison::new(name);
    let skipped = session::whole::read_all(path, |event| {
        b.run.apply(&event);
    })
    .map_err(|e| Failure::BadInput(format!("--compare: {e}")))?;
    if b.run.snapshots == 0 {
        return Err(Failure::BadInput(format!(
            "--compare: {}: no training steps recorded, nothing to compare with",
            path.display()
        )));
    }
    b.skipped_lines = skipped.lines;
    Ok(b)
}

pub fn export(args: &ExportArgs) -> Result<(), Failure> {
    let mut reader = session::reader::Reader::open(&args.file)?;
    let stdout = std::io::stdout();
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| SessionError::Create {
                path: path.clone(),
                source,
            })?,
        )),
        None => Box::new(std::io::BufWriter::new(stdout.lock())),
    };
    let stats = session::export::write_csv(&mut reader, args.layer.as_deref(), &mut out)?;
    out.flush().map_err(|source| SessionError::Write {
        what: "the CSV".into(),
        source,
    })?;
    if stats.skipped_lines > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "bntop: {}: skipped {} bad lines",
            args.file.display(),
            stats.skipped_lines
        );
    }
    Ok(())
}
