//! The demo's sidewire part: two nodes on a private mosquitto broker, one
//! sending the other a signed message and waiting for its ACK.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use getrandom::SysRng;
use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_sidewire::{BrokerEntry, Pool, Router, RouterConfig, system_time};
use tokio::sync::mpsc;

use super::mosquitto::{self, Broker};
use super::steps::{StepLog, WAIT, bounded};

const AREA: &str = "sidewire";
const MESSAGE: &str = "hello bob, from alice";

pub(super) async fn run<W: Write>(log: &mut StepLog<'_, W>, dir: &Path) -> Result<()> {
    let Some(binary) = mosquitto::find() else {
        return log.note(format_args!(
            "{AREA:<9} skipped: mosquitto is not installed (not on PATH), so there is no \
             broker to start; tests/setup-debian.sh installs it"
        ));
    };
    let since = Instant::now();
    let broker = Broker::start(&binary, dir).await?;
    let (pid, addr) = (broker.pid(), broker.addr());
    log.ok(
        AREA,
        "broker",
        format_args!("private mosquitto (pid {pid}) on {addr}"),
        since.elapsed(),
    )?;
    let exchanged = exchange(log, addr).await;
    let since = Instant::now();
    broker.stop()?;
    exchanged?;
    log.ok(
        AREA,
        "stop",
        format_args!("mosquitto (pid {pid}) killed and reaped"),
        since.elapsed(),
    )
}

/// Two nodes join the one-broker pool; alice sends bob a message.
async fn exchange<W: Write>(log: &mut StepLog<'_, W>, broker: SocketAddr) -> Result<()> {
    let pool = Pool {
        brokers: vec![BrokerEntry::new(&broker.ip().to_string(), broker.port())],
        ..Pool::default()
    };
    let node = || {
        let key = Keypair::generate(&mut UnwrapErr(SysRng));
        Router::with_config(
            key,
            None,
            system_time,
            pool.clone(),
            RouterConfig::default(),
        )
    };
    let (alice, bob) = (node(), node());
    let (delivered, mut inbox) = mpsc::unbounded_channel();
    bob.add_msg_handler(move |m| {
        let _ = delivered.send((Instant::now(), m.clone()));
    });
    let talked = async {
        let since = Instant::now();
        bounded("sidewire start alice", alice.start()).await?;
        bounded("sidewire start bob", bob.start()).await?;
        log.ok(
            AREA,
            "nodes",
            format_args!(
                "alice {} and bob {} subscribed",
                short(&alice.public_key().to_string()),
                short(&bob.public_key().to_string())
            ),
            since.elapsed(),
        )?;

        let since = Instant::now();
        bounded(
            "sidewire send",
            alice.pipe(*bob.public_key()).send(MESSAGE.as_bytes(), WAIT),
        )
        .await?;
        let acked = since.elapsed();
        // Delivery comes before the ACK, so it is normally here already.
        let Ok(Some((at, message))) = tokio::time::timeout(WAIT, inbox.recv()).await else {
            bail!("sidewire: alice's message was acknowledged but bob's handler never saw it");
        };
        if message.from != *alice.public_key() || message.data != MESSAGE.as_bytes() {
            bail!("sidewire: bob received something other than alice's message");
        }
        log.ok(
            AREA,
            "received",
            format_args!(
                "bob got {:?}, alice's signature checked",
                String::from_utf8_lossy(&message.data)
            ),
            at.saturating_duration_since(since),
        )?;
        log.ok(AREA, "ack", "alice holds bob's signed ACK", acked)
    }
    .await;
    alice.close(Duration::from_secs(1)).await;
    bob.close(Duration::from_secs(1)).await;
    talked
}

/// The first 12 hex digits of a key: enough to tell two apart on a line.
fn short(hex: &str) -> String {
    format!("{}…", hex.get(..12).unwrap_or(hex))
}
