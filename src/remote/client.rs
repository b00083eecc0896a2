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
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::error::RemoteError;
use super::ssh_command::SshCommand;
use super::ssh_stderr::SshStderr;
use super::unix_socket::{check_server, my_uid};
use super::wire::{default_socket, read_line_limited, Hello, HelloBody, Refused};
use crate::protocol::{
    Command, Control, Event, Feed, LinkStatus, RecordCheck, RunHeader, READ_FEED_CAPACITY,
};

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
    /// The ssh process of the current connection, for ssh:// targets (a reconnection replaces
    /// it): `close` ends it.
    pub link: Arc<Link>,
}

impl Connection {
    /// Ends the ssh process, if any (the viewer is leaving).
    pub fn close(&self) {
        self.link.replace(None, None);
    }
}

/// The current connection's writing half and ssh process, shared by the writer thread and the
/// reconnecting reader.
#[derive(Default)]
pub struct Link {
    write: Mutex<Option<Box<dyn Write + Send>>>,
    child: Mutex<Option<Child>>,
}

impl Link {
    /// Installs a new connection's halves (or none), ending the old ssh process.
    fn replace(&self, write: Option<Box<dyn Write + Send>>, child: Option<Child>) {
        if let Ok(mut w) = self.write.lock() {
            *w = write;
        }
        if let Ok(mut c) = self.child.lock() {
            if let Some(mut old) = std::mem::replace(&mut *c, child) {
                let _ = old.kill();
                let _ = old.wait();
            }
        }
    }

    /// Writes one line on the current connection; false when there is none or it failed.
    fn send(&self, line: &[u8]) -> bool {
        let Ok(mut w) = self.write.lock() else {
            return false;
        };
        w.as_mut()
            .is_some_and(|w| w.write_all(line).and_then(|()| w.flush()).is_ok())
    }
}

/// How `attach` retries a lost connection: waits doubling from `first`, at most `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const ATTACH: Backoff = Backoff {
        first: Duration::from_millis(250),
        cap: Duration::from_secs(8),
    };

    /// The wait before attempt `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        doubled.min(self.cap)
    }
}

/// How to connect: the token (tcp://), read-only, the ssh command (ssh://), and whether to
/// reconnect when the stream stops without the run's end.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub token: Option<String>,
    pub readonly: bool,
    pub ssh: SshCommand,
    pub reconnect: Option<Backoff>,
}

/// Reading and writing halves, and for ssh:// the process and what it says on stderr.
type Halves = (
    Box<dyn Read + Send>,
    Box<dyn Write + Send>,
    Option<Child>,
    Option<SshStderr>,
);

/// How long a lost connection's reason waits for ssh to exit and say why.
const SSH_EXIT_WAIT: Duration = Duration::from_secs(1);

fn open(target: &Target, ssh: &SshCommand) -> Result<Halves, String> {
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
            Ok((Box::new(read), Box::new(stream), None, None))
        }
        Target::Tcp(address) => {
            let stream = TcpStream::connect(address.as_str())
                .map_err(|e| format!("cannot connect to {address}: {e}"))?;
            let read = stream.try_clone().map_err(|e| e.to_string())?;
            Ok((Box::new(read), Box::new(stream), None, None))
        }
        Target::Ssh {
            destination,
            port,
            socket,
        } => {
            let mut child = ssh_process(ssh, destination, *port, socket.as_deref())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", ssh.program))?;
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err("ssh started without pipes".into());
            };
            let stderr = SshStderr::spawn(stderr)?;
            Ok((Box::new(stdout), Box::new(stdin), Some(child), Some(stderr)))
        }
    }
}

/// `PROGRAM OPTIONS... [-p PORT] -T -- DESTINATION 'bntop bridge [SOCKET]'`: the user's words
/// as arguments (no shell here), the destination after `--`, the remote command quoted.
pub fn ssh_process(
    ssh: &SshCommand,
    destination: &str,
    port: Option<u16>,
    socket: Option<&str>,
) -> Process {
    let mut process = Process::new(&ssh.program);
    process.args(&ssh.options);
    if let Some(port) = port {
        process.arg("-p").arg(port.to_string());
    }
    process
        .arg("-T")
        .arg("--")
        .arg(destination)
        .arg(remote_command(socket));
    process
}

/// A connection that said hello and got the server's first record.
struct Opened {
    reader: BufReader<Box<dyn Read + Send>>,
    write: Box<dyn Write + Send>,
    child: Option<Child>,
    stderr: Option<SshStderr>,
    check: RecordCheck,
    first: Event,
}

/// Connect, say hello, and read the server's first line (so a refusal is an error here); a
/// failure says what ssh said, if it said anything.
fn handshake(target: &Target, options: &Options) -> Result<Opened, String> {
    let (read, write, child, stderr) = open(target, &options.ssh)?;
    match greet(read, write, options) {
        Ok((reader, write, check, first)) => Ok(Opened {
            reader,
            write,
            child,
            stderr,
            check,
            first,
        }),
        Err(e) => Err(explain(e, stderr.as_ref())),
    }
}

