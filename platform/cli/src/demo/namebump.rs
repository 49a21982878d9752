//! The demo's namebump part: a server on SQLite on a loopback port, and a
//! client that claims, reads, updates and deletes a name through it.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use getrandom::SysRng;
use keyway_core::rand_core::UnwrapErr;
use keyway_core::{Keypair, PublicKey};
use keyway_namebump::{Behavior, Client, Limits, Server, ServerConfig, SqlStore, SystemClock};

use super::steps::{StepLog, bounded};

const AREA: &str = "namebump";
const NAME: &str = "demo-name";
const FIRST: &str = "hello from keyway demo";
const SECOND: &str = "hello again, updated";

pub(super) async fn run<W: Write>(log: &mut StepLog<'_, W>, dir: &Path) -> Result<()> {
    let since = Instant::now();
    let db = dir.join("names.db");
    let url = format!("sqlite:{}", db.display());
    let store = SqlStore::open(&url, Limits::default())
        .await
        .with_context(|| format!("opening {url}"))?;
    let config = ServerConfig {
        // Port 0: the server binds one free port for TCP and UDP both.
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        ..ServerConfig::default()
    };
    let key = Keypair::generate(&mut UnwrapErr(SysRng));
    let server = Server::start(config, key, store, Arc::new(SystemClock))
        .await
        .context("starting the namebump server")?;
    let Some(&addr) = server.udp_addrs().first() else {
        server.shutdown(Duration::from_secs(5)).await;
        bail!("the namebump server bound no address");
    };
    log.ok(
        AREA,
        "serve",
        format_args!("server on {addr} (UDP and TCP), SQLite names.db"),
        since.elapsed(),
    )?;
    let used = use_a_name(log, addr, *server.public_key()).await;
    let since = Instant::now();
    server.shutdown(Duration::from_secs(5)).await;
    used?;
    log.ok(AREA, "stop", "server shut down", since.elapsed())
}

/// Claim, read, update, read, delete, read: each a real request over
/// loopback, each checked against what the step before stored.
async fn use_a_name<W: Write>(
    log: &mut StepLog<'_, W>,
    addr: SocketAddr,
    server_pk: PublicKey,
) -> Result<()> {
    let client = bounded("namebump client", Client::new(&addr.to_string(), server_pk)).await?;
    let owner = Keypair::generate(&mut UnwrapErr(SysRng));
    let name = NAME.as_bytes();

    let since = Instant::now();
    bounded(
        "namebump claim",
        client.put(name, FIRST.as_bytes(), &owner, Behavior::DontBump, None),
    )
    .await?;
    log.ok(
        AREA,
        "claim",
        format_args!("{NAME} = {FIRST:?}, signed by a new key"),
        since.elapsed(),
    )?;
    read(log, &client, &owner, Some(FIRST)).await?;

    let since = Instant::now();
    bounded(
        "namebump update",
        client.put(name, SECOND.as_bytes(), &owner, Behavior::DontBump, None),
    )
    .await?;
    log.ok(
        AREA,
        "update",
        format_args!("{NAME} = {SECOND:?}"),
        since.elapsed(),
    )?;
    read(log, &client, &owner, Some(SECOND)).await?;

    let since = Instant::now();
    bounded("namebump delete", client.delete(name, &owner, None)).await?;
    log.ok(
        AREA,
        "delete",
        format_args!("{NAME} by its owner"),
        since.elapsed(),
    )?;
    read(log, &client, &owner, None).await
}

/// Reads the name and checks it holds `expected` (`None`: absent).
async fn read<W: Write>(
    log: &mut StepLog<'_, W>,
    client: &Client,
    owner: &Keypair,
    expected: Option<&str>,
) -> Result<()> {
    let since = Instant::now();
    let record = bounded("namebump read", client.get(NAME.as_bytes())).await?;
    match (record, expected) {
        (None, None) => log.ok(
            AREA,
            "read",
            format_args!("{NAME} -> absent"),
            since.elapsed(),
        ),
        (Some(record), Some(value)) => {
            if record.value != value.as_bytes() {
                bail!(
                    "namebump read: {NAME} holds {:?}, not {value:?}",
                    String::from_utf8_lossy(&record.value)
                );
            }
            if record.owner != *owner.public().as_bytes() {
                bail!("namebump read: {NAME} is owned by another key");
            }
            log.ok(
                AREA,
                "read",
                format_args!("{NAME} -> {value:?}, owner's key as signed"),
                since.elapsed(),
            )
        }
        (Some(record), None) => bail!(
            "namebump read: {NAME} still holds {:?} after its delete",
            String::from_utf8_lossy(&record.value)
        ),
        (None, Some(value)) => bail!("namebump read: {NAME} is absent, expected {value:?}"),
    }
}
