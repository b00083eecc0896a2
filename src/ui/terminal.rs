//! The terminal: raw mode and the alternate screen on the way in, everything restored on the way
//! out (normal exit, error, panic, signal), synchronized updates around each frame, and a byte
//! counter on everything written (the bandwidth benchmark reads it).
use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::thread::{self, ThreadId};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, BeginSynchronizedUpdate, EndSynchronizedUpdate,
    EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute, queue};
use ratatui::{Frame, Terminal};

/// A writer that counts the bytes that pass through it.
pub struct CountingWriter<W> {
    inner: W,
    count: Arc<AtomicU64>,
}

impl<W> CountingWriter<W> {
    pub fn new(inner: W) -> (CountingWriter<W>, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        let writer = CountingWriter {
            inner,
            count: Arc::clone(&count),
        };
        (writer, count)
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Draw one frame between synchronized-update markers, so terminals that support them (most do;
/// others ignore the sequence) never show a half-drawn frame.
pub fn draw_synchronized<W: Write>(
    terminal: &mut Terminal<CrosstermBackend<W>>,
    render: impl FnOnce(&mut Frame),
) -> io::Result<()> {
    queue!(terminal.backend_mut(), BeginSynchronizedUpdate)?;
    terminal.draw(render)?;
    execute!(terminal.backend_mut(), EndSynchronizedUpdate)?;
    Ok(())
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static MOUSE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Put the terminal back: cooked mode, main screen, cursor shown, mouse released. Safe to call
/// twice and from a panic hook; errors are ignored (after SIGHUP there may be no terminal left).
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    if MOUSE.load(Ordering::SeqCst) {
        let _ = execute!(out, DisableMouseCapture);
    }
    let _ = execute!(
        out,
        EndSynchronizedUpdate,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = disable_raw_mode();
}

/// The dashboard's terminal; dropping it restores the terminal.
pub struct TerminalSession {
    pub terminal: Terminal<CrosstermBackend<CountingWriter<Stdout>>>,
    pub bytes_written: Arc<AtomicU64>,
}

impl TerminalSession {
    pub fn enter(mouse: bool) -> Result<TerminalSession, String> {
        install_panic_hook(thread::current().id());
        enable_raw_mode()
            .map_err(|e| format!("the dashboard needs a terminal ({e}); use --headless"))?;
        ACTIVE.store(true, Ordering::SeqCst);
        MOUSE.store(mouse, Ordering::SeqCst);
        let mut out = io::stdout();
        let setup = execute!(out, EnterAlternateScreen, cursor::Hide).and_then(|()| {
            if mouse {
                execute!(out, EnableMouseCapture)
            } else {
                Ok(())
            }
        });
        let (writer, bytes_written) = CountingWriter::new(io::stdout());
        let terminal = setup.and_then(|()| Terminal::new(CrosstermBackend::new(writer)));
        match terminal {
            Ok(terminal) => Ok(TerminalSession {
                terminal,
                bytes_written,
            }),
            Err(e) => {
                restore();
                Err(format!("cannot set up the terminal: {e}"))
            }
        }
    }

    pub fn draw(&mut self, render: impl FnOnce(&mut Frame)) -> io::Result<()> {
        draw_synchronized(&mut self.terminal, render)
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        restore();
    }
}

/// Restore the terminal before the panic message prints, but only for a panic on the dashboard's
/// own thread: a panic elsewhere (the training thread) is reported inside the dashboard instead.
fn install_panic_hook(ui_thread: ThreadId) {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if thread::current().id() == ui_thread {
                restore();
            }
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test can read after handing it to the backend.
    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_frame_is_one_synchronized_update_and_every_byte_is_counted() {
        let shared = Shared::default();
        let (writer, count) = CountingWriter::new(shared.clone());
        let viewport = ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 20, 3));
        let backend = CrosstermBackend::new(writer);
        let mut terminal = Terminal::with_options(backend, ratatui::TerminalOptions { viewport })
            .expect("terminal");
        draw_synchronized(&mut terminal, |f| {
            f.render_widget(ratatui::widgets::Paragraph::new("hello"), f.area())
        })
        .expect("draw");
        let written = shared.0.lock().expect("lock").clone();
        let text = String::from_utf8_lossy(&written);
        assert!(text.starts_with("\x1b[?2026h"), "{text:?}");
        assert!(text.ends_with("\x1b[?2026l"), "{text:?}");
        assert!(text.contains("hello"));
        assert_eq!(count.load(Ordering::Relaxed), written.len() as u64);
    }

    /// The hook restores the terminal for a panic on the dashboard's thread, and only then. (Run
    /// without a terminal, `restore` writes a few harmless escape codes to stdout.)
    #[test]
    fn panic_on_the_dashboard_thread_restores_the_terminal() {
        let dashboard = thread::spawn(|| {
            install_panic_hook(thread::current().id());
            // Another thread's panic leaves the dashboard's terminal alone.
            ACTIVE.store(true, Ordering::SeqCst);
            let _ = thread::spawn(|| panic!("training thread panics")).join();
            let untouched = ACTIVE.load(Ordering::SeqCst);
            let panicked = std::panic::catch_unwind(|| panic!("dashboard panics")).is_err();
            (untouched, panicked, ACTIVE.load(Ordering::SeqCst))
        });
        let (untouched, panicked, still_active) = dashboard.join().expect("test thread");
        assert!(untouched, "a panic elsewhere must not restore the terminal");
        assert!(
            panicked && !still_active,
            "the dashboard's panic must restore it"
        );
    }
}
