//! What can go wrong with a session file: the input (missing, unreadable, not a session, a newer
//! format, a layer it does not have) or the output (the CSV or the recording cannot be written).
//! The command line turns each into its exit code in one place.
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session file cannot be opened or read, or is not a session this version reads.
    #[error("{0}")]
    Input(String),
    /// The requested layer is not in the session.
    #[error("{0}")]
    NoSuchLayer(String),
    /// Writing `what` failed: a closed pipe, a full disk.
    #[error("cannot write {what}: {source}")]
    Write { what: String, source: io::Error },
}
