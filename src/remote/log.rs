//! The server's log lines. Its stderr may be a pipe whose reader died (a `| tee` that ended, a
//! dropped ssh) or one nobody reads: `eprintln!` would panic on the first, any direct write would
//! block on the second. So a line is queued for a logging thread, dropped if the queue is full,
//! and write errors are ignored: logging never panics, and never holds up the hub, a viewer or
//! the shutdown. (A Rust program ignores SIGPIPE, so writing to a dead pipe is an error, EPIPE,
//! not the end of the process.)
use std::fmt::Display;
use std::io::Write;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

/// Lines waiting for stderr before new ones are dropped.
const LOG_QUEUE: usize = 1024;

enum Message {
    Line(String),
    /// Everything queued before this has been written (or failed).
    Flush(Sender<()>),
}

fn write_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "bntop serve: {line}");
}

fn queue() -> Option<&'static Sender<Message>> {
    static QUEUE: OnceLock<Option<Sender<Message>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = bounded::<Message>(LOG_QUEUE);
            thread::Builder::new()
                .name("bntop-log".into())
                .spawn(move || {
                    for message in rx {
                        match message {
                            Message::Line(line) => write_line(&line),
                            Message::Flush(done) => {
                                let _ = done.send(());
                            }
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

/// Log `message` as `bntop serve: message` on stderr, without waiting for stderr.
pub fn log(message: impl Display) {
    match queue() {
        Some(queue) => {
            let _ = queue.try_send(Message::Line(message.to_string()));
        }
        // No logging thread: write directly, still ignoring errors.
        None => write_line(&message.to_string()),
    }
}

/// Wait up to `limit` for the lines logged so far to be written (before the process exits).
pub fn flush(limit: Duration) {
    let Some(queue) = queue() else {
        return;
    };
    let (done, written) = bounded(1);
    if queue.send_timeout(Message::Flush(done), limit).is_ok() {
        let _ = written.recv_timeout(limit);
    }
}
