//! bntop: "top for BatchNorm".
//!
//! Layers, one direction (see DESIGN.md): `engine` (dfdx training) produces the `protocol` event
//! stream; `metrics` is pure BatchNorm math on plain slices, shared by the engine and every consumer.
pub mod bench;
pub mod engine;
pub mod headless;
pub mod live;
pub mod metrics;
pub mod plot;
pub mod protocol;
pub mod remote;
pub mod session;
pub mod signals;
pub mod ui;
