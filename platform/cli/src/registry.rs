//! `keyway registry …`: the name registry of issue 17 (the CLI lines are
//! a contract; other checks drive them).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use keyway_core::link::Capability;
use keyway_drayer::http::{DeadlineListener, Limits, router_with, serve};
use keyway_link::config::allow_list;
use keyway_link::node::{DEFAULT_MAX_CONNECTIONS, Node};
use keyway_registry::{Registry, RegistryService};

use crate::identity::PasswordArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the registry server: print `node_pk=…`, `stream_pk=…` and
    /// `listening=…`, then take writes over secure links until stopped.
    Serve {
        /// The server's identity file (`keyway identity new`).
        #[arg(long)]
        identity: PathBuf,
        /// The network key file (`keyway netkey new`).
        #[arg(long)]
        network_key: PathBuf,
        /// Address to listen on for links, e.g. 127.0.0.1:7000 (port 0: any).
        #[arg(long)]
        listen: SocketAddr,
        /// The registry's directory: its stream file, the stream's key and
        /// the index (created if missing; a restart keeps the same stream).
        #[arg(long, value_name = "DIR")]
        db: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
        /// Also serve the stream over Drayer's HTTP API on this address.
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Only the peers listed may write (PUBKEY=registry-write; other
        /// capabilities as for `node run`). Repeatable. Without it any
        /// proven peer on the network may write. Any proven peer may
        /// always sync the stream (sync:*).
        #[arg(long, value_name = "PUBKEY=CAP[,CAP…]")]
        allow: Vec<String>,
        /// Announce the stream on the Mainline DHT with the HTTP port
        /// (needs --http), as `keyway drayer serve --dht` does.
        #[arg(long, requires = "http")]
        dht: bool,
        /// DHT bootstrap nodes (default: the public ones).
        #[arg(long, value_name = "HOST:PORT", requires = "dht")]
        dht_bootstrap: Vec<String>,
        /// Links held at once.
        #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
    },
    /// The client: a REPL on standard input, or one command.
    #[command(flatten)]
    Client(crate::registry_client::Command),
}

pub(crate) fn run(command: Command) -> ExitCode {
    if let Command::Client(command) = command {
        return crate::registry_client::run(command);
    }
    match dispatch(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        // `run` hands these to the client before coming here.
        Command::Client(_) => Err(anyhow!("internal: a client command reached the server")),
        Command::Serve {
            identity,
            network_key,
            listen,
            db,
            password,
            http,
            allow,
            dht,
            dht_bootstrap,
            max_connections,
        } => {
            let mut allow_list = allow_list(allow.iter().map(String::as_str))
                .map_err(|(entry, e)| anyhow!("--allow {entry}: {e}"))?;
            // Replicas of the stream are for every proven peer: what they
            // read is signed, and readers check it.
            allow_list.allow_anyone([Capability::SyncAll]);
            if allow.is_empty() {
                // Writes too, unless --allow names the writers: each write
                // is bound to its writer's proven identity anyway.
                allow_list.allow_anyone([Capability::RegistryWrite]);
            }
            let config = Arc::new(crate::node::load_config(
                &identity,
                &network_key,
                &password,
                allow_list,
            )?);
            let registry = Registry::open(&db).with_context(|| format!("--db {}", db.display()))?;
            let service = RegistryService::new(registry.clone()).context("serving the stream")?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let bound = listener.local_addr()?;
                let http_listener = match http {
                    Some(addr) => Some(
                        tokio::net::TcpListener::bind(addr)
                            .await
                            .with_context(|| format!("--http {addr}"))?,
                    ),
                    None => None,
                };
                let node = Node::new(config.clone(), Arc::new(service), max_connections);
                {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "node_pk={}", config.identity.public())?;
                    writeln!(out, "stream_pk={}", registry.stream_key_base64())?;
                    writeln!(out, "listening={bound}")?;
                    if let Some(l) = &http_listener {
                        writeln!(out, "http={}", l.local_addr()?)?;
                    }
                    out.flush()?;
                }
                let serving = tokio::spawn(node.serve(listener));
                let http_serving = match http_listener {
                    Some(listener) => {
                        let port = listener.local_addr()?.port();
                        if dht {
                            let key = *registry.stream_key().as_bytes();
                            let keys = [(key, registry.stream_key_base64().to_owned())]
                                .into_iter()
                                .collect();
                            crate::drayer::announce_on_dht(&dht_bootstrap, keys, port)?;
                        }
                        let stream = keyway_drayer::Stream::open_read_only(registry.stream_path())
                            .context("serving the stream over HTTP")?;
                        let limits = Limits::default();
                        let listener = DeadlineListener::with_limits(listener, &limits);
                        Some(tokio::spawn(serve(
                            listener,
                            router_with(vec![stream], limits),
                        )))
                    }
                    None => None,
                };
                let _ = tokio::signal::ctrl_c().await;
                serving.abort();
                if let Some(task) = http_serving {
                    task.abort();
                }
                anyhow::Ok(())
            })
        }
    }
}
