//! `bntop attach`: connect to a server and turn the connection into the dashboard's feed and
//! commands. Targets: a socket path (default: the user's socket), `tcp://HOST:PORT` (with a
//! token), or `ssh://[user@]host[:port][/socket]`, which runs `ssh -T -- host 'bntop bridge
//! [socket]'` (one command line, its words quoted for the remote shell) and speaks the protocol
//! over ssh's stdin and stdout: no open port, ssh authenticates.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::thread;

use crossbeam_channel::{Receiver, Sender};

use super::error::RemoteError;
use super::unix_socket::{check_server, my_uid};
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
    pub fn parse(target: Option<&str>) -> Result<Target, RemoteError> {
        Self::parse_text(target).map_err(RemoteError::Setup)
    }

    fn parse_text(target: Option<&str>) -> Result<Target, String> {
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
            return parse_ssh(target, rest);
        }
        if target.contains("://") {
            return Err(format!(
                "{target}: unknown scheme (use a socket path, tcp:// or ssh://)"
            ));
        }
        Ok(Target::Unix(PathBuf::from(target)))
    }
}

/// `[user@]host[:port][/socket]` or `[user@][v6addr][:port][/socket]`.
fn parse_ssh(target: &str, rest: &str) -> Result<Target, String> {
    // Error messages show the target with control characters escaped.
    let target = target.escape_debug().to_string();
    let usage = || format!("{target}: expected ssh://[user@]host[:port][/socket]");
    let (host_part, socket) = match rest.split_once('/') {
        Some((h, s)) => (h, Some(format!("/{s}"))),
        None => (rest, None),
    };
    let (user, host_port) = match host_part.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, host_part),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or_else(usage)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(usage)?)),
            }
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{target}: bad port {p:?}"))?,
        ),
        None => None,
    };
    // ssh gets the destination as one argument after `--`; still, keep it to the characters of
    // user names, host names and addresses (ssh may put it into a ProxyCommand).
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:%".contains(c))
    };
    if !plain(host) || user.is_some_and(|u| !plain(u)) {
        return Err(usage());
    }
    if host.contains(':') && !host_port.starts_with('[') {
        return Err(format!(
            "{target}: put an IPv6 address in brackets: ssh://[addr]:port/socket"
        ));
    }
    // The path travels inside a shell command line, single-quoted. POSIX shells take a quoted
    // backslash or newline literally; csh and fish do not, so such a path is refused.
    if socket
        .as_deref()
        .is_some_and(|s| s.chars().any(|c| c == '\\' || c.is_control()))
    {
        return Err(format!(
            "{target}: the socket path may not hold a backslash or a control character"
        ));
    }
    Ok(Target::Ssh {
        destination: match user {
            Some(user) => format!("{user}@{host}"),
            None => host.to_string(),
        },
        port,
        socket,
    })
}

