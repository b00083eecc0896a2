//! `bntop serve`, `bntop attach` and `bntop bridge`: a run on one machine, viewers anywhere.
use std::path::PathBuf;

use clap::Args;

use bntop::engine;
use bntop::protocol::EndReason;
use bntop::remote;
use bntop::ui;
use bntop::ui::keys::Context;

use super::train::{recorder, DashboardArgs, TrainArgs};
use super::{exit_after_signal, load_data, Failure};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// Unix socket to listen on (default: $XDG_RUNTIME_DIR/bntop.sock or /tmp/bntop-UID/bntop.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also listen on TCP at this address (e.g. 127.0.0.1:7777); viewers need the token.
    #[arg(long)]
    pub tcp: Option<std::net::SocketAddr>,
    /// The token TCP viewers must present (default: a random one, printed at start).
    #[arg(long, env = "BNTOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow --tcp on an address other than loopback.
    #[arg(long)]
    pub allow_remote: bool,
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
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

#[derive(Args)]
pub struct BridgeArgs {
    /// The server's socket (default: your socket).
    pub socket: Option<PathBuf>,
}

pub fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let config = args.train.config();
    config.validate().map_err(engine::EngineError::Config)?;
    let data = load_data(args.train.data.as_deref())?;
    let recorder = recorder(&args.train)?;
    let recording = recorder.status().path;
    let engine = engine::spawn(config, data)?;
    let hub = remote::hub::spawn(engine, recorder).map_err(Failure::Failed)?;
    let options = remote::server::ServeOptions {
        socket: args
            .socket
            .clone()
            .unwrap_or_else(remote::wire::default_socket),
        tcp: args.tcp,
        token: args.token.clone(),
        allow_remote: args.allow_remote,
    };
    let server = match remote::server::start(options, hub.inbox.clone()) {
        Ok(server) => server,
        Err(e) => {
            let _ = hub.inbox.send(remote::hub::HubMessage::Stop);
            let _ = hub.thread.join();
            return Err(Failure::BadInput(e));
        }
    };
    eprintln!(
        "bntop serve: training; attach with: bntop attach {}",
        server.socket.display()
    );
    if let (Some(addr), Some(token)) = (server.tcp, &server.token) {
        eprintln!("bntop serve: also on tcp://{addr} (token {token})");
    }
    if let Some(path) = recording {
        eprintln!("bntop serve: recording to {path}");
    }
    // SIGINT, SIGTERM and SIGHUP stop training; the hub records up to the end record.
    let inbox = hub.inbox.clone();
    bntop::signals::on_stop_signals(move |signal| {
        eprintln!("bntop serve: signal {signal}: stopping training");
        let _ = inbox.send(remote::hub::HubMessage::Stop);
    })
    .map_err(Failure::Failed)?;
    let end = hub
        .thread
        .join()
        .map_err(|_| Failure::Failed("the hub thread panicked".into()))?;
    drop(server);
    match end.map(|e| (e.reason, e.step, e.message)) {
        Some((EndReason::Completed | EndReason::Quit, step, _)) => {
            eprintln!("bntop serve: run ended at step {step}");
            Ok(())
        }
        Some((_, _, message)) => Err(Failure::Failed(
            message.unwrap_or_else(|| "training failed".into()),
        )),
        None => Err(Failure::Failed(
            "the run stopped without an end record".into(),
        )),
    }
}

pub fn attach(args: &AttachArgs) -> Result<(), Failure> {
    let target =
        remote::client::Target::parse(args.target.as_deref()).map_err(Failure::BadInput)?;
    let connection = remote::client::connect(&target, args.token.clone(), args.readonly)
        .map_err(Failure::BadInput)?;
    let mut options = args.dashboard.options();
    options.readonly = args.readonly;
    let result = ui::run(
        &connection.feed,
        &connection.commands,
        options,
        Context::Live,
    );
    drop(connection.commands);
    if let Some(mut child) = connection.child {
        let _ = child.kill();
        let _ = child.wait();
    }
    let outcome = result.map_err(Failure::Failed)?;
    exit_after_signal(&outcome)
}
