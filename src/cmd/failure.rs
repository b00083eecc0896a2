//! How a command fails, and the one place that turns each failure into its exit code and its
//! line on stderr: 0 success (also when our standard output was closed by its reader, as `| head`
//! does), 1 the run or the machine failed (a diverged run, a full disk, a lost thread), 2 bad
//! arguments or a bad input file, 128 + n stopped by signal n.
use std::io::{self, Write};
use std::process::ExitCode;

use bntop::engine::data::DataError;
use bntop::engine::EngineError;
use bntop::remote::RemoteError;
use bntop::session::SessionError;

#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or a bad input file: exit 2.
    BadInput(String),
    /// The run failed, or the machine said no: exit 1.
    Failed(String),
    /// Stopped by a signal after a clean shutdown: exit 128 + signal.
    Signal { signal: i32, message: String },
    /// Our standard output's reader went away: end quietly, like other Unix filters.
    OutputClosed,
}

impl Failure {
    /// A failed write of `what` to standard output or a file: quiet when the reader hung up.
    pub fn writing(what: &str, error: io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::BrokenPipe => Failure::OutputClosed,
            _ => Failure::Failed(format!("cannot write {what}: {error}")),
        }
    }

    /// The exit code, and the line for stderr (written best effort: stderr may be closed too).
    pub fn exit(self) -> ExitCode {
        let (code, message) = match self {
            Failure::BadInput(message) => (2, message),
            Failure::Failed(message) => (1, message),
            Failure::Signal { signal, message } => (
                128u8.saturating_add(u8::try_from(signal).unwrap_or(0)),
                message,
            ),
            Failure::OutputClosed => return ExitCode::SUCCESS,
        };
        let _ = writeln!(io::stderr().lock(), "bntop: {message}");
        ExitCode::from(code)
    }
}

impl From<EngineError> for Failure {
    fn from(error: EngineError) -> Failure {
        match error {
            EngineError::Config(_) | EngineError::Data(_) => Failure::BadInput(error.to_string()),
            EngineError::Thread { .. } => Failure::Failed(error.to_string()),
        }
    }
}

impl From<SessionError> for Failure {
    fn from(error: SessionError) -> Failure {
        match error {
            SessionError::Input(_) | SessionError::NoSuchLayer(_) => {
                Failure::BadInput(error.to_string())
            }
            SessionError::Write { what, source } => Failure::writing(&what, source),
            // The path is an argument; a full disk or a lost thread is the machine's doing.
            SessionError::Create { ref source, .. } => match source.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                    Failure::Failed(error.to_string())
                }
                _ => Failure::BadInput(error.to_string()),
            },
            SessionError::Thread(_) => Failure::Failed(error.to_string()),
        }
    }
}

impl From<RemoteError> for Failure {
    fn from(error: RemoteError) -> Failure {
        match error {
            // A target that cannot be reached or trusted is a bad argument, like a missing file.
            RemoteError::Setup(_) | RemoteError::Connect(_) => Failure::BadInput(error.to_string()),
            RemoteError::Thread { .. } => Failure::Failed(error.to_string()),
        }
    }
}

impl From<DataError> for Failure {
    fn from(error: DataError) -> Failure {
        Failure::BadInput(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_cause() {
        let code = |f: Failure| format!("{:?}", f.exit());
        assert_eq!(
            code(Failure::OutputClosed),
            format!("{:?}", ExitCode::SUCCESS)
        );
        assert_eq!(
            code(Failure::BadInput("x".into())),
            format!("{:?}", ExitCode::from(2))
        );
        assert_eq!(
            code(Failure::Failed("x".into())),
            format!("{:?}", ExitCode::from(1))
        );
        let signal = Failure::Signal {
            signal: 15,
            message: "x".into(),
        };
        assert_eq!(code(signal), format!("{:?}", ExitCode::from(143)));
        let broken = io::Error::from(io::ErrorKind::BrokenPipe);
        assert!(matches!(
            Failure::writing("x", broken),
            Failure::OutputClosed
        ));
        let full = io::Error::from_raw_os_error(28); // ENOSPC
        assert!(matches!(Failure::writing("x", full), Failure::Failed(_)));
        let thread = EngineError::Thread {
            what: "training",
            source: io::Error::from(io::ErrorKind::OutOfMemory),
        };
        assert!(matches!(Failure::from(thread), Failure::Failed(_)));
        assert!(matches!(
            Failure::from(EngineError::Config("--lr".into())),
            Failure::BadInput(_)
        ));
    }
}
