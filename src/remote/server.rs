//! The listeners of `bntop serve`: a Unix socket private to the user (mode 0600 in a directory
//! nobody else controls) and, only when asked, TCP with a token (loopback unless
//! `--allow-remote`). Each connection gets a thread that reads its hello against one deadline
//! (at most `MAX_PENDING` at a time per listener, the oldest shut down first), then its controls; a viewer's
//! writer thread takes its queue to the socket. Whatever a peer does, it only ever costs its own
//! connection, and the accept loops never wait for a peer.
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::error::RemoteError;
use super::hub::{HubMessage, Line, Viewer, VIEWER_QUEUE};
use super::log::log;
use super::pending::{Pending, MAX_PENDING};
use super::unix_socket::{bind_private, prepare_dir};
use super::wire::{read_line_limited, Hello, Refused, MAX_CLIENT_LINE};
use crate::protocol::Control;

/// A peer must have said hello within this time after connecting, however it dribbles it.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A viewer that takes longer than this to accept a write is stalled and dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A token shorter than this is refused: it could be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;
/// After an accept error (out of file descriptors, say), wait this long before the next accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

pub struct ServeOptions {
    pub socket: PathBuf,
    /// The socket is the default one: its directory must be private to the user.
    pub default_socket: bool,
    pub tcp: Option<SocketAddr>,
    pub token: Option<String>,
    pub allow_remote: bool,
}

/// The socket file, removed when the server goes.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Listening, not yet serving (nothing has been accepted).
pub struct Listeners {
    unix: UnixListener,
    socket: SocketFile,
    tcp: Option<TcpListener>,
    token: Option<String>,
}

pub struct Server {
    socket: SocketFile,
    pub tcp: Option<SocketAddr>,
    /// The token TCP viewers must present.
    pub token: Option<String>,
    writers: Arc<Writers>,
}

impl Server {
    pub fn socket(&self) -> &Path {
        &self.socket.0
    }

    /// Give the viewers' writers up to `limit` to send what is queued (the end record) and close
    /// their connections, so every viewer sees the end at once.
    pub fn finish(&self, limit: Duration) {
        self.writers.wait_idle(limit);
    }
}

/// The viewers' writer threads still running.
#[derive(Default)]
struct Writers {
    running: Mutex<usize>,
    idle: Condvar,
}

/// One running writer; it counts until dropped.
struct WriterGuard(Arc<Writers>);

impl Writers {
    fn enter(self: &Arc<Writers>) -> WriterGuard {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        WriterGuard(Arc::clone(self))
    }

    fn wait_idle(&self, limit: Duration) {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .idle
            .wait_timeout_while(running, limit, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let mut running = self
            .0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        self.0.idle.notify_all();
    }
}

/// A connection of either kind, shared by its reader, its writer and the pending list.
trait Conn: Send + Sync + Sized + 'static {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_all_of(&self, bytes: &[u8]) -> io::Result<()>;
    fn close(&self);
    /// No more data from us; the peer reads to the end of what was sent.
    fn finish_writing(&self);
    fn set_read_limit(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_limit(&self, timeout: Option<Duration>) -> io::Result<()>;
}

macro_rules! conn {
    ($t:ty) => {
        impl Conn for $t {
            fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
                let mut stream: &$t = self;
                stream.read(buf)
            }
            fn write_all_of(&self, bytes: &[u8]) -> io::Result<()> {
                let mut stream: &$t = self;
                stream.write_all(bytes)
            }
            fn close(&self) {
                let _ = self.shutdown(Shutdown::Both);
            }
            fn finish_writing(&self) {
                let _ = self.shutdown(Shutdown::Write);
            }
            fn set_read_limit(&self, timeout: Option<Duration>) -> io::Result<()> {
                self.set_read_timeout(timeout)
            }
            fn set_write_limit(&self, timeout: Option<Duration>) -> io::Result<()> {
                self.set_write_timeout(timeout)
            }
        }
    };
}
conn!(UnixStream);
conn!(TcpStream);

/// Reads from a connection until a deadline that holds across reads: each read may only wait
/// for what is left of it.
struct DeadlineReader<C> {
    conn: Arc<C>,
    until: Option<Instant>,
}

