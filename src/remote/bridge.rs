//! `bntop bridge [SOCKET]`: standard input and output joined to the local server's socket. It is
//! what `bntop attach ssh://host` runs on the remote side, so the protocol travels inside ssh.
//! It ends as soon as either side does: when the server closes (the run ended), at once, even
//! though nothing more comes from the viewer, so ssh closes and the viewer sees the end.
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;

use super::error::RemoteError;
use super::unix_socket::{check_server, my_uid};

pub fn run(socket: &Path) -> Result<(), RemoteError> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        RemoteError::Connect(format!(
            "cannot connect to {}: {e} (is `bntop serve` running?)",
            socket.display()
        ))
    })?;
    check_server(&stream, socket, my_uid()).map_err(RemoteError::Connect)?;
    let connection_lost = |e: io::Error| RemoteError::Connect(format!("{}: {e}", socket.display()));
    let mut to_server = stream.try_clone().map_err(connection_lost)?;
    // Viewer to server on a thread of its own: reading stdin may block for as long as the
    // viewer is silent, and must not keep the bridge alive once the server is gone.
    thread::Builder::new()
        .name("bntop-bridge-up".into())
        .spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut to_server);
            // The viewer hung up: tell the server; the copy below then ends too.
            let _ = to_server.shutdown(Shutdown::Both);
        })
        .map_err(|source| RemoteError::Thread {
            what: "bridge",
            source,
        })?;
    let mut from_server = stream.try_clone().map_err(connection_lost)?;
    let _ = copy_flushing(&mut from_server, &mut io::stdout().lock());
    let _ = stream.shutdown(Shutdown::Both);
    // Returning ends the process, and with it the thread still reading stdin.
    Ok(())
}

/// Like `io::copy`, but flushes after every read, so records are not held in a buffer.
fn copy_flushing(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}
