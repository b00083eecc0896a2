//! `bntop serve`, `bntop attach` and `bntop bridge`: a run on one machine, viewers anywhere.
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use bntop::engine;
use bntop::protocol::EndReason;
use bntop::remote;
use bntop::remote::log::{flush as flush_log, log};
use bntop::remote::ssh_command::SshCommand;
use bntop::ui;
use bntop::ui::keys::Context;

use super::train::{recorder, DashboardArgs, TrainArgs};
use super::{exit_after_signal, load_data, Failure};

/// The training options that mean nothing when the events come from a producer.
const ENGINE_OPTIONS: [&str; 18] = [
    "headless",
    "json",
    "steps",
    "data",
    "batch",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "weight_decay_mode",
    "bn_momentum",
    "seed",
    "eval_every",
    "eval_samples",
    "lab_every",
    "precise_samples",
    "conv_bias",
    "data_order",
];

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// `-`: serve the records an external producer (e.g. bntop-torch) writes to standard input
    /// instead of training, and write viewers' controls to standard output, one JSON line each
    /// (sessions/FORMAT.md, "Producers"). The training options are then refused; --record and
    /// --no-record apply as usual.
    #[arg(long, value_name = "-", conflicts_with_all = ENGINE_OPTIONS)]
    pub source: Option<String>,
    /// Unix socket to listen on (default: $XDG_RUNTIME_DIR/bntop.sock or /tmp/bntop-UID/bntop.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also listen on TCP at this address (e.g. 127.0.0.1:7777); viewers need the token.
    #[arg(long)]
    pub tcp: Option<std::net::SocketAddr>,
    /// The token TCP viewers must present, at least 16 characters (default: a random one,
    /// printed at start).
    #[arg(long, env = "BNTOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow --tcp on an address other than loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Let a viewer's `quit` control stop the run for everyone (by default it is rejected: a
    /// viewer's q only detaches it, and a signal to serve stops the run).
    #[arg(long)]
    pub allow_viewer_quit: bool,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Socket path, tcp://HOST:PORT or ssh://[user@]host[:port][/socket] (default: your socket).
    pub target: Option<String>,
    /// Token for tcp:// targets.
    #[arg(long, env = "BNTOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Watch only: controls are not sent.
    #[arg(long)]
    pub readonly: bool,
    /// The ssh command for ssh:// targets, with its options, split like a shell line but run
    /// without one (e.g. "ssh -i ~/.ssh/lab_key -o ProxyJump=gate"); default: ssh.
    #[arg(long, env = "BNTOP_SSH", value_name = "COMMAND")]
    pub ssh: Option<String>,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

#[derive(Args)]
pub struct BridgeArgs {
    /// The server's socket (default: your socket).
    pub socket: Option<PathBuf>,
}

/// How long the viewers get to receive the end record before the server exits.
const VIEWERS_FINISH: Duration = Duration::from_secs(2);

