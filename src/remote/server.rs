//! The listeners of `bntop serve`: a Unix socket private to the user (mode 0600 in a private
//! directory) and, only when asked, TCP with a token (loopback unless `--allow-remote`). Each
//! viewer gets a reader thread (hello, then controls) and a writer thread (its queue to the
//! socket); whatever a peer does, it only ever costs its own connection.
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::hub::{HubMessage, Line, Viewer, VIEWER_QUEUE};
use super::wire::{read_line_limited, Hello, Refused, MAX_CLIENT_LINE};
use crate::protocol::Control;

/// A peer must say hello within this time (a half-open connection is dropped).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A viewer that takes longer than this to accept a write is stalled and dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServeOptions {
    pub socket: PathBuf,
    pub tcp: Option<SocketAddr>,
    pub token: Option<String>,
    pub allow_remote: bool,
}

pub struct Server {
    pub socket: PathBuf,
    pub tcp: Option<SocketAddr>,
    /// The token TCP viewers must present.
    pub token: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A connection of either kind.
trait Conn: Read + Write + Send + Sized + 'static {
    fn duplicate(&self) -> std::io::Result<Self>;
    fn close(&self);
    fn set_read_limit(&self, timeout: Option<Duration>) -> std::io::Result<()>;
    fn set_write_limit(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

macro_rules! conn {
    ($t:ty) => {
        impl Conn for $t {
            fn duplicate(&self) -> std::io::Result<Self> {
                self.try_clone()
            }
            fn close(&self) {
                let _ = self.shutdown(Shutdown::Both);
            }
            fn set_read_limit(&self, timeout: Option<Duration>) -> std::io::Result<()> {
                self.set_read_timeout(timeout)
            }
            fn set_write_limit(&self, timeout: Option<Duration>) -> std::io::Result<()> {
                self.set_write_timeout(timeout)
            }
        }
    };
}
conn!(UnixStream);
conn!(TcpStream);

fn log(message: &str) {
    eprintln!("bntop serve: {message}");
}

/// A random token for TCP viewers when none was given.
fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
        .collect()
}

/// Bind the Unix socket: its directory private to the user, the socket 0600, a stale socket
/// (no server behind it) replaced, a live one left alone.
fn bind_unix(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "a bntop server is already listening on {}",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    Ok(listener)
}

pub fn start(options: ServeOptions, hub: Sender<HubMessage>) -> Result<Server, String> {
    let ids = Arc::new(AtomicU64::new(1));
    let unix = bind_unix(&options.socket)?;
    let tcp = match options.tcp {
        Some(addr) => {
            if !addr.ip().is_loopback() && !options.allow_remote {
                return Err(format!(
                    "--tcp {addr} is not a loopback address: add --allow-remote (and keep the token secret)"
                ));
            }
            let listener =
                TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            Some(listener)
        }
        None => None,
    };
    let token = tcp
        .as_ref()
        .map(|_| options.token.clone().unwrap_or_else(random_token));
    let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    {
        let (hub, ids) = (hub.clone(), Arc::clone(&ids));
        thread::Builder::new()
            .name("bntop-unix".into())
            .spawn(move || {
                for stream in unix.incoming().flatten() {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let hub = hub.clone();
                    let _ = thread::Builder::new()
                        .name(format!("bntop-viewer-{id}"))
                        .spawn(move || serve(stream, format!("unix viewer {id}"), id, None, &hub));
                }
            })
            .map_err(|e| format!("cannot start the listener: {e}"))?;
    }
    if let (Some(listener), Some(token)) = (tcp, token.clone()) {
        thread::Builder::new()
            .name("bntop-tcp".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let peer = stream
                        .peer_addr()
                        .map_or_else(|_| "?".into(), |a| a.to_string());
                    let (hub, token) = (hub.clone(), token.clone());
                    let _ = thread::Builder::new()
                        .name(format!("bntop-viewer-{id}"))
                        .spawn(move || {
                            serve(
                                stream,
                                format!("tcp viewer {id} ({peer})"),
                                id,
                                Some(&token),
                                &hub,
                            )
                        });
                }
            })
            .map_err(|e| format!("cannot start the listener: {e}"))?;
    }
    Ok(Server {
        socket: options.socket,
        tcp: tcp_addr,
        token,
    })
}

/// One viewer, from hello to goodbye. Any protocol error drops this connection only.
fn serve<C: Conn>(stream: C, who: String, id: u64, token: Option<&str>, hub: &Sender<HubMessage>) {
    let refuse = |stream: &C, reason: &str| {
        log(&format!("{who}: refused: {reason}"));
        if let (Ok(mut line), Ok(mut out)) = (
            serde_json::to_string(&Refused::new(reason)),
            stream.duplicate(),
        ) {
            line.push('\n');
            let _ = out.write_all(line.as_bytes());
        }
        stream.close();
    };
    let Ok(read_half) = stream.duplicate() else {
        return;
    };
    let _ = stream.set_read_limit(Some(HELLO_TIMEOUT));
    let mut reader = BufReader::new(read_half);
    let hello = match read_line_limited(&mut reader, MAX_CLIENT_LINE) {
        Ok(Some(line)) => {
            serde_json::from_str::<Hello>(&line).map_err(|_| "the first line is not a hello")
        }
        Ok(None) => Err("closed before saying hello"),
        Err(_) => Err("no hello in time, or a bad one"),
    };
    let hello = match hello {
        Ok(h) => h.hello,
        Err(reason) => return refuse(&stream, reason),
    };
    if let Some(expected) = token {
        if hello.token.as_deref() != Some(expected) {
            return refuse(&stream, "wrong or missing token");
        }
    }
    let _ = stream.set_read_limit(None);
    let _ = stream.set_write_limit(Some(WRITE_TIMEOUT));
    let (queue, lines) = crossbeam_channel::bounded::<Line>(VIEWER_QUEUE);
    let Ok(mut write_half) = stream.duplicate() else {
        return;
    };
    let writer_who = who.clone();
    let writer = thread::spawn(move || {
        for line in lines.iter() {
            if let Err(e) = write_half.write_all(line.as_bytes()) {
                log(&format!("{writer_who}: dropped ({e})"));
                write_half.close();
                return;
            }
        }
    });
    let mode = if hello.readonly { " (read-only)" } else { "" };
    log(&format!("{who} attached{mode}"));
    if hub.send(HubMessage::Attach(Viewer { id, queue })).is_err() {
        stream.close();
        return;
    }
    loop {
        match read_line_limited(&mut reader, MAX_CLIENT_LINE) {
            Ok(Some(line)) if line.trim().is_empty() => {}
            Ok(Some(line)) => match serde_json::from_str::<Control>(&line) {
                Ok(_) if hello.readonly => log(&format!("{who}: read-only, control ignored")),
                Ok(control) => {
                    if hub
                        .send(HubMessage::Control {
                            viewer: id,
                            control,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
                Err(_) => {
                    log(&format!(
                        "{who}: sent something that is not a control; dropped"
                    ));
                    break;
                }
            },
            Ok(None) => {
                log(&format!("{who} detached"));
                break;
            }
            Err(e) => {
                log(&format!("{who}: {e}; dropped"));
                break;
            }
        }
    }
    stream.close();
    let _ = writer.join();
}
