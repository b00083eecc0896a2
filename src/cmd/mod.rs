//! The subcommands of the `bntop` binary, one file per family, and what they share: failures with
//! their exit codes, loading the data set, and the exit code after a signal.
pub mod bench;
mod failure;
pub mod plot;
pub mod remote;
pub mod session;
pub mod train;

use bntop::engine::data;
use bntop::ui::RunOutcome;

pub use failure::Failure;

/// `--data`: absent or the word `mnist` is the embedded MNIST subset, the word `digits` the
/// embedded 8x8 digits; anything else is a path, so a directory named `mnist` is reached as
/// `./mnist` (or `mnist/`).
pub fn load_data(choice: Option<&std::path::Path>) -> Result<data::DataSet, Failure> {
    match choice.map(std::path::Path::as_os_str) {
        None => data::embedded_mnist(),
        Some(word) if word == EMBEDDED_DIGITS => data::embedded_digits(),
        Some(word) if word == EMBEDDED_MNIST => data::embedded_mnist(),
        Some(path) => data::load_path(path.as_ref()),
    }
    .map_err(Failure::from)
}

/// The `--data` values that name an embedded set rather than a path.
pub const EMBEDDED_DIGITS: &str = "digits";
pub const EMBEDDED_MNIST: &str = "mnist";

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
