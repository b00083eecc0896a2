//! What can stop the engine from starting: the caller's configuration or data (its fault), or the
//! machine (ours). The command line turns each into its exit code in one place.
use super::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A setting is out of range; the message names the flag.
    #[error("{0}")]
    Config(String),
    /// The data set cannot be read, or does not fit the model or the configuration.
    #[error("{0}")]
    Data(#[from] DataError),
    /// A thread could not be started (out of memory or of threads).
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
}
