//! Sessions: every live run recorded as JSON lines (sessions/FORMAT.md), read back with an index
//! for replay, followed while another bntop writes it, exported as CSV, and read whole as the run
//! to compare against (`--compare`).
pub mod decimator;
mod error;
pub mod export;
pub mod reader;
pub mod recorder;
pub mod replay;
pub mod whole;
pub mod writer;

pub use error::SessionError;
pub use recorder::Recorder;
pub use writer::{RecordDetail, SessionWriter, DEFAULT_POLICY};