/// `reason`, with the last line ssh wrote on stderr for ssh:// connections.
fn explain(reason: String, stderr: Option<&SshStderr>) -> String {
    match stderr {
        Some(stderr) => stderr.explain(reason, SSH_EXIT_WAIT),
        None => reason,
    }
}

type Greeted = (
    BufReader<Box<dyn Read + Send>>,
    Box<dyn Write + Send>,
    RecordCheck,
    Event,
);

/// Say hello and read the server's first record.
fn greet(
    read: Box<dyn Read + Send>,
    mut write: Box<dyn Write + Send>,
    options: &Options,
) -> Result<Greeted, String> {
    let hello = Hello {
        hello: HelloBody {
            token: options.token.clone(),
            readonly: options.readonly,
        },
    };
    let mut line =
        serde_json::to_string(&hello).map_err(|e| format!("cannot encode the hello: {e}"))?;
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
    Ok((reader, write, check, first))
}

/// Connect without reconnecting: the feed ends with the stream.
pub fn connect(
    target: &Target,
    token: Option<String>,
    readonly: bool,
) -> Result<Connection, RemoteError> {
    let options = Options {
        token,
        readonly,
        ..Options::default()
    };
    connect_with(target, options)
}

/// Connect (a refusal or an unreachable server is an error here, before the dashboard opens);
/// then relay in both directions on two threads, reconnecting if `options.reconnect` says so.
pub fn connect_with(target: &Target, options: Options) -> Result<Connection, RemoteError> {
    let opened = handshake(target, &options).map_err(RemoteError::Connect)?;
    let link = Arc::new(Link::default());
    link.replace(Some(opened.write), opened.child);
    let (feed_tx, feed) = crossbeam_channel::bounded(READ_FEED_CAPACITY);
    let (commands, command_rx) = crossbeam_channel::unbounded::<Command>();
    let _ = feed_tx.send(Feed::Event(opened.first.clone()));
    let reading = Reading {
        target: target.clone(),
        options: unattended(&options),
        link: Arc::clone(&link),
        feed: feed_tx,
        seen: Seen::default(),
        resuming: false,
        stderr: opened.stderr,
    };
    let (check, reader, first) = (opened.check, opened.reader, opened.first);
    thread::Builder::new()
        .name("bntop-attach-read".into())
        .spawn(move || reading.run(check, reader, &first))
        .map_err(|source| RemoteError::Thread {
            what: "viewer's reading",
            source,
        })?;
    let writer = Arc::clone(&link);
    let readonly = options.readonly;
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
                // A lost connection drops the control; the footer never sees it applied.
                let _ = writer.send(line.as_bytes());
            }
        })
        .map_err(|source| RemoteError::Thread {
            what: "viewer's writing",
            source,
        })?;
    Ok(Connection {
        feed,
        commands,
        link,
    })
}

/// What the viewer has of the run, to resume without repeating it: the header, the newest step
/// and the records of that step (a reconnection's backlog repeats them).
#[derive(Default)]
struct Seen {
    header: Option<Event>,
    step: u64,
    at_step: Vec<Event>,
    ended: bool,
}

impl Seen {
    fn note(&mut self, event: &Event) {
        match event.step() {
            None if matches!(event, Event::Header(_)) => self.header = Some(event.clone()),
            None => {}
            Some(step) => {
                if step != self.step {
                    self.step = step;
                    self.at_step.clear();
                }
                self.at_step.push(event.clone());
            }
        }
        self.ended |= matches!(event, Event::End(_));
    }

    /// Whether a resumed stream's record is one the viewer has already.
    fn has(&self, event: &Event) -> bool {
        match event.step() {
            None => match (event, &self.header) {
                (Event::Header(new), Some(Event::Header(old))) => same_run(new, old),
                _ => false,
            },
            // A server may send a step's snapshot thinned (its backlog drops old per-channel
            // arrays), so one snapshot per step is the rule, not equality.
            Some(step) if step == self.step => match event {
                Event::Snapshot(_) => self.at_step.iter().any(|e| matches!(e, Event::Snapshot(_))),
                _ => self.at_step.contains(event),
            },
            Some(step) => step < self.step,
        }
    }
}

/// Whether two headers open the same run: its start time and layers (a server adds what it does
/// with the stream, such as its recording policy, which may differ after a restart).
fn same_run(a: &RunHeader, b: &RunHeader) -> bool {
    let names = |h: &RunHeader| h.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    a.started_unix_ms == b.started_unix_ms && a.producer == b.producer && names(a) == names(b)
}

/// The reading thread: relays records, and on a lost stream reconnects with backoff.
struct Reading {
    target: Target,
    options: Options,
    link: Arc<Link>,
    feed: Sender<Feed>,
    seen: Seen,
    /// After a reconnection, until the first new record: the server's backlog repeats what the
    /// viewer has. Only then are records filtered: within one connection steps may go back (a
    /// restore) and echoes may name an earlier step.
    resuming: bool,
    /// What the current ssh process says on stderr (ssh:// targets).
    stderr: Option<SshStderr>,
}

