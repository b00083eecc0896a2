//! The signals that end a bntop process politely (SIGINT, SIGTERM, SIGHUP): each is handed to a
//! callback on a thread of its own, so the caller stops its run on the normal path (terminal
//! restored, end record written) instead of dying mid-write.
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Call `on_signal` with each SIGINT, SIGTERM or SIGHUP the process receives from now on.
pub fn on_stop_signals(mut on_signal: impl FnMut(i32) + Send + 'static) -> Result<(), String> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("bntop-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                on_signal(signal);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}
