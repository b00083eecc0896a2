//! What can go wrong in serve, attach and bridge, by whose doing: the target, token, address or
//! socket the user gave (or a server that cannot be reached or trusted), or the machine. The
//! command line turns each into its exit code in one place.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A target, token, address or socket path that is malformed, unsafe or already taken.
    #[error("{0}")]
    Setup(String),
    /// The server cannot be reached, refused us, or is not a bntop server we trust.
    #[error("{0}")]
    Connect(String),
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
}