/// One word for a POSIX shell: left alone when it holds only characters no shell treats
/// specially, else single-quoted (a quote inside becomes `'\''`).
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// What `attach ssh://` asks ssh to run remotely: one command line, each word quoted, because
/// sshd hands it to the user's login shell.
pub fn remote_command(socket: Option<&str>) -> String {
    ["bntop", "bridge"]
        .into_iter()
        .chain(socket)
        .map(shell_word)
        .collect::<Vec<_>>()
        .join(" ")
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
            check_server(&stream, path, my_uid())?;
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
                .arg(remote_command(socket.as_deref()));
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
) -> Result<Connection, RemoteError> {
    let (read, mut write, child) = open(target).map_err(RemoteError::Connect)?;
    let hello = Hello {
        hello: HelloBody { token, readonly },
    };
    let mut line = serde_json::to_string(&hello)
        .map_err(|e| RemoteError::Connect(format!("cannot encode the hello: {e}")))?;
    line.push('\n');
    write
        .write_all(line.as_bytes())
        .map_err(|e| RemoteError::Connect(format!("cannot talk to the server: {e}")))?;
    let mut reader = BufReader::with_capacity(1 << 16, read);
    let first = match read_line_limited(&mut reader, MAX_SERVER_LINE) {
        Ok(Some(line)) => line,
        Ok(None) => {
            return Err(RemoteError::Connect(
                "the server closed the connection".into(),
            ))
        }
        Err(e) => {
            return Err(RemoteError::Connect(format!(
                "cannot read from the server: {e}"
            )))
        }
    };
    if let Ok(refused) = serde_json::from_str::<Refused>(&first) {
        if refused.kind == "refused" {
            return Err(RemoteError::Connect(format!(
                "the server refused: {}",
                refused.reason
            )));
        }
    }
    let mut check = RecordCheck::new();
    let first = check
        .line(first.as_bytes())
        .map_err(|e| RemoteError::Connect(format!("the server does not speak bntop: {e}")))?;
    let (feed_tx, feed) = crossbeam_channel::bounded(READ_FEED_CAPACITY);
    let (commands, command_rx) = crossbeam_channel::unbounded::<Command>();
    let _ = feed_tx.send(Feed::Event(first));
    thread::Builder::new()
        .name("bntop-attach-read".into())
        .spawn(move || read_records(check, reader, &feed_tx))
        .map_err(|source| RemoteError::Thread {
            what: "viewer's reading",
            source,
        })?;
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
        .map_err(|source| RemoteError::Thread {
            what: "viewer's writing",
            source,
        })?;
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
        assert_eq!(
            Target::parse(None).ok(),
            Some(Target::Unix(default_socket()))
        );
        assert_eq!(
            Target::parse(Some("/tmp/x.sock")).ok(),
            Some(Target::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            Target::parse(Some("tcp://127.0.0.1:7777")).ok(),
            Some(Target::Tcp("127.0.0.1:7777".into()))
        );
        assert!(Target::parse(Some("tcp://nohost")).is_err());
        assert_eq!(
            Target::parse(Some("ssh://me@gpu:2222/run/bntop.sock")).ok(),
            Some(Target::Ssh {
                destination: "me@gpu".into(),
                port: Some(2222),
                socket: Some("/run/bntop.sock".into())
            })
        );
        assert_eq!(
            Target::parse(Some("ssh://gpu")).ok(),
            Some(Target::Ssh {
                destination: "gpu".into(),
                port: None,
                socket: None
            })
        );
        assert!(Target::parse(Some("ssh://-oProxyCommand=x")).is_err());
        assert!(Target::parse(Some("http://x")).is_err());
    }

    #[test]
    fn ssh_targets_with_ipv6_addresses_lose_their_brackets() {
        let ssh = |destination: &str, port: Option<u16>, socket: Option<&str>| {
            Some(Target::Ssh {
                destination: destination.into(),
                port,
                socket: socket.map(Into::into),
            })
        };
        assert_eq!(
            Target::parse(Some("ssh://[::1]:22/x")).ok(),
            ssh("::1", Some(22), Some("/x"))
        );
        assert_eq!(
            Target::parse(Some("ssh://[::1]/x")).ok(),
            ssh("::1", None, Some("/x"))
        );
        assert_eq!(
            Target::parse(Some("ssh://me@[fe80::1%eth0]")).ok(),
            ssh("me@fe80::1%eth0", None, None)
        );
        for bad in [
            "ssh://[::1",
            "ssh://[::1]22/x",
            "ssh://::1/x",
            "ssh://gpu:0/x",
            "ssh://@gpu",
            "ssh://-l/x",
            "ssh://me@-oX/x",
            "ssh://g;pu/x",
            "ssh://g pu/x",
            "ssh://gpu/a\\b",
            "ssh://gpu/a\nb",
        ] {
            assert!(Target::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_commands_quote_every_word_for_the_shell() {
        assert_eq!(remote_command(None), "bntop bridge");
        assert_eq!(
            remote_command(Some("/run/user/1000/bntop.sock")),
            "bntop bridge /run/user/1000/bntop.sock"
        );
        assert_eq!(
            remote_command(Some("/x;touch y")),
            "bntop bridge '/x;touch y'"
        );
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("$(x)"), "'$(x)'");
        assert_eq!(shell_word("~"), "'~'");
    }
}