impl<C: Conn> Read for DeadlineReader<C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(until) = self.until {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
            }
            self.conn.set_read_limit(Some(left))?;
        }
        self.conn.read_some(buf)
    }
}

/// A random token for TCP viewers when none was given.
fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
        .collect()
}

/// A token given by the user must be long enough not to be guessed.
pub fn check_token(token: &str) -> Result<(), String> {
    let chars = token.chars().count();
    if chars == 0 {
        return Err("the token (--token or BNTOP_TOKEN) is empty".into());
    }
    if chars < MIN_TOKEN_CHARS {
        return Err(format!(
            "the token (--token or BNTOP_TOKEN) has {chars} characters; use at least {MIN_TOKEN_CHARS}, or leave it out for a random one"
        ));
    }
    Ok(())
}

/// Compare a presented token with the secret in time that depends only on the secret's length,
/// so timing tells a peer nothing about how much of its guess was right.
pub fn same_secret(presented: &[u8], secret: &[u8]) -> bool {
    let mut differ = usize::from(presented.len() != secret.len());
    for (i, &s) in secret.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(!s);
        differ |= usize::from(std::hint::black_box(p ^ s));
    }
    differ == 0
}

/// Bind the Unix socket: its directory checked (and made, 0700, if missing), the socket 0600
/// from the start; a stale socket (no server behind it) is replaced, a live one left alone, and
/// anything else at that path refused.
fn bind_unix(path: &Path, default_socket: bool) -> Result<UnixListener, String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    prepare_dir(dir, default_socket)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; not touching it",
                path.display()
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "a bntop server is already listening on {}",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    }
    bind_private(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))
}

/// Connections the kernel may hold for the accept loop. std listens with 128: a burst of idle
/// connections fills that, and a viewer's SYN is then dropped and retried only after a second.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Raise a listener's backlog to [`LISTEN_BACKLOG`] (listen again on the bound socket; the
/// kernel caps it at net.core.somaxconn).
fn deepen_backlog(listener: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: listen on a valid, bound socket descriptor that `listener` keeps open.
    match unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Open the listeners (nothing is accepted until [`start`]).
pub fn bind(options: ServeOptions) -> Result<Listeners, RemoteError> {
    bind_checked(options).map_err(RemoteError::Setup)
}

fn bind_checked(options: ServeOptions) -> Result<Listeners, String> {
    if let Some(token) = &options.token {
        check_token(token)?;
    }
    let tcp = match options.tcp {
        Some(addr) => {
            if !addr.ip().is_loopback() && !options.allow_remote {
                return Err(format!(
                    "--tcp {addr} is not a loopback address: add --allow-remote (and keep the token secret)"
                ));
            }
            let listener =
                TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            deepen_backlog(&listener).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            Some(listener)
        }
        None => None,
    };
    let unix = bind_unix(&options.socket, options.default_socket)?;
    deepen_backlog(&unix)
        .map_err(|e| format!("cannot listen on {}: {e}", options.socket.display()))?;
    let token = tcp
        .as_ref()
        .map(|_| options.token.unwrap_or_else(random_token));
    Ok(Listeners {
        unix,
        socket: SocketFile(options.socket),
        tcp,
        token,
    })
}

/// What every connection's thread shares.
struct Shared {
    hub: Sender<HubMessage>,
    ids: AtomicU64,
    writers: Arc<Writers>,
}

/// Accept connections on both listeners and serve each on its own thread.
pub fn start(listeners: Listeners, hub: Sender<HubMessage>) -> Result<Server, RemoteError> {
    let writers = Arc::new(Writers::default());
    let shared = Arc::new(Shared {
        hub,
        ids: AtomicU64::new(1),
        writers: Arc::clone(&writers),
    });
    let Listeners {
        unix,
        socket,
        tcp,
        token,
    } = listeners;
    let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("bntop-unix".into())
            .spawn(move || {
                accept_loop(
                    || unix.accept().map(|(s, _)| (s, String::new())),
                    "unix",
                    &shared,
                    None,
                )
            })
            .map_err(|source| RemoteError::Thread {
                what: "listener",
                source,
            })?;
    }
    if let (Some(listener), Some(token)) = (tcp, token.clone()) {
        let token: Arc<str> = token.into();
        thread::Builder::new()
            .name("bntop-tcp".into())
            .spawn(move || {
                accept_loop(
                    || listener.accept().map(|(s, peer)| (s, format!(" ({peer})"))),
                    "tcp",
                    &shared,
                    Some(token),
                )
            })
            .map_err(|source| RemoteError::Thread {
                what: "listener",
                source,
            })?;
    }
    Ok(Server {
        socket,
        tcp: tcp_addr,
        token,
        writers,
    })
}

