//! One MQTT connection to one broker (spec §2).
//!
//! Connecting sends CONNECT (clean session, keep-alive), checks the CONNACK,
//! subscribes to the node's own topic at QoS 1 and checks the SUBACK, all
//! within one deadline. A task then owns the socket: it answers inbound QoS 1
//! PUBLISHes with PUBACK, forwards their payloads, writes outbound
//! PUBLISHes, pings every keep-alive period and closes the link when a
//! PINGRESP does not come back in time (the reference never noticed a dead
//! broker: spec §10 item 17). Frames are size-capped (item 8).
//!
//! Every write has a deadline ([`LinkConfig::write_timeout`]): a broker
//! that completes the handshake and then stops reading closes its link
//! ([`BrokerLink::stalled`]) instead of wedging it, and
//! [`BrokerLink::try_publish`] never waits for a slow link.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keyway_core::mqtt::{self, CONNACK_ACCEPTED, MqttError, Packet, QoS};
use keyway_core::rand_core::{Rng, UnwrapErr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

/// How a link behaves.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// MQTT keep-alive; a PINGREQ goes out this often.
    pub keep_alive: Duration,
    /// Connect, CONNACK and SUBACK must all complete within this.
    pub connect_timeout: Duration,
    /// Largest MQTT packet accepted from the broker.
    pub max_packet: usize,
    /// Every write to the socket (a batch of at most 64 KiB) must finish
    /// within this, or the link is closed as stalled: a broker that stops
    /// reading must not hold the node's frames (or its sends) for ever.
    pub write_timeout: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            max_packet: 64 * 1024,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a link could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {broker}: {source}")]
    Connect {
        broker: String,
        source: std::io::Error,
    },
    #[error("{broker} did not complete the MQTT handshake in time")]
    Timeout { broker: String },
    #[error("{broker} refused the connection or subscription ({what})")]
    Refused { broker: String, what: String },
    #[error("the link to {broker} is closed")]
    Closed { broker: String },
    #[error("the link to {broker} has a full queue")]
    Busy { broker: String },
}

/// A PUBLISH that arrived on a link.
#[derive(Debug)]
pub struct Inbound {
    /// Which link (the caller's own numbering).
    pub link: usize,
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A live MQTT connection; cloning shares it. Dropping the last clone
/// ends it (with DISCONNECT).
#[derive(Clone, Debug)]
pub struct BrokerLink {
    broker: String,
    id: usize,
    outbound: mpsc::Sender<Vec<u8>>,
    alive: watch::Receiver<bool>,
    /// Set when the link closed because a write missed its deadline.
    stalled: Arc<AtomicBool>,
    /// Set once the broker sent a packet after the handshake.
    heard: Arc<AtomicBool>,
}

/// A client id like the reference's: 15 characters (spec §2.1).
fn client_id() -> [u8; 15] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = UnwrapErr(getrandom::SysRng);
    core::array::from_fn(|_| ALPHABET[(rng.next_u32() % ALPHABET.len() as u32) as usize])
}

