//! The `tim-node` binary: runs a node with its local HTTP/WebSocket API, or prints a data dir's
//! account id. Flags map into `tim_node::Config`; a TOML file can hold the same options.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use tim_node::{api, Config, Multiaddr, Node};

mod client;
mod demo;
mod token;

#[derive(Parser)]
#[command(name = "tim-node", version, about = "A decentralized instant-messaging node")]
struct Cli {
    /// Log format (filter with RUST_LOG, e.g. RUST_LOG=tim_node=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node and its local API.
    Run(RunArgs),
    /// Start three nodes (alice, bob, carol) on loopback and print their web pages; with
    /// --script, run a narrated scenario instead and exit.
    Demo {
        /// Run the scenario (message, revoke, burn after reading, room) and check every step.
        #[arg(long)]
        script: bool,
    },
    #[command(flatten)]
    Client(client::ClientCmd),
    /// Print the account id of a data dir (creating the account on first use).
    Id {
        /// The node's data dir.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// A TOML file with any of the options in docs/api.md (data_dir, listen, bootstrap, api,
    /// max_connections, relay, external_addrs, ...). Flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data dir (keys, database, API token). Default: ./tim-data
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen multiaddrs. Default: TCP and QUIC on every interface, OS-chosen ports.
    #[arg(long, num_args = 1..)]
    listen: Vec<Multiaddr>,
    /// Bootstrap peers, each /ip4/…/tcp/…/p2p/<peer id>.
    #[arg(long, num_args = 1..)]
    bootstrap: Vec<Multiaddr>,
    /// Local API address. Default: 127.0.0.1:7117 (port 0 picks a free one). Anything but
    /// loopback exposes the API to the network (a warning says so).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// More names (or IP addresses, no port) that requests may carry in their Host header, besides
    /// localhost, loopback addresses and the --api address.
    #[arg(long, num_args = 1..)]
    api_allowed_hosts: Vec<String>,
    /// Serve this API token, read from a file (default: $TIM_TOKEN, else DATA_DIR/api-token,
    /// created on first start).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Refuse revokes older than this many seconds (default: no limit).
    #[arg(long)]
    revoke_window_secs: Option<u64>,
    /// Connected peers above which the least valuable are closed (default 64).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Connected peers that pruning brings the count down to (default 48).
    #[arg(long)]
    target_connections: Option<usize>,
    /// Serve as a relay for nodes behind NATs (for a node with a public address).
    #[arg(long)]
    relay: bool,
    /// Addresses peers can dial this node at, known in advance (a public site's address), e.g.
    /// /ip4/203.0.113.7/tcp/4001. Published at once; AutoNAT finds the others.
    #[arg(long, num_args = 1..)]
    external_addr: Vec<Multiaddr>,
}

/// The TOML config file.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    api: Option<SocketAddr>,
    api_allowed_hosts: Vec<String>,
    revoke_window_secs: Option<u64>,
    sync_writes: bool,
    deletion_receipts: Option<bool>,
    seal_direct: Option<bool>,
    seal_key_rotation_secs: Option<u64>,
    inbound: Option<String>,
    max_inbound_pipes: Option<usize>,
    max_pending_incoming: Option<u32>,
    max_established_incoming: Option<u32>,
    max_established: Option<u32>,
    max_established_per_peer: Option<u32>,
    max_connections: Option<usize>,
    target_connections: Option<usize>,
    relay: bool,
    external_addrs: Vec<Multiaddr>,
    relay_reservations: Option<usize>,
    relay_max_reservations: Option<usize>,
    relay_max_circuits: Option<usize>,
    relay_max_circuit_secs: Option<u64>,
    relay_max_circuit_bytes: Option<u64>,
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    // Every file the node creates (RocksDB's included) is the user's alone: 0600, dirs 0700.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let default_logs = match cli.command {
        Command::Run(_) => "info,libp2p=warn",
        _ => "warn",
    };
    init_logs(cli.log_format, default_logs);
    match cli.command {
        Command::Id { data_dir } => {
            println!("{}", tim_node::account_of(&data_dir)?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
        Command::Demo { script } => demo::run(script, shutdown_signal()).await,
        Command::Client(cmd) => client::run(cmd, shutdown_signal()).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("tim-data"));
    let mut config = Config::new(&data_dir);
    let listen = if args.listen.is_empty() {
        file.listen
    } else {
        args.listen
    };
    if !listen.is_empty() {
        config.listen = listen;
    }
    config.bootstrap = if args.bootstrap.is_empty() {
        file.bootstrap
    } else {
        args.bootstrap
    };
    config.revoke_window = args
        .revoke_window_secs
        .or(file.revoke_window_secs)
        .map(Duration::from_secs);
    config.sync_writes = file.sync_writes;
    config.deletion_receipts = file.deletion_receipts.unwrap_or(config.deletion_receipts);
    config.seal_direct = file.seal_direct.unwrap_or(config.seal_direct);
    if let Some(secs) = file.seal_key_rotation_secs {
        config.seal_key_rotation = Duration::from_secs(secs);
    }
    if let Some(inbound) = &file.inbound {
        config.inbound = tim_node::Inbound::parse(inbound)
            .ok_or_else(|| anyhow::anyhow!("inbound = {inbound:?}: give \"anyone\" or \"contacts\""))?;
    }
    let set = |field: &mut u32, value: Option<u32>| *field = value.unwrap_or(*field);
    set(&mut config.max_pending_incoming, file.max_pending_incoming);
    set(&mut config.max_established_incoming, file.max_established_incoming);
    set(&mut config.max_established, file.max_established);
    set(&mut config.max_established_per_peer, file.max_established_per_peer);
    config.max_inbound_pipes = file.max_inbound_pipes.unwrap_or(config.max_inbound_pipes);
    if let Some(n) = args.max_connections.or(file.max_connections) {
        config.max_connections = n;
    }
    if let Some(n) = args.target_connections.or(file.target_connections) {
        config.target_connections = n;
    }
    config.relay_server = args.relay || file.relay;
    config.external_addrs = if args.external_addr.is_empty() {
        file.external_addrs
    } else {
        args.external_addr
    };
    config.relay_reservations = file.relay_reservations.unwrap_or(config.relay_reservations);
    let limits = &mut config.relay_limits;
    limits.max_reservations = file.relay_max_reservations.unwrap_or(limits.max_reservations);
    limits.max_circuits = file.relay_max_circuits.unwrap_or(limits.max_circuits);
    if let Some(secs) = file.relay_max_circuit_secs {
        limits.max_circuit_duration = Duration::from_secs(secs);
    }
    limits.max_circuit_bytes = file.relay_max_circuit_bytes.unwrap_or(limits.max_circuit_bytes);
    let api_addr = args
        .api
        .or(file.api)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7117)));
    let allowed = if args.api_allowed_hosts.is_empty() {
        file.api_allowed_hosts
    } else {
        args.api_allowed_hosts
    };
    let hosts = api::HostAllowlist::new(api_addr.ip(), &allowed)?;
    if !api_addr.ip().is_loopback() {
        tracing::warn!(
            %api_addr,
            "the local API listens beyond loopback: anyone who can reach this address and holds the token controls this account"
        );
        eprintln!(
            "warning: the API at {api_addr} is reachable from the network, not only from this machine;              it is protected by the token alone, over plain HTTP"
        );
    }

    let shutdown = shutdown_signal();
    let (token, token_source) = match token::supplied(args.token_file.as_deref())? {
        Some(s) => (s.token, s.source),
        None => (
            api::load_or_create_token(&data_dir)?,
            data_dir.join(api::TOKEN_FILE).display().to_string(),
        ),
    };
    // The API subscribes for itself; a receiver held here and never read would keep the last
    // `event_capacity` events (bodies included, destroyed ones too) in memory.
    let (node, events) = Node::start(config).await?;
    drop(events);
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("binding the API to {api_addr}"))?;
    let status = node.status().await?;
    // The banner is for whoever started us; a closed stdout must not stop the node.
    let mut banner = format!("account  {}\npeer_id  {}\n", status.account, status.peer_id);
    for addr in &status.listen_addrs {
        banner.push_str(&format!("listen   {addr}\n"));
    }
    banner.push_str(&format!("api      http://{}\n", listener.local_addr()?));
    banner.push_str(&format!("token    {token_source}\n"));
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }

    // Client commands find the API here.
    std::fs::write(
        data_dir.join(api::ADDR_FILE),
        format!("http://{}\n", listener.local_addr()?),
    )?;
    let server = tokio::spawn(api::serve(node.clone(), token, hosts, listener, shutdown));
    server.await??;
    tracing::info!("shutting down");
    node.shutdown().await?;
    Ok(())
}

/// Registers SIGINT and SIGTERM handlers now (so a signal right after start is not lost) and
/// returns a future that completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt()).ok();
        let term = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => {},
                _ = wait(term) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
