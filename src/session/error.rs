//! What can go wrong with a session file: the input (missing, unreadable, not a session, a newer
//! format, a layer it does not have) or the output (the CSV or the recording cannot be written).
//! The command line turns each into its exit code in one place.
use std::io;
use std::path::PathBuf;

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
    /// A new recording (or its directory) cannot be created: a file already there, no
    /// permission, a full disk.
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    /// The replay thread could not be started.
    #[error("cannot start the replay thread: {0}")]
    Thread(io::Error),
}
