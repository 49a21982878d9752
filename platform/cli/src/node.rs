//! `keyway node run` and `keyway node send`: a node on secure links
//! (issue 16; the CLI lines are a contract).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use keyway_core::link::{AllowList, LinkConfig};
use keyway_link::PeerAddress;
use keyway_link::config::{allow_list, link_config};
use keyway_link::connection::NoService;
use keyway_link::dial::{dial, with_retries};
use keyway_link::messages::{self, Inbox};
use keyway_link::network_key::NetworkKey;
use keyway_link::node::{DEFAULT_MAX_CONNECTIONS, Node};
use keyway_link::services::Services;
use keyway_link::stream_sync::StreamServer;
use serde_json::json;

use crate::identity::PasswordArgs;

/// Messages waiting to be printed before senders are slowed down.
const INBOX_DEPTH: usize = 256;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node: accept links, print `node_pk=…` and `listening=…`, then
    /// one line per message received.
    Run {
        /// The node's identity file (`keyway identity new`).
        #[arg(long)]
        identity: PathBuf,
        /// The network key file (`keyway netkey new`).
        #[arg(long)]
        network_key: PathBuf,
        /// Address to listen on, e.g. 127.0.0.1:7000 (port 0: any).
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        password: PasswordArgs,
        /// Let PUBKEY use capabilities: message, sync:<stream key base64>,
        /// sync:*, registry-write. Repeatable; nobody else is served.
        #[arg(long, value_name = "PUBKEY=CAP[,CAP…]")]
        allow: Vec<String>,
        /// Serve this Drayer stream file to peers holding its sync capability.
        #[arg(long, value_name = "PATH")]
        serve_stream: Vec<PathBuf>,
        /// Serve the local status page on this loopback address.
        #[arg(long, value_name = "ADDR")]
        ui: Option<SocketAddr>,
        /// Print each message as {"from": "<66 hex>", "msg_hex": "…"}.
        #[arg(long)]
        json: bool,
        /// Links held at once.
        #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
    },
    /// Send MESSAGE to the node at PUBKEY@HOST:PORT; exit 0 once it
    /// acknowledged, non-zero with a one-line reason.
    Send {
        peer: PeerAddress,
        message: String,
        #[arg(long)]
        identity: PathBuf,
        #[arg(long)]
        network_key: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
        /// Give up (with the last reason) after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        timeout: u64,
    },
}

pub(crate) fn run(command: Command) -> ExitCode {
    match dispatch(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Unlocks the identity and reads the network key: everything a link
/// needs but its allow-list.
pub(crate) fn load_config(
    identity: &Path,
    network_key: &Path,
    password: &PasswordArgs,
    allow: AllowList,
) -> Result<LinkConfig> {
    let unlocked = password.unlock(identity)?;
    let key = NetworkKey::load(network_key)?;
    Ok(link_config(&unlocked, &key, allow))
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run {
            identity,
            network_key,
            listen,
            password,
            allow,
            serve_stream,
            ui,
            json,
            max_connections,
        } => {
            let allow = allow_list(allow.iter().map(String::as_str))
                .map_err(|(entry, e)| anyhow!("--allow {entry}: {e}"))?;
            let config = Arc::new(load_config(&identity, &network_key, &password, allow)?);
            let streams = if serve_stream.is_empty() {
                None
            } else {
                Some(Arc::new(
                    StreamServer::open(&serve_stream).context("--serve-stream")?,
                ))
            };
            if ui.is_some() {
                // The local UI session lives in its own crate (issue 16,
                // item 7); it is wired here once it lands.
                return Err(anyhow!(
                    "--ui: the local UI is not built into this version yet"
                ));
            }
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(run_node(config, listen, streams, json, max_connections))
        }
        Command::Send {
            peer,
            message,
            identity,
            network_key,
            password,
            timeout,
        } => {
            // A sender serves nothing: its allow-list is empty.
            let config = Arc::new(load_config(
                &identity,
                &network_key,
                &password,
                AllowList::new(),
            )?);
            let runtime = tokio::runtime::Runtime::new()?;
            let id = messages::new_id();
            runtime
                .block_on(with_retries(Duration::from_secs(timeout), |left| {
                    let config = config.clone();
                    let peer = &peer;
                    let message = message.as_bytes();
                    async move {
                        let link = dial(config, peer, Arc::new(NoService), left).await?;
                        // The same id on every attempt: a message whose
                        // ack was lost is not delivered twice.
                        messages::send(&link, id, message).await
                    }
                }))
                .map_err(|e| anyhow!("{e}"))
        }
    }
}

async fn run_node(
    config: Arc<LinkConfig>,
    listen: SocketAddr,
    streams: Option<Arc<StreamServer>>,
    json: bool,
    max_connections: usize,
) -> Result<()> {
    let (inbox, mut deliveries) = Inbox::new(INBOX_DEPTH);
    let services = Services {
        inbox: Some(inbox),
        streams,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    let node = Node::new(config.clone(), Arc::new(services), max_connections);
    let mut out = std::io::stdout().lock();
    writeln!(out, "node_pk={}", config.identity.public())?;
    writeln!(out, "listening={bound}")?;
    out.flush()?;
    let serving = tokio::spawn(node.serve(listener));
    loop {
        tokio::select! {
            delivery = deliveries.recv() => {
                let Some(delivery) = delivery else { break };
                if json {
                    let line = json!({
                        "from": delivery.from.to_string(),
                        "msg_hex": base16ct::lower::encode_string(&delivery.payload),
                    });
                    writeln!(out, "{line}")?;
                } else {
                    // One line whatever the bytes: escaped like a Rust string.
                    let text = String::from_utf8_lossy(&delivery.payload);
                    writeln!(out, "from={} msg={}", delivery.from, text.escape_debug())?;
                }
                out.flush()?;
                // Acknowledged only once printed.
                delivery.ack();
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    serving.abort();
    Ok(())
}
