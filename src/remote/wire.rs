//! The messages of the remote protocol that are not session records, and line reading with a
//! length limit (a peer can send anything).
use std::io::{self, BufRead};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A line longer than this is a protocol error: controls and hellos are tiny.
pub const MAX_CLIENT_LINE: usize = 64 * 1024;

/// The viewer's first line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Hello {
    pub hello: HelloBody,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HelloBody {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub readonly: bool,
}

/// The server's answer to a bad hello, before it closes the connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Refused {
    pub kind: String,
    pub reason: String,
}

impl Refused {
    pub fn new(reason: impl Into<String>) -> Refused {
        Refused {
            kind: "refused".into(),
            reason: reason.into(),
        }
    }
}

/// Read one line of at most `limit` bytes (without its newline). `Ok(None)` at end of stream;
/// an error for a longer line or invalid UTF-8.
pub fn read_line_limited(reader: &mut impl BufRead, limit: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed mid-line",
                ))
            };
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        line.extend_from_slice(chunk);
        let consumed = found.map_or(chunk.len(), |i| i + 1);
        reader.consume(consumed);
        if found.is_some() {
            return String::from_utf8(line)
                .map(Some)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"));
        }
    }
}

/// The default socket: `$XDG_RUNTIME_DIR/bntop.sock`, else `/tmp/bntop-<uid>/bntop.sock`. Its
/// directory must be private to the user (`serve` checks).
pub fn default_socket() -> PathBuf {
    default_socket_for(
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        super::unix_socket::my_uid(),
    )
}

fn default_socket_for(runtime_dir: Option<&std::ffi::OsStr>, uid: u32) -> PathBuf {
    match runtime_dir.filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("bntop.sock"),
        None => PathBuf::from(format!("/tmp/bntop-{uid}")).join("bntop.sock"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_limited_and_must_be_utf8() {
        let mut input = io::Cursor::new(b"short\nthis one is far too long\n\xff\xfe\n".to_vec());
        assert_eq!(
            read_line_limited(&mut input, 10).ok().flatten(),
            Some("short".into())
        );
        assert!(read_line_limited(&mut input, 10).is_err());
        let mut bad = io::Cursor::new(b"\xff\xfe\n".to_vec());
        assert!(read_line_limited(&mut bad, 10).is_err());
        let mut eof = io::Cursor::new(Vec::new());
        assert_eq!(read_line_limited(&mut eof, 10).ok(), Some(None));
        let mut cut = io::Cursor::new(b"no newline".to_vec());
        assert!(read_line_limited(&mut cut, 100).is_err());
    }

    #[test]
    fn the_default_socket_is_in_the_runtime_dir_or_a_per_user_tmp_dir() {
        use std::ffi::OsStr;
        assert_eq!(
            default_socket_for(Some(OsStr::new("/run/user/1000")), 1000),
            PathBuf::from("/run/user/1000/bntop.sock")
        );
        assert_eq!(
            default_socket_for(Some(OsStr::new("")), 1000),
            PathBuf::from("/tmp/bntop-1000/bntop.sock")
        );
        assert_eq!(
            default_socket_for(None, 0),
            PathBuf::from("/tmp/bntop-0/bntop.sock")
        );
    }
}
