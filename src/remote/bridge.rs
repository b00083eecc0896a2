//! `bntop bridge [SOCKET]`: standard input and output joined to the local server's socket. It is
//! what `bntop attach ssh://host` runs on the remote side, so the protocol travels inside ssh.
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;

pub fn run(socket: &Path) -> Result<(), String> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is `bntop serve` running?)",
            socket.display()
        )
    })?;
    let mut from_server = stream.try_clone().map_err(|e| e.to_string())?;
    let downstream = thread::spawn(move || {
        let mut out = io::stdout().lock();
        let _ = copy_flushing(&mut from_server, &mut out);
    });
    let mut to_server = stream.try_clone().map_err(|e| e.to_string())?;
    let _ = io::copy(&mut io::stdin().lock(), &mut to_server);
    // The viewer hung up: tell the server, and stop.
    let _ = stream.shutdown(Shutdown::Both);
    let _ = downstream.join();
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