pub fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let from_stdin = check_serve_args(args)?;
    // The socket (and its directory) and the token are checked before training starts.
    let listeners = remote::server::bind(remote::server::ServeOptions {
        socket: args
            .socket
            .clone()
            .unwrap_or_else(remote::wire::default_socket),
        default_socket: args.socket.is_none(),
        tcp: args.tcp,
        token: args.token.clone(),
        allow_remote: args.allow_remote,
    })?;
    let source = if from_stdin {
        None
    } else {
        Some(load_data(args.train.data.as_deref())?)
    };
    let recorder = recorder(&args.train)?;
    let recording = recorder.status().path;
    let source = match source {
        // Standard output carries nothing but controls from here on.
        None => remote::producer::spawn(std::io::stdin(), std::io::stdout())?,
        Some(data) => remote::source::Source::engine(engine::spawn(args.train.config(), data)?),
    };
    let hub = remote::hub::spawn(source, recorder, args.allow_viewer_quit)?;
    let server = match remote::server::start(listeners, hub.inbox.clone()) {
        Ok(server) => server,
        Err(e) => {
            let _ = hub.inbox.send(remote::hub::HubMessage::Stop);
            let _ = hub.thread.join();
            return Err(e.into());
        }
    };
    announce(&server, from_stdin, recording);
    // SIGINT, SIGTERM and SIGHUP stop the run (quit to the engine or the producer); the hub
    // records up to the end record.
    let inbox = hub.inbox.clone();
    bntop::signals::on_stop_signals(move |signal| {
        log(format!("signal {signal}: stopping the run"));
        let _ = inbox.send(remote::hub::HubMessage::Stop);
    })
    .map_err(Failure::Failed)?;
    let end = hub
        .thread
        .join()
        .map_err(|_| Failure::Failed("the hub thread panicked".into()));
    // Every viewer gets the end record and then end of stream, before the process goes.
    server.finish(VIEWERS_FINISH);
    drop(server);
    let result = match end?.map(|e| (e.reason, e.step, e.message)) {
        Some((EndReason::Completed | EndReason::Quit, step, _)) => {
            log(format!("run ended at step {step}"));
            Ok(())
        }
        Some((_, _, message)) => Err(Failure::Failed(
            message.unwrap_or_else(|| "the run failed".into()),
        )),
        None => Err(Failure::Failed(
            "the run stopped without an end record".into(),
        )),
    };
    flush_log(Duration::from_secs(1));
    result
}

/// The options serve refuses before binding anything; returns whether the records come from a
/// producer on standard input (`--source -`) rather than the built-in engine.
fn check_serve_args(args: &ServeArgs) -> Result<bool, Failure> {
    let from_stdin = match args.source.as_deref() {
        None => false,
        Some("-") => true,
        Some(other) => {
            return Err(Failure::BadInput(format!(
                "--source {other}: only - (standard input) is supported"
            )))
        }
    };
    if args.train.dashboard.compare.is_some() {
        return Err(Failure::BadInput(
            "--compare draws in a dashboard: give it to bntop attach".into(),
        ));
    }
    if !from_stdin {
        let config = args.train.config();
        config.validate().map_err(engine::EngineError::Config)?;
    }
    Ok(from_stdin)
}

/// Tells the user where to attach (and the TCP token) and where the run is recorded.
fn announce(server: &remote::server::Server, from_stdin: bool, recording: Option<String>) {
    let doing = if from_stdin {
        "reading the producer's records on stdin"
    } else {
        "training"
    };
    log(format!(
        "{doing}; attach with: bntop attach {}",
        server.socket().display()
    ));
    if let (Some(addr), Some(token)) = (server.tcp, &server.token) {
        log(format!("also on tcp://{addr} (token {token})"));
    }
    if let Some(path) = recording {
        log(format!("recording to {path}"));
    }
}

pub fn attach(args: &AttachArgs) -> Result<(), Failure> {
    let target = remote::client::Target::parse(args.target.as_deref())?;
    let compare = args.dashboard.comparison()?;
    let ssh = match args.ssh.as_deref() {
        Some(text) => SshCommand::parse(text).map_err(Failure::BadInput)?,
        None => SshCommand::default(),
    };
    let options = remote::client::Options {
        token: args.token.clone(),
        readonly: args.readonly,
        ssh,
        // A lost connection shows DISCONNECTED and is retried until the viewer quits.
        reconnect: Some(remote::client::Backoff::ATTACH),
    };
    let connection = remote::client::connect_with(&target, options)?;
    let mut options = args.dashboard.options();
    options.readonly = args.readonly;
    let result = ui::run_comparing(
        &connection.feed,
        &connection.commands,
        options,
        Context::Live,
        compare,
    );
    connection.close();
    drop(connection.commands);
    let outcome = result.map_err(Failure::Failed)?;
    exit_after_signal(&outcome)
}
