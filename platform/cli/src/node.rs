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
use keyway_core::PublicKey;
use keyway_core::link::{AllowList, BlockKey, LinkConfig};
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
        /// Let PUBKEY use capabilities: message, sync:KEY (a stream key in base64),
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
            let allow_entries = allow.clone();
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
            let shown = ui.map(|addr| (addr, ui_view(&allow_entries, &serve_stream)));
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(run_node(
                config,
                listen,
                streams,
                json,
                max_connections,
                shown,
            ))
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
    ui: Option<(SocketAddr, UiView)>,
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
    // The UI first, so a refused --ui address fails before anything is
    // printed; the handle is kept until the node stops (dropping it stops
    // the UI).
    let mut ui_started = None;
    if let Some((addr, view)) = ui {
        let status_node = node.clone();
        let listening = bound.to_string();
        let source = move || view.status(&status_node, &listening);
        ui_started = Some(
            keyway_node_ui::serve(addr, source)
                .await
                .with_context(|| format!("--ui {addr}"))?,
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "node_pk={}", config.identity.public())?;
    writeln!(out, "listening={bound}")?;
    if let Some((url, _)) = &ui_started {
        writeln!(out, "ui={url}")?;
    }
    out.flush()?;
    let serving = tokio::spawn(node.clone().serve(listener));
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

/// What the status page shows besides the node's live links: the
/// allow-list and the streams served, as given at start.
#[derive(Debug)]
struct UiView {
    allowed: Vec<(PublicKey, Vec<String>)>,
    streams: Vec<keyway_node_ui::StreamInfo>,
}

/// The page's view of `--allow` and `--serve-stream` (read once: the
/// status source is called per page request and must not block on files).
fn ui_view(allow: &[String], streams: &[PathBuf]) -> UiView {
    let allowed = allow
        .iter()
        .filter_map(|entry| {
            let (key, caps) = entry.split_once('=')?;
            let key = PublicKey::from_hex(key).ok()?;
            Some((key, caps.split(',').map(str::to_owned).collect()))
        })
        .collect();
    let streams = streams
        .iter()
        .filter_map(|path| {
            let stream = keyway_drayer::Stream::open_read_only(path).ok()?;
            Some(keyway_node_ui::StreamInfo {
                public_key: stream.public_key_base64(),
                path: path.display().to_string(),
                records: stream.count().ok()? as u64,
                served: true,
            })
        })
        .collect();
    UiView { allowed, streams }
}

impl UiView {
    fn status(&self, node: &Node, listening: &str) -> keyway_node_ui::Status {
        let now = node.status();
        keyway_node_ui::Status {
            identity: now.node_pk.to_string(),
            listening: vec![listening.to_owned()],
            links: now
                .peers
                .iter()
                .map(|p| keyway_node_ui::LinkInfo {
                    peer: p.identity.map(|k| k.to_string()),
                    address: p.address.to_string(),
                    direction: keyway_node_ui::Direction::Inbound,
                    age_secs: p.age.as_secs(),
                    bytes_in: p.bytes_in,
                    bytes_out: p.bytes_out,
                })
                .collect(),
            peers: self
                .allowed
                .iter()
                .map(|(key, caps)| keyway_node_ui::PeerInfo {
                    identity: key.to_string(),
                    capabilities: caps.clone(),
                    blocked_for_secs: node
                        .blocked_for(&BlockKey::identity(key))
                        .map(|d| d.as_secs().max(1)),
                })
                .collect(),
            streams: self.streams.clone(),
        }
    }
}
