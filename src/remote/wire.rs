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

/// What [`read_line_skipping`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A whole line, in the buffer (without its newline).
    Line,
    /// A line longer than the limit, skipped to its newline; nothing of it was kept.
    TooLong,
    /// End of stream after a line that had no newline (the writer died mid-line); dropped.
    CutAtEof,
    /// End of stream.
    Eof,
}

/// Read the next line into `line` (cleared first), skipping a line over `limit` bytes without
/// holding it: the stream goes on at the line after it. For peers whose bad lines are counted
/// and skipped rather than ending the stream.
pub fn read_line_skipping(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    let mut started = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            line.clear();
            return Ok(if started {
                LineRead::CutAtEof
            } else {
                LineRead::Eof
            });
        }
        started = true;
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if !too_long && line.len() + chunk.len() > limit {
            too_long = true;
            line.clear();
            line.shrink_to(limit.min(64 * 1024));
        }
        if !too_long {
            line.extend_from_slice(chunk);
        }
        let consumed = chunk.len() + usize::from(found);
        reader.consume(consumed);
        if found {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
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
    fn over_long_lines_are_skipped_and_the_stream_goes_on() {
        let text = b"short\nthis one is far too long\nnext\n\ncut".to_vec();
        // A one-byte buffer: every line arrives in pieces.
        let mut input = io::BufReader::with_capacity(1, io::Cursor::new(text));
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            let read = read_line_skipping(&mut input, &mut line, 10).expect("read");
            got.push((read, String::from_utf8_lossy(&line).into_owned()));
            if matches!(got.last(), Some((LineRead::Eof, _))) {
                break;
            }
        }
        let expected = [
            (LineRead::Line, "short"),
            (LineRead::TooLong, ""),
            (LineRead::Line, "next"),
            (LineRead::Line, ""),
            (LineRead::CutAtEof, ""),
            (LineRead::Eof, ""),
        ];
        let expected: Vec<(LineRead, String)> =
            expected.into_iter().map(|(r, s)| (r, s.into())).collect();
        assert_eq!(got, expected);
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