/// The options for reconnecting while the dashboard owns the terminal: ssh must not ask for a
/// password or a host key there (BatchMode), it fails and says why instead. After the user's
/// own options, so that an explicit `BatchMode` of theirs wins (ssh takes an option's first value).
fn unattended(options: &Options) -> Options {
    let mut options = options.clone();
    options
        .ssh
        .options
        .extend(["-o".into(), "BatchMode=yes".into()]);
    options
}

impl Reading {
    fn run(
        mut self,
        mut check: RecordCheck,
        mut reader: BufReader<Box<dyn Read + Send>>,
        first: &Event,
    ) {
        self.seen.note(first);
        loop {
            let lost = match self.relay(&mut check, &mut reader) {
                Relay::ViewerGone => return,
                Relay::Ended(reason) => explain(reason, self.stderr.as_ref()),
            };
            let Some(backoff) = self.options.reconnect else {
                return;
            };
            if self.seen.ended {
                return;
            }
            self.link.replace(None, None);
            let Some(opened) = self.reconnect(backoff, lost) else {
                return;
            };
            self.link.replace(Some(opened.write), opened.child);
            self.stderr = opened.stderr;
            if self.feed.send(Feed::Link(LinkStatus::Connected)).is_err() {
                return;
            }
            // The same run resumes where the viewer is; another run starts over.
            self.resuming = self.seen.has(&opened.first);
            if !self.resuming {
                self.seen = Seen::default();
                if self.feed.send(Feed::Reset).is_err() || !self.forward(opened.first) {
                    return;
                }
            }
            (check, reader) = (opened.check, opened.reader);
        }
    }

    /// Tries again, waiting `backoff` between attempts and saying so on the feed; None when the
    /// dashboard went away.
    fn reconnect(&mut self, backoff: Backoff, mut reason: String) -> Option<Opened> {
        for attempts in 1u32.. {
            let wait = backoff.delay(attempts);
            let status = LinkStatus::Lost {
                attempts: attempts - 1,
                retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                reason: reason.clone(),
            };
            self.feed.send(Feed::Link(status)).ok()?;
            thread::sleep(wait);
            match handshake(&self.target, &self.options) {
                Ok(opened) => return Some(opened),
                Err(e) => reason = e,
            }
        }
        None
    }

    /// Relays until the stream stops (why, in words) or the dashboard goes.
    fn relay(&mut self, check: &mut RecordCheck, reader: &mut impl BufRead) -> Relay {
        read_records(check, reader, |event| {
            if self.resuming && self.seen.has(&event) {
                return true;
            }
            self.resuming = false;
            self.forward(event)
        })
    }

    fn forward(&mut self, event: Event) -> bool {
        self.seen.note(&event);
        self.feed.send(Feed::Event(event)).is_ok()
    }
}

/// How relaying a server's stream stopped.
pub enum Relay {
    /// The dashboard went away.
    ViewerGone,
    /// The stream stopped, and why in words.
    Ended(String),
}

/// Hands the server's records to `forward` until the stream stops or `forward` says the
/// dashboard has gone (false). `check` has seen the records before (the header). A line that
/// is not a record, or a record over the limits (`protocol::limits`), is skipped, as in a
/// session file.
pub fn read_records(
    check: &mut RecordCheck,
    reader: &mut impl BufRead,
    mut forward: impl FnMut(Event) -> bool,
) -> Relay {
    loop {
        match read_line_limited(reader, MAX_SERVER_LINE) {
            Ok(Some(line)) => {
                let Ok(event) = check.line(line.as_bytes()) else {
                    continue;
                };
                if !forward(event) {
                    return Relay::ViewerGone;
                }
            }
            Ok(None) => return Relay::Ended("the server closed the connection".into()),
            Err(e) => return Relay::Ended(format!("cannot read from the server: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            first: Duration::from_millis(100),
            cap: Duration::from_millis(700),
        };
        let waits: Vec<u128> = (1..=6).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700, 700]);
        assert_eq!(Backoff::ATTACH.delay(u32::MAX), Backoff::ATTACH.cap);
    }

    #[test]
    fn ssh_gets_the_users_options_as_words_and_the_path_quoted() {
        let ssh =
            SshCommand::parse("/opt/ssh -i '/keys/my key' -o ProxyJump=gate").unwrap_or_default();
        let process = ssh_process(&ssh, "me@gpu", Some(2222), Some("/run/x;touch y"));
        let args: Vec<String> = process
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(process.get_program(), "/opt/ssh");
        assert_eq!(
            args,
            [
                "-i",
                "/keys/my key",
                "-o",
                "ProxyJump=gate",
                "-p",
                "2222",
                "-T",
                "--",
                "me@gpu",
                "bntop bridge '/run/x;touch y'"
            ]
        );
    }

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