/// Accept forever; each connection goes to a thread of its own at once. `accept` gives the
/// connection and what to say about its peer in the log.
fn accept_loop<C: Conn>(
    accept: impl Fn() -> io::Result<(C, String)>,
    kind: &str,
    shared: &Arc<Shared>,
    token: Option<Arc<str>>,
) {
    // Each listener has its own: a crowd on TCP cannot push out a viewer on the Unix socket.
    let pending = Arc::new(Pending::new(MAX_PENDING));
    let mut failing = false;
    loop {
        let (conn, peer) = match accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: log once, and do not spin.
                if !failing {
                    log(format!("cannot accept a connection: {e}"));
                }
                failing = true;
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        failing = false;
        let id = shared.ids.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(conn);
        let closer = Arc::clone(&conn);
        if let Some(old) = pending.admit(id, Box::new(move || closer.close())) {
            log(format!(
                "viewer {old}: too many connections without a hello; dropped the oldest"
            ));
        }
        let (thread_shared, thread_pending) = (Arc::clone(shared), Arc::clone(&pending));
        let token = token.clone();
        let who = format!("{kind} viewer {id}{peer}");
        let spawned = thread::Builder::new()
            .name(format!("bntop-viewer-{id}"))
            .spawn(move || {
                serve(
                    conn,
                    who,
                    id,
                    token.as_deref(),
                    &thread_shared,
                    &thread_pending,
                )
            });
        if spawned.is_err() {
            pending.settle(id);
        }
    }
}

/// The hello, against one deadline for the whole of it; the token when one is required.
fn read_hello<C: Conn>(
    reader: &mut BufReader<DeadlineReader<C>>,
    token: Option<&str>,
) -> Result<Hello, &'static str> {
    let hello = match read_line_limited(reader, MAX_CLIENT_LINE) {
        Ok(Some(line)) => {
            serde_json::from_str::<Hello>(&line).map_err(|_| "the first line is not a hello")?
        }
        Ok(None) => return Err("closed before saying hello"),
        Err(_) => return Err("no hello in time, or a bad one"),
    };
    if let Some(expected) = token {
        let presented = hello.hello.token.as_deref().unwrap_or_default();
        if !same_secret(presented.as_bytes(), expected.as_bytes()) {
            return Err("wrong or missing token");
        }
    }
    Ok(hello)
}

