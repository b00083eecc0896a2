//! `bntop attach`: connect to a server and turn the connection into the dashboard's feed and
//! commands. Targets: a socket path (default: the user's socket), `tcp://HOST:PORT` (with a
//! token), or `ssh://[user@]host[:port][/socket]`, which runs `ssh host bntop bridge [socket]`
//! and speaks the protocol over ssh's stdin and stdout: no open port, ssh authenticates.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use super::wire::{default_socket, read_line_limited, Hello, HelloBody, Refused};
use crate::protocol::{Command, Control, Feed, RecordCheck, READ_FEED_CAPACITY};

/// Records are at most a few tens of KB; a line longer than any record within the limits is not
/// bntop talking.
const MAX_SERVER_LINE: usize = crate::protocol::MAX_LINE;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
    Ssh {
        destination: String,
        port: Option<u16>,
        socket: Option<String>,
    },
}

impl Target {
    pub fn parse(target: Option<&str>) -> Result<Target, String> {
        let Some(target) = target else {
            return Ok(Target::Unix(default_socket()));
        };
        if let Some(address) = target.strip_prefix("tcp://") {
            if address
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!("{target}: expected tcp://HOST:PORT"));
            }
            return Ok(Target::Tcp(address.to_string()));
        }
        if let Some(rest) = target.strip_prefix("ssh://") {
            let (host_part, socket) = match rest.split_once('/') {
                Some((h, s)) => (h, Some(format!("/{s}"))),
                None => (rest, None),
            };
            let (destination, port) = match host_part.rsplit_once(':') {
                Some((d, p)) => {
                    let port = p.parse().map_err(|_| format!("{target}: bad port {p:?}"))?;
                    (d, Some(port))
                }
                None => (host_part, None),
            };
            if destination.is_empty() || destination.starts_with('-') {
                return Err(format!(
                    "{target}: expected ssh://[user@]host[:port][/socket]"
                ));
            }
            return Ok(Target::Ssh {
                destination: destination.to_string(),
                port,
                socket,
            });
        }
        if target.contains("://") {
            return Err(format!(
                "{target}: unknown scheme (use a socket path, tcp:// or ssh://)"
            ));
        }
        Ok(Target::Unix(PathBuf::from(target)))
    }
}

pub struct Connection {
    pub feed: Receiver<Feed>,
    pub commands: Sender<Command>,
    /// The ssh process, for ssh:// targets.
    pub child: Option<Child>,
}

type Halves = (Box<dyn Read + Send>, Box<dyn Write + Send>, Option<Child>);

fn open(target: &Target) -> Result<Halves, String> {
    match target {
        Target::Unix(path) => {
            let stream = UnixStream::connect(path).map_err(|e| {
                format!(
                    "cannot connect to {}: {e} (is `bntop serve` running?)",
                    path.display()
                )
            })?;
            let read = stream.try_clone().map_err(|e| e.to_string())?;
            Ok((Box::new(read), Box::new(stream), None))
        }
        Target::Tcp(address) => {
            let stream = TcpStream::connect(address.as_str())
                .map_err(|e| format!("cannot connect to {address}: {e}"))?;
            let read = stream.try_clone().map_err(|e| e.to_string())?;
            Ok((Box::new(read), Box::new(stream), None))
        }
        Target::Ssh {
            destination,
            port,
            socket,
        } => {
            let mut ssh = Process::new("ssh");
            if let Some(port) = port {
                ssh.arg("-p").arg(port.to_string());
            }
            ssh.arg("-T")
                .arg("--")
                .arg(destination)
                .arg("bntop")
                .arg("bridge");
            if let Some(socket) = socket {
                ssh.arg(socket);
            }
            let mut child = ssh
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot run ssh: {e}"))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err("ssh started without pipes".into());
            };
            Ok((Box::new(stdout), Box::new(stdin), Some(child)))
        }
    }
}

/// Connect, say hello, and read the server's first line (so a refusal is an error here, before
/// the dashboard opens); then relay in both directions on two threads.
pub fn connect(
    target: &Target,
    token: Option<String>,
    readonly: bool,
) -> Result<Connection, String> {
    let (read, mut write, child) = open(target)?;
    let hello = Hello {
        hello: HelloBody { token, readonly },
    };
    let mut line = serde_json::to_string(&hello).map_err(|e| e.to_string())?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .map_err(|e| format!("cannot talk to the server: {e}"))?;
    let mut reader = BufReader::with_capacity(1 << 16, read);
    let first = match read_line_limited(&mut reader, MAX_SERVER_LINE) {
        Ok(Some(line)) => line,
        Ok(None) => return Err("the server closed the connection".into()),
        Err(e) => return Err(format!("cannot read from the server: {e}")),
    };
    if let Ok(refused) = serde_json::from_str::<Refused>(&first) {
        if refused.kind == "refused" {
            return Err(format!("the server refused: {}", refused.reason));
        }
    }
    let mut check = RecordCheck::new();
    let first = check
        .line(first.as_bytes())
        .map_err(|e| format!("the server does not speak bntop: {e}"))?;
    let (feed_tx, feed) = crossbeam_channel::bounded(READ_FEED_CAPACITY);
    let (commands, command_rx) = crossbeam_channel::unbounded::<Command>();
    let _ = feed_tx.send(Feed::Event(first));
    thread::Builder::new()
        .name("bntop-attach-read".into())
        .spawn(move || read_records(check, reader, &feed_tx))
        .map_err(|e| e.to_string())?;
    thread::Builder::new()
        .name("bntop-attach-write".into())
        .spawn(move || {
            for command in command_rx.iter() {
                // Quitting the viewer detaches; it does not stop the run.
                let Command::Run(control) = command else {
                    continue;
                };
                if readonly || control == Control::Quit {
                    continue;
                }
                let Ok(mut line) = serde_json::to_string(&control) else {
                    continue;
                };
                line.push('\n');
                if write
                    .write_all(line.as_bytes())
                    .and_then(|()| write.flush())
                    .is_err()
                {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(Connection {
        feed,
        commands,
        child,
    })
}

/// Relay the server's records to the dashboard until the stream ends or the dashboard goes.
/// `check` has seen the records before (the header). A line that is not a record, or a record
/// over the limits (`protocol::limits`), is skipped, as in a session file.
pub fn read_records(mut check: RecordCheck, mut reader: impl BufRead, feed: &Sender<Feed>) {
    while let Ok(Some(line)) = read_line_limited(&mut reader, MAX_SERVER_LINE) {
        if let Ok(event) = check.line(line.as_bytes()) {
            if feed.send(Feed::Event(event)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::parse(None), Ok(Target::Unix(default_socket())));
        assert_eq!(
            Target::parse(Some("/tmp/x.sock")),
            Ok(Target::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            Target::parse(Some("tcp://127.0.0.1:7777")),
            Ok(Target::Tcp("127.0.0.1:7777".into()))
        );
        assert!(Target::parse(Some("tcp://nohost")).is_err());
        assert_eq!(
            Target::parse(Some("ssh://me@gpu:2222/run/bntop.sock")),
            Ok(Target::Ssh {
                destination: "me@gpu".into(),
                port: Some(2222),
                socket: Some("/run/bntop.sock".into())
            })
        );
        assert_eq!(
            Target::parse(Some("ssh://gpu")),
            Ok(Target::Ssh {
                destination: "gpu".into(),
                port: None,
                socket: None
            })
        );
        assert!(Target::parse(Some("ssh://-oProxyCommand=x")).is_err());
        assert!(Target::parse(Some("http://x")).is_err());
    }
}
