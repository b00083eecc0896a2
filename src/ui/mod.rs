//! The dashboard. It consumes the protocol's event stream and sends controls back; it knows nothing
//! about dfdx, files or sockets (DESIGN.md). `state` holds the data (ring-buffered history), `app`
//! the UI state and key handling, `keys` the one key table, `view` one file per panel, `terminal`
//! and `run` the terminal itself.
pub mod app;
mod chart_keys;
pub mod compare;
pub mod format;
pub mod glossary;
pub mod health;
pub mod history;
pub mod keys;
pub mod layer_order;
pub mod names;
pub mod options;
pub mod run;
pub mod state;
pub mod synthetic;
pub mod terminal;
pub mod theme;
pub mod theory;
pub mod time_window;
pub mod view;

pub use options::{ColorChoice, ColorMode, UiOptions};
pub use run::{run, run_comparing, RunOutcome};