impl BrokerLink {
    /// Connects to `broker` ("host:port"), subscribes to `topic` and starts
    /// forwarding its PUBLISHes to `inbound`, tagged with `link`.
    pub async fn connect(
        broker: &str,
        topic: &[u8],
        link: usize,
        config: &LinkConfig,
        inbound: mpsc::Sender<Inbound>,
    ) -> Result<Self, LinkError> {
        let name = broker.to_owned();
        let handshake = async {
            let stream = TcpStream::connect(broker)
                .await
                .map_err(|source| LinkError::Connect {
                    broker: name.clone(),
                    source,
                })?;
            stream.set_nodelay(true).ok();
            let (mut read, mut write) = stream.into_split();
            let mut buf = vec![0u8; 512];
            let keep_alive = u16::try_from(config.keep_alive.as_secs()).unwrap_or(u16::MAX);
            let n = mqtt::encode_connect(&client_id(), keep_alive, &mut buf).map_err(|e| {
                LinkError::Refused {
                    broker: name.clone(),
                    what: e.to_string(),
                }
            })?;
            let n2 =
                mqtt::encode_subscribe(1, topic, QoS::AtLeastOnce, &mut buf[n..]).map_err(|e| {
                    LinkError::Refused {
                        broker: name.clone(),
                        what: e.to_string(),
                    }
                })?;
            let io = |source| LinkError::Connect {
                broker: name.clone(),
                source,
            };
            write.write_all(&buf[..n]).await.map_err(io)?;
            let mut pending = Vec::new();
            match read_packet(&mut read, &mut pending, config.max_packet)
                .await
                .map_err(io)?
            {
                Some(bytes) if bytes == CONNACK_ACCEPTED => {}
                other => {
                    let what = format!("CONNACK {:02x?}", other.unwrap_or_default());
                    return Err(LinkError::Refused {
                        broker: name.clone(),
                        what,
                    });
                }
            }
            write.write_all(&buf[n..n + n2]).await.map_err(io)?;
            let suback = read_packet(&mut read, &mut pending, config.max_packet)
                .await
                .map_err(io)?;
            match suback
                .as_deref()
                .map(|b| mqtt::decode(b, config.max_packet))
            {
                Some(Ok(Some((
                    Packet::Suback {
                        packet_id: 1,
                        return_codes,
                    },
                    _,
                )))) if return_codes.iter().all(|c| *c <= 1) => {}
                other => {
                    let what = format!("SUBACK {other:?}");
                    return Err(LinkError::Refused {
                        broker: name.clone(),
                        what,
                    });
                }
            }
            Ok((read, write, pending))
        };
        let (read, write, pending) =
            timeout(config.connect_timeout, handshake)
                .await
                .map_err(|_| LinkError::Timeout {
                    broker: name.clone(),
                })??;
        let (outbound, commands) = mpsc::channel(256);
        let (alive_tx, alive) = watch::channel(true);
        let stalled = Arc::new(AtomicBool::new(false));
        let heard = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(
            read,
            write,
            pending,
            commands,
            inbound,
            link,
            config.clone(),
            (alive_tx, stalled.clone(), heard.clone()),
        ));
        Ok(Self {
            broker: name,
            id: link,
            outbound,
            alive,
            stalled,
            heard,
        })
    }

    /// The broker this link goes to.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// The number given at connect, which tags this link's [`Inbound`]s.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Whether the link is still up.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Whether the link closed because a write to the broker missed
    /// [`LinkConfig::write_timeout`] (the broker stopped reading).
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Whether the broker sent anything (a PUBLISH, a PINGRESP) after the
    /// handshake: a link that closes without ever having heard from its
    /// broker did not work, whatever closed it.
    pub fn heard(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    fn closed(&self) -> LinkError {
        LinkError::Closed {
            broker: self.broker.clone(),
        }
    }

    fn frame(&self, topic: &[u8], payload: &[u8]) -> Result<Vec<u8>, LinkError> {
        if !self.is_alive() {
            return Err(self.closed());
        }
        let mut frame = vec![0u8; payload.len() + topic.len() + 16];
        // The packet id is filled in by the task, which owns the counter.
        let n = mqtt::encode_publish(topic, QoS::AtLeastOnce, 1, payload, &mut frame)
            .map_err(|_| self.closed())?;
        frame.truncate(n);
        Ok(frame)
    }

    /// Publishes `payload` on `topic` at QoS 1, waiting while the link's
    /// queue is full (at most until the link closes: a stalled write ends
    /// it within [`LinkConfig::write_timeout`]).
    pub async fn publish(&self, topic: &[u8], payload: &[u8]) -> Result<(), LinkError> {
        let frame = self.frame(topic, payload)?;
        self.outbound.send(frame).await.map_err(|_| self.closed())
    }

    /// [`Self::publish`] without waiting: a full queue (a broker far
    /// behind, or not reading) is [`LinkError::Busy`] and the frame is
    /// dropped, as a datagram would be; the caller's retransmission covers it.
    pub fn try_publish(&self, topic: &[u8], payload: &[u8]) -> Result<(), LinkError> {
        let frame = self.frame(topic, payload)?;
        self.outbound.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::Busy {
                broker: self.broker.clone(),
            },
            mpsc::error::TrySendError::Closed(_) => self.closed(),
        })
    }
}

/// Reads until one whole packet is buffered; returns its bytes (`None` at EOF).
async fn read_packet(
    read: &mut OwnedReadHalf,
    pending: &mut Vec<u8>,
    max_packet: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        match mqtt::decode(pending, max_packet) {
            Ok(Some((_, used))) => return Ok(Some(pending.drain(..used).collect())),
            Ok(None) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ));
            }
        }
        let mut chunk = [0u8; 4096];
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Queued outbound frames are gathered into one write up to this size.
const WRITE_BATCH: usize = 64 * 1024;

/// A write missed its deadline.
#[derive(Debug, thiserror::Error)]
#[error("write deadline missed")]
struct WriteStalled;

/// Writes `bytes` within `limit`; missing it is a [`WriteStalled`] error,
/// which closes the link.
async fn write_within(
    write: &mut OwnedWriteHalf,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match timeout(limit, write.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            WriteStalled,
        )),
    }
}

