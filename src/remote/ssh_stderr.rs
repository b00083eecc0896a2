//! What an ssh process writes on its standard error: ssh's own complaints ("Permission denied")
//! and the remote `bntop bridge`'s ("cannot connect to ..."). Once the dashboard owns the
//! terminal, a line written there would scroll its screen, so a thread reads it instead and keeps
//! the last line, which the viewer then gives as the reason a connection failed or ended.
use std::io::Read;
use std::process::ChildStderr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Receiver;

/// Bytes of the stream kept: the last line is in there unless a peer writes one longer (which
/// is then cut at its start, never held whole).
const KEPT_BYTES: usize = 1024;

pub struct SshStderr {
    tail: Arc<Mutex<Vec<u8>>>,
    /// Disconnected once ssh has closed its standard error (it exited).
    closed: Receiver<()>,
}

impl SshStderr {
    /// Reads `stderr` to its end on a thread.
    pub fn spawn(mut stderr: ChildStderr) -> Result<SshStderr, String> {
        let tail = Arc::new(Mutex::new(Vec::with_capacity(KEPT_BYTES)));
        let (closing, closed) = crossbeam_channel::bounded::<()>(0);
        let kept = Arc::clone(&tail);
        thread::Builder::new()
            .name("bntop-ssh-stderr".into())
            .spawn(move || {
                let _closing = closing;
                let mut buf = [0u8; 512];
                while let Ok(n @ 1..) = stderr.read(&mut buf) {
                    if let Ok(mut tail) = kept.lock() {
                        keep_tail(&mut tail, &buf[..n]);
                    }
                }
            })
            .map_err(|e| format!("cannot read ssh's errors: {e}"))?;
        Ok(SshStderr { tail, closed })
    }

    /// The last line ssh wrote, then `reason`, once ssh has closed its standard error (waiting
    /// at most `wait`: the connection's end is seen first, ssh's exit just after). The line
    /// comes first: it says more, and a narrow footer cuts the end.
    pub fn explain(&self, reason: String, wait: Duration) -> String {
        let _ = self.closed.recv_timeout(wait);
        let tail = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        match last_line(&tail) {
            Some(line) => format!("{line} ({reason})"),
            None => reason,
        }
    }
}

fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(more);
    let excess = tail.len().saturating_sub(KEPT_BYTES);
    tail.drain(..excess);
}

/// The last line with something on it, without control characters (a peer's escape sequences
/// must not reach the terminal through the footer).
fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    Some(line.chars().filter(|c| !c.is_control()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn the_last_line_is_kept_bounded_and_without_control_characters() {
        let mut tail = Vec::new();
        keep_tail(&mut tail, b"Warning: added host\nbntop: cannot connect\n\n");
        assert_eq!(last_line(&tail).as_deref(), Some("bntop: cannot connect"));
        keep_tail(&mut tail, &[b'x'; 5000]);
        assert_eq!(tail.len(), KEPT_BYTES);
        keep_tail(&mut tail, b"\nDenied \x1b[2Jnow\r\n");
        assert_eq!(last_line(&tail).as_deref(), Some("Denied [2Jnow"));
        assert_eq!(last_line(b" \n\n"), None);
    }

    #[test]
    fn a_process_error_is_told_after_it_exits() {
        let child = Command::new("sh")
            .args([
                "-c",
                "echo first >&2; sleep 0.2; echo 'bntop: no server' >&2",
            ])
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            panic!("sh runs")
        };
        let Some(stderr) = child.stderr.take() else {
            panic!("a piped stderr")
        };
        let told =
            SshStderr::spawn(stderr).map(|s| s.explain("lost".into(), Duration::from_secs(5)));
        assert_eq!(told.as_deref(), Ok("bntop: no server (lost)"));
        let _ = child.wait();
    }
}
