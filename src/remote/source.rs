//! Where the events `bntop serve` serves come from: the built-in engine, or an external producer
//! on standard input (`--source -`). The hub sees only this: events in, controls out.
use crossbeam_channel::{Receiver, Sender};

use crate::engine::EngineHandle;
use crate::protocol::{Control, Event};

pub struct Source {
    /// The run's records, header first; the channel closes when the source is gone.
    pub events: Receiver<Event>,
    /// Controls for the run. A control the channel will not take (full, or closed) is rejected
    /// by the hub with [`Source::unreachable`].
    pub controls: Sender<Control>,
    /// What the source is called in messages: "training", "the producer".
    pub name: &'static str,
    /// Why a control that cannot be handed over is rejected.
    pub unreachable: &'static str,
    /// Called once when the hub is done: joins what can be joined, logs what is left to say.
    pub finish: Box<dyn FnOnce() + Send>,
}

impl Source {
    /// The built-in dfdx engine: its controls channel is unbounded, so a control is refused only
    /// once training has ended.
    pub fn engine(engine: EngineHandle) -> Source {
        let EngineHandle {
            events,
            controls,
            thread,
        } = engine;
        Source {
            events,
            controls,
            name: "training",
            unreachable: "training has ended",
            finish: Box::new(move || {
                let _ = thread.join();
            }),
        }
    }
}
