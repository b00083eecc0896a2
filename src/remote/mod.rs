//! Remote viewing (DESIGN.md "Terminal and SSH"): `bntop serve` trains headless and serves its
//! event stream to viewers on a private Unix socket (and, when asked, TCP with a token);
//! `bntop attach` opens the dashboard on it, directly or through `ssh host bntop bridge`.
//!
//! The wire protocol is JSON lines both ways. The viewer speaks first with one `hello` line
//! (token, read-only); the server answers with the session format's records (header, recent
//! history, then the live stream) or one `refused` line. Afterwards the viewer sends controls,
//! one `Control` object per line.
//!
//! The run comes from a [`source::Source`]: the built-in engine, or an external producer that
//! writes records to serve's standard input and reads controls from its standard output
//! (`serve --source -`, [`producer`]).
pub mod backlog;
pub mod bridge;
pub mod client;
mod error;
pub mod hub;
pub mod log;
pub mod pending;
pub mod producer;
pub mod server;
pub mod source;
pub mod ssh_command;
pub mod ssh_stderr;
pub mod unix_socket;
pub mod wire;
pub use error::RemoteError;
