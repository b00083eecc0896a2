//! The one event vocabulary of bntop (DESIGN.md, "one direction, one vocabulary").
//!
//! The engine emits [`Event`]s; the dashboard, the session recorder and remote viewers consume exactly
//! these records, as Rust values over a channel or as JSON lines. Controls flow the other way as
//! [`Control`]s, and every control the engine applies (or rejects) comes back as an event, so a
//! recording shows cause and effect.
mod controls;
mod events;
mod feed;
pub mod float_encoding;
mod header;
pub mod limits;
mod parse;
mod snapshot;

pub use controls::{BnMode, Control, ControlEvent, DataOrder};
pub use events::{
    EndReason, EvalScore, Evaluation, Event, FoldingReport, Marker, MarkerKind, PopulationLayer,
    PopulationReport, ProbeLayer, ProbeReport, RunEnd,
};
pub use feed::{
    Command, Feed, LinkStatus, RecordingStatus, ReplayCommand, ReplayStatus, MAX_REPLAY_SPEED,
    MIN_REPLAY_SPEED, READ_FEED_CAPACITY,
};
pub use header::{
    BnKind, Conventions, DataInfo, LayerInfo, OptimizerConfig, OptimizerKind, Producer,
    RecordingPolicy, RunConfig, RunHeader, WeightDecayMode, FORMAT_NAME, FORMAT_VERSION_MAJOR,
    FORMAT_VERSION_MINOR,
};
pub use limits::MAX_LINE;
pub use parse::{parse_record, RecordCheck};
pub use snapshot::{EmaFit, LayerSnapshot, LayerSummary, Snapshot};

#[cfg(test)]
mod tests;
