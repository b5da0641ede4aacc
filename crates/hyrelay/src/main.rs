//! `hyrelay`: one binary, subcommands for the relay, its management and the tools.

mod bridge;
mod bridge_config;
mod manage;
mod replay;
mod run;
mod wcf;
mod wire;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A self-hostable Azure Relay: Hybrid Connections over WebSockets and HTTP, with SAS
/// authorization, for listeners behind firewalls that open no inbound port.
///
/// Quick start: `hyrelay up` starts a relay with an embedded configuration and prints a
/// connection string; `hyrelay hyco create NAME` adds a hybrid connection; point any Azure
/// Relay Hybrid Connections client (hyco-ws, hyco-https, Microsoft.Azure.Relay) at it.
#[derive(Parser)]
#[command(
    name = "hyrelay",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_long_help = "Environment:\n  HYRELAY_LOG      log filter, e.g. `warn`, `info` (default), `hyrelay_relay=debug`; logs never\n                   carry keys, signatures or tokens\n  HYRELAY_WORKERS  runtime threads: unset = one per core; 1 = one thread (fewer cross-thread\n                   wake-ups; worth a try on a small machine); 0 = the main thread only\n  HYRELAY_DIAL_AHEAD  connections a bridge keeps dialled ahead per relay address, so the next\n                   sender or rendezvous skips its TCP+TLS handshake (default 2; 0 = off; used\n                   with TLS or a relay on another machine, never for a clear loopback relay)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where management commands act: a data directory (offline; a running relay picks the
/// change up within a second) or a running relay (`-x`).
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// Data directory of the relay to change (default ./.hyrelay).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Act on a running relay through its management API, authenticating with this
    /// connection string (its rule needs Manage rights).
    #[arg(
        short = 'x',
        long = "connection-string",
        global = true,
        value_name = "CONNECTION_STRING",
        env = "HYRELAY_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// CA certificate to trust when -x names a TLS endpoint (e.g. DIR/ca.pem of `hyrelay up`).
    #[arg(long, global = true, value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Cmd {
    /// Run a relay with the embedded default configuration: one namespace answering on every
    /// host name, the rule RootManageSharedAccessKey (Listen, Send, Manage), a self-signed
    /// certificate; all kept in the data directory and created on first start.
    Up(run::UpArgs),
    /// Run a relay from a configuration file (TOML; see README "Configuration").
    Relay(run::RelayArgs),
    /// Manage hybrid connections.
    #[command(subcommand)]
    Hyco(manage::HycoCmd),
    /// Persistent WCF relays of the legacy face (as `az relay wcfrelay`): listeners that
    /// register with dynamic-relay = false need one, and its type decides which listeners
    /// may register. Offline on --data-dir, or online with -x.
    #[command(subcommand)]
    Wcfrelay(manage::WcfRelayCmd),
    /// Manage shared access policies (SAS rules) of the namespace or of one hybrid connection.
    #[command(subcommand)]
    Policy(manage::PolicyCmd),
    /// Show or regenerate the keys of a policy.
    #[command(subcommand)]
    Keys(manage::KeysCmd),
    /// Print a connection string for a policy (and optionally a hybrid connection).
    ConnectionString(manage::ConnStrArgs),
    /// Print a SAS token made from a connection string.
    Token(manage::TokenArgs),
    /// Forward TCP/UDP ports and Unix sockets over hybrid connections with azbridge's command
    /// line (-L beside the clients, -T beside the servers; both dial out), and bridge WCF
    /// net.tcp services (--wcf beside the service, --wcf-local beside its legacy clients).
    Bridge(bridge::BridgeArgs),
    /// .NET Binary XML (binary SOAP) tools: decode to text XML, encode from it.
    #[command(subcommand)]
    Nbfx(wire::NbfxCmd),
    /// .NET Message Framing (net.tcp) tools: decode captured WCF sessions.
    #[command(subcommand)]
    Nmf(wire::NmfCmd),
    /// Record TCP traffic as a proxy: accept on --listen, forward to --target, write every
    /// byte both ways to --out in hyrelay's capture format (JSON lines), which
    /// `hyrelay nmf decode` and `hyrelay replay` read.
    Capture(wire::CaptureArgs),
    /// Replay the client side of captured WCF sessions (capture file, pcap or pcapng)
    /// against a live net.tcp service, with Via and To rewritten to --target, and compare
    /// each answer with the captured one structurally (message ids, RelatesTo, GUIDs and
    /// timestamps ignored). Prints the differences; exits 1 on any mismatch.
    ///
    /// Example: `hyrelay replay fixtures/captures/tcp-3calls/capture.jsonl --target
    /// net.tcp://127.0.0.1:8000/CreditCheck`
    Replay(replay::ReplayArgs),
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HYRELAY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs();
    // A relay holds two sockets per relayed connection: raise the descriptor limit to the
    // hard limit instead of failing at 1024.
    if let Ok(n) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!("open file limit: {n}");
    }
    // HYRELAY_WORKERS=N sets the runtime's worker threads (default: one per core);
    // 0 runs everything on the main thread; 1 measured lowest latency for the bridge benchmark.
    let workers = std::env::var("HYRELAY_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let built = match workers {
        Some(0) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        match cli.cmd {
            Cmd::Up(a) => run::up(a).await,
            Cmd::Relay(a) => run::relay(a).await,
            Cmd::Hyco(c) => manage::hyco(c).await,
            Cmd::Wcfrelay(c) => manage::wcfrelay(c).await,
            Cmd::Policy(c) => manage::policy(c).await,
            Cmd::Keys(c) => manage::keys(c).await,
            Cmd::ConnectionString(a) => manage::connection_string(a).await,
            Cmd::Token(a) => manage::token(a),
            Cmd::Bridge(a) => bridge::run(a).await,
            Cmd::Nbfx(c) => wire::nbfx(c),
            Cmd::Nmf(c) => match wire::nmf(c) {
                Ok(true) => Ok(()),
                Ok(false) => return Err(None),
                Err(e) => Err(e),
            },
            Cmd::Capture(a) => wire::capture(a).await,
            Cmd::Replay(a) => match replay::replay(a).await {
                Ok(true) => Ok(()),
                Ok(false) => return Err(None),
                Err(e) => Err(e),
            },
        }
        .map_err(Some)
    });
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(Some(e)) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
        Err(None) => std::process::ExitCode::FAILURE,
    }
}