/// One viewer, from hello to goodbye. Any protocol error drops this connection only.
fn serve<C: Conn>(
    conn: Arc<C>,
    who: String,
    id: u64,
    token: Option<&str>,
    shared: &Shared,
    pending: &Pending,
) {
    let mut reader = BufReader::new(DeadlineReader {
        conn: Arc::clone(&conn),
        until: Some(Instant::now() + HELLO_TIMEOUT),
    });
    let hello = read_hello(&mut reader, token);
    pending.settle(id);
    let hello = match hello {
        Ok(h) => h.hello,
        Err(reason) => {
            refuse(&*conn, &who, reason);
            return;
        }
    };
    reader.get_mut().until = None;
    let _ = conn.set_read_limit(None);
    let _ = conn.set_write_limit(Some(WRITE_TIMEOUT));
    let (queue, lines) = crossbeam_channel::bounded::<Line>(VIEWER_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    let writer = spawn_writer(&conn, &who, id, shared, lines, Arc::clone(&queued));
    let Ok(writer) = writer else {
        conn.close();
        return;
    };
    let mode = if hello.readonly { " (read-only)" } else { "" };
    log(format!("{who} attached{mode}"));
    if shared
        .hub
        .send(HubMessage::Attach(Viewer { id, queue, queued }))
        .is_err()
    {
        conn.close();
        let _ = writer.join();
        return;
    }
    read_controls(&mut reader, &who, id, hello.readonly, shared);
    conn.close();
    let _ = writer.join();
}

/// Tells the viewer why it is refused (if it still listens, briefly) and closes.
fn refuse<C: Conn>(conn: &C, who: &str, reason: &str) {
    log(format!("{who}: refused: {reason}"));
    if let Ok(mut line) = serde_json::to_string(&Refused::new(reason)) {
        line.push('\n');
        let _ = conn.set_write_limit(Some(Duration::from_secs(1)));
        let _ = conn.write_all_of(line.as_bytes());
    }
    conn.close();
}

/// The viewer's writer thread: writes what the hub queues for it (`lines`, `queued` bytes of
/// them) until the hub lets go, then ends the stream; a failed write drops the viewer.
fn spawn_writer<C: Conn>(
    conn: &Arc<C>,
    who: &str,
    id: u64,
    shared: &Shared,
    lines: crossbeam_channel::Receiver<Line>,
    queued: Arc<AtomicUsize>,
) -> io::Result<thread::JoinHandle<()>> {
    let (conn, who, guard) = (Arc::clone(conn), who.to_string(), shared.writers.enter());
    thread::Builder::new()
        .name(format!("bntop-writer-{id}"))
        .spawn(move || {
            let _running = guard;
            for line in lines.iter() {
                if let Err(e) = conn.write_all_of(line.as_bytes()) {
                    log(format!("{who}: dropped ({e})"));
                    conn.close();
                    return;
                }
                queued.fetch_sub(line.len(), Ordering::Relaxed);
            }
            // The hub let go of this viewer (the run ended): everything queued is written,
            // so the viewer sees the end, then end of stream.
            conn.finish_writing();
        })
}

/// Passes the viewer's controls to the hub (none from a read-only viewer) until it detaches,
/// breaks the protocol or the hub is gone.
fn read_controls<C: Conn>(
    reader: &mut BufReader<DeadlineReader<C>>,
    who: &str,
    id: u64,
    readonly: bool,
    shared: &Shared,
) {
    loop {
        match read_line_limited(reader, MAX_CLIENT_LINE) {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => match serde_json::from_str::<Control>(&line) {
                Ok(_) if readonly => log(format!("{who}: read-only, control ignored")),
                Ok(control) => {
                    if shared
                        .hub
                        .send(HubMessage::Control {
                            viewer: id,
                            control,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(_) => {
                    log(format!(
                        "{who}: sent something that is not a control; dropped"
                    ));
                    return;
                }
            },
            Ok(None) => {
                log(format!("{who} detached"));
                return;
            }
            Err(e) => {
                log(format!("{who}: {e}; dropped"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_long_enough() {
        assert!(check_token("").is_err());
        assert!(check_token("fifteen-chars-x").is_err());
        assert_eq!(check_token("sixteen-chars-xx"), Ok(()));
        // Characters, not bytes.
        assert!(check_token("ééééééééé").is_err());
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        let secret = b"0123456789abcdef";
        assert!(same_secret(secret, secret));
        assert!(!same_secret(b"", secret));
        assert!(!same_secret(b"0123456789abcde", secret));
        assert!(!same_secret(b"0123456789abcdefg", secret));
        assert!(!same_secret(b"0123456789abcdeF", secret));
        assert!(!same_secret(b"1123456789abcdef", secret));
        // A presented prefix padded with what would cancel out is still different.
        assert!(!same_secret(b"0123456789abcde\0", b"0123456789abcde"));
    }

    /// Bytes that keep arriving do not extend the hello: the deadline is for all of it.
    #[test]
    fn the_hello_deadline_holds_across_reads() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let ours = Arc::new(ours);
        let mut reader = BufReader::new(DeadlineReader {
            conn: Arc::clone(&ours),
            until: Some(Instant::now() + Duration::from_millis(300)),
        });
        let started = Instant::now();
        let dribble = thread::spawn(move || {
            let mut theirs = theirs;
            for _ in 0..100 {
                if theirs.write_all(b" ").is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        assert!(read_line_limited(&mut reader, MAX_CLIENT_LINE).is_err());
        let elapsed = started.elapsed();
        assert!(
            // Without the deadline the read would go on for the dribble's 5 s.
            elapsed >= Duration::from_millis(290) && elapsed < Duration::from_millis(2500),
            "{elapsed:?}"
        );
        ours.close();
        let _ = dribble.join();
    }
}
