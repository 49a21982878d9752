//! `keyway sidewire …`: listen for and send signed messages over a broker pool.
//!
//! `listen` prints one line per message (`--json`: `{"from", "msg_hex"}`)
//! and a `listening pk=<hex> brokers=<n>` line on stderr once subscribed.
//! Exit codes: 0 success; 1 failure with a one-line reason (for `listen`,
//! also when `--count` messages did not arrive before `--timeout`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use keyway_core::PublicKey;
use keyway_sidewire::{BrokerEntry, Pool, Router, RouterConfig};
use serde_json::json;
use tokio::sync::mpsc;

use crate::keyfile;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Receive messages sent to --key's public key.
    Listen {
        #[arg(long)]
        key: PathBuf,
        /// The broker pool (TOML, `[[broker]]` tables with host and port).
        #[arg(long)]
        brokers: PathBuf,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Send MESSAGE to DEST_PK_HEX and wait for its acknowledgement.
    Send {
        dest_pk_hex: PublicKey,
        message: String,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        brokers: PathBuf,
        /// Seconds to wait for the acknowledgement.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// A broker where the destination listens, HOST:PORT (repeatable):
        /// published on first, even if it is not in the pool.
        #[arg(long = "hint", value_parser = parse_hint)]
        hints: Vec<BrokerEntry>,
        /// Remember in this JSON file (created 0600) which broker reached
        /// the destination, and publish there first on later sends.
        #[arg(long, value_name = "PATH")]
        hint_cache: Option<PathBuf>,
    },
}

fn parse_hint(text: &str) -> Result<BrokerEntry, String> {
    let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("expected HOST:PORT, got {text:?}"));
    }
    Ok(BrokerEntry::new(host, port))
}

pub(crate) fn run(command: Command) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = tokio::runtime::Runtime::new()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(dispatch(command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn router(
    key: &std::path::Path,
    brokers: &std::path::Path,
    config: RouterConfig,
) -> Result<Router> {
    let key = keyfile::load(key)?;
    let pool = Pool::load(brokers)?;
    let router = Router::with_config(key, None, keyway_sidewire::system_time, pool, config);
    router.start().await?;
    Ok(router)
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Listen {
            key,
            brokers,
            count,
            timeout,
            json,
        } => {
            let router = router(&key, &brokers, RouterConfig::default()).await?;
            let (tx, mut rx) = mpsc::unbounded_channel();
            router.add_msg_handler(move |m| {
                let _ = tx.send(m.clone());
            });
            eprintln!(
                "listening pk={} brokers={}",
                router.public_key(),
                router.brokers().len()
            );
            let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                let next = match deadline {
                    Some(at) => {
                        let left = at.saturating_duration_since(Instant::now());
                        tokio::time::timeout(left, rx.recv()).await.ok().flatten()
                    }
                    None => rx.recv().await,
                };
                let Some(m) = next else { break };
                seen += 1;
                let hex = base16ct::lower::encode_string(&m.data);
                if json {
                    println!("{}", json!({ "from": m.from.to_string(), "msg_hex": hex }));
                } else {
                    println!(
                        "{} {}",
                        m.from,
                        String::from_utf8_lossy(&m.data).escape_debug()
                    );
                }
            }
            // Let the ACKs of what was delivered go out before leaving.
            router.close(Duration::from_secs(5)).await;
            if let Some(n) = count
                && seen < n
            {
                bail!("timed out after {seen} of {n} messages");
            }
            Ok(())
        }
        Command::Send {
            dest_pk_hex,
            message,
            key,
            brokers,
            timeout,
            hints,
            hint_cache,
        } => {
            let config = RouterConfig {
                hint_cache,
                ..RouterConfig::default()
            };
            let router = router(&key, &brokers, config).await?;
            let sent = router
                .pipe_with_hints(dest_pk_hex, hints)
                .send(message.as_bytes(), Duration::from_secs_f64(timeout))
                .await;
            router.close(Duration::from_secs(1)).await;
            sent.with_context(|| format!("sending to {dest_pk_hex}"))?;
            Ok(())
        }
    }
}
