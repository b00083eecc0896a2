//! The subcommands of the `bntop` binary, one file per family, and what they share: failures with
//! their exit codes, loading the data set, and the exit code after a signal.
pub mod bench;
mod failure;
pub mod remote;
pub mod session;
pub mod train;

use bntop::engine::data;
use bntop::ui::RunOutcome;

pub use failure::Failure;

pub fn load_data(path: Option<&std::path::Path>) -> Result<data::DataSet, Failure> {
    match path {
        Some(path) => data::load_path(path),
        None => data::embedded_digits(),
    }
    .map_err(Failure::from)
}

/// The shell convention for "terminated by signal n" once the dashboard has restored the terminal.
pub fn exit_after_signal(outcome: &RunOutcome) -> Result<(), Failure> {
    match outcome.signal {
        Some(signal) => Err(Failure::Signal {
            signal,
            message: format!("stopped by signal {signal}; terminal restored"),
        }),
        None => Ok(()),
    }
}