/// Where a PUBLISH frame's packet id sits: after the fixed header and topic.
fn packet_id_offset(frame: &[u8]) -> Option<usize> {
    let mut i = 1;
    while frame.get(i)? & 0x80 != 0 {
        i += 1;
    }
    let topic_len = usize::from(u16::from_be_bytes([*frame.get(i + 1)?, *frame.get(i + 2)?]));
    Some(i + 3 + topic_len)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mut read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    mut pending: Vec<u8>,
    mut commands: mpsc::Receiver<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
    link: usize,
    config: LinkConfig,
    (alive, stalled, heard): (watch::Sender<bool>, Arc<AtomicBool>, Arc<AtomicBool>),
) {
    let mut next_id: u16 = 1;
    // Bytes of an oversize packet still to be thrown away as they arrive.
    let mut skip = 0usize;
    let mut ping = tokio::time::interval_at(Instant::now() + config.keep_alive, config.keep_alive);
    let mut awaiting_pong: Option<Instant> = None;
    let mut chunk = vec![0u8; 8192];
    // Frames waiting to be written together.
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let result: std::io::Result<()> = async {
        loop {
            // Every whole packet already buffered.
            loop {
                let (packet, used) = match mqtt::decode(&pending, config.max_packet) {
                    Ok(Some(decoded)) => decoded,
                    Ok(None) => break,
                    Err(MqttError::TooLarge { len, .. }) => {
                        // Refuse it without dropping the link (one big
                        // publish must not knock a node off its broker),
                        // but acknowledge it, or the broker keeps it in
                        // flight and stops delivering.
                        match mqtt::publish_packet_id(&pending) {
                            Some(id) => {
                                let mut ack = [0u8; 4];
                                let n = mqtt::encode_puback(id, &mut ack).unwrap_or(0);
                                out.extend_from_slice(&ack[..n]);
                            }
                            // A QoS 1 PUBLISH whose id is not readable yet
                            // (a topic can be 64 KiB long): wait for it.
                            None if pending[0] & 0xf6 == 0x32 && pending.len() < 70_000 => break,
                            None => {}
                        }
                        let dropped = len.min(pending.len());
                        pending.drain(..dropped);
                        skip = len - dropped;
                        tracing::debug!(len, link, "oversize packet skipped");
                        continue;
                    }
                    Err(e) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            e.to_string(),
                        ));
                    }
                };
                heard.store(true, Ordering::Relaxed);
                match packet {
                    Packet::Publish {
                        topic,
                        packet_id,
                        payload,
                        ..
                    } => {
                        if let Some(id) = packet_id {
                            let mut ack = [0u8; 4];
                            let n = mqtt::encode_puback(id, &mut ack).unwrap_or(0);
                            out.extend_from_slice(&ack[..n]);
                        }
                        let message = Inbound {
                            link,
                            topic: topic.to_vec(),
                            payload: payload.to_vec(),
                        };
                        // A full queue means the router is overwhelmed: drop, as UDP would.
                        let _ = inbound.try_send(message);
                    }
                    Packet::Pingresp => awaiting_pong = None,
                    _ => {}
                }
                pending.drain(..used);
            }
            // The PUBACKs of everything read so far, in one write.
            if !out.is_empty() {
                write_within(&mut write, &out, config.write_timeout).await?;
                out.clear();
            }
            let pong_deadline = awaiting_pong.map(|t| t + config.keep_alive);
            tokio::select! {
                n = read.read(&mut chunk) => {
                    let n = n?;
                    if n == 0 {
                        return Ok(());
                    }
                    let skipped = skip.min(n);
                    skip -= skipped;
                    pending.extend_from_slice(&chunk[skipped..n]);
                }
                command = commands.recv() => {
                    let Some(mut frame) = command else {
                        // Every handle is gone: say goodbye.
                        let mut bye = [0u8; 2];
                        let n = mqtt::encode_disconnect(&mut bye).unwrap_or(0);
                        write_within(&mut write, &bye[..n], config.write_timeout).await?;
                        return Ok(());
                    };
                    // This frame and any others already queued, in one
                    // write: a syscall per PUBLISH would dominate under load.
                    loop {
                        if let Some(at) = packet_id_offset(&frame) {
                            frame[at..at + 2].copy_from_slice(&next_id.to_be_bytes());
                            next_id = next_id.checked_add(1).unwrap_or(1);
                        }
                        out.extend_from_slice(&frame);
                        if out.len() >= WRITE_BATCH {
                            break;
                        }
                        match commands.try_recv() {
                            Ok(next) => frame = next,
                            Err(_) => break,
                        }
                    }
                    write_within(&mut write, &out, config.write_timeout).await?;
                    out.clear();
                }
                _ = ping.tick() => {
                    let mut req = [0u8; 2];
                    let n = mqtt::encode_pingreq(&mut req).unwrap_or(0);
                    write_within(&mut write, &req[..n], config.write_timeout).await?;
                    awaiting_pong.get_or_insert_with(Instant::now);
                }
                () = async {
                    match pong_deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no PINGRESP"));
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        if e.get_ref().is_some_and(|inner| inner.is::<WriteStalled>()) {
            stalled.store(true, Ordering::Relaxed);
        }
        tracing::debug!(error = %e, link, "broker link closed");
    }
    let _ = alive.send(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_id_sits_after_the_topic() {
        let mut frame = [0u8; 64];
        let n = mqtt::encode_publish(b"abc", QoS::AtLeastOnce, 0x0102, b"xy", &mut frame).unwrap();
        let at = packet_id_offset(&frame[..n]).unwrap();
        assert_eq!(&frame[at..at + 2], &[1, 2]);
    }

    #[test]
    fn client_ids_are_15_alphanumerics() {
        let id = client_id();
        assert!(id.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(id, client_id());
    }
}
