//! DrayerUDP: finding peers on the LAN (spec §11), hardened (O9).
//!
//! A datagram is the magic `ab c1 61 29` and one msgpack map. A node asks
//! the group `getRecordsSince {chain, time}`; a node holding that stream
//! with newer records answers, by unicast to the asker, with a `record`
//! announcement of its tip and HTTP port; a node hearing of a newer tip
//! pulls from `http://<the datagram's source IP>:<httpport>/`.
//!
//! The original would fetch from whatever address a datagram named and
//! verified nothing (O9). Here: only the datagram's source address is ever
//! contacted, only for streams this node holds, at most one pull per
//! stream at a time and one per `min_interval`, and every record pulled is
//! verified as in any sync. Datagrams are parsed strictly and size-capped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyway_core::drayer::{Meta, VerifyingKey};
use tokio::net::UdpSocket;

use crate::http::HttpSource;
use crate::stream::Stream;
use crate::sync::pull;
use crate::wire::{Reader, WireError, write_int, write_raw};

/// The plaintext magic.
pub const MAGIC: [u8; 4] = [0xab, 0xc1, 0x61, 0x29];
/// The original's group and port.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 7, 130, 8);
pub const PORT: u16 = 15723;
/// Largest datagram read (the original read up to 64,000 bytes).
const MAX_DATAGRAM: usize = 64_000;

/// A parsed datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datagram {
    /// "Who has records of `chain` after `time`?"
    GetRecordsSince { chain: [u8; 32], time: i64 },
    /// "My tip of `chain` was modified at `modified`; pull from me on
    /// `httpport`." Unverifiable by design (no type or value): a hint only.
    Record {
        chain: [u8; 32],
        modified: i64,
        httpport: u16,
    },
}

/// `getRecordsSince` as the original encodes it.
pub fn encode_get_records_since(chain: &VerifyingKey, time: i64) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(0x83);
    write_raw(&mut out, b"mtype");
    write_raw(&mut out, b"getRecordsSince");
    write_raw(&mut out, b"chain");
    write_raw(&mut out, chain.as_bytes());
    write_raw(&mut out, b"time");
    write_int(&mut out, time);
    out
}

/// A `record` announcement of `tip` (key `key`), as the original encodes it.
pub fn encode_record(tip: &Meta, key: &str, httpport: u16, chain: &VerifyingKey) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(0x8a);
    write_raw(&mut out, b"mtype");
    write_raw(&mut out, b"record");
    write_raw(&mut out, b"hash");
    write_raw(&mut out, &tip.value_hash);
    write_raw(&mut out, b"key");
    write_raw(&mut out, key.as_bytes());
    write_raw(&mut out, b"id");
    write_int(&mut out, i64::try_from(tip.id).unwrap_or(i64::MAX));
    write_raw(&mut out, b"sig");
    write_raw(&mut out, &tip.signature);
    write_raw(&mut out, b"prev");
    write_int(&mut out, i64::try_from(tip.prev).unwrap_or(i64::MAX));
    write_raw(&mut out, b"prevch");
    write_int(&mut out, tip.prevchange);
    write_raw(&mut out, b"mod");
    write_int(&mut out, tip.modified);
    write_raw(&mut out, b"httpport");
    write_int(&mut out, i64::from(httpport));
    write_raw(&mut out, b"chain");
    write_raw(&mut out, chain.as_bytes());
    out
}

/// Parses a datagram; `Ok(None)` for another magic or an unknown `mtype`.
pub fn decode(datagram: &[u8]) -> Result<Option<Datagram>, WireError> {
    let Some(body) = datagram.strip_prefix(&MAGIC) else {
        return Ok(None);
    };
    let mut reader = Reader { buf: body };
    let fields = reader.map_len()?;
    let (mut mtype, mut chain, mut time, mut modified, mut port) = (None, None, None, None, None);
    for _ in 0..fields.min(body.len()) {
        match reader.bytes("key name")? {
            b"mtype" => mtype = Some(reader.bytes("mtype")?.to_vec()),
            b"chain" => {
                let bytes = reader.bytes("chain")?;
                chain = Some(<[u8; 32]>::try_from(bytes).map_err(|_| WireError::Length {
                    field: "chain",
                    got: bytes.len(),
                    expected: "32",
                })?);
            }
            b"time" => time = Some(reader.int("time")?),
            b"mod" => modified = Some(reader.int("mod")?),
            b"httpport" => port = Some(reader.int("httpport")?),
            _ => reader.skip(0)?,
        }
    }
    reader.end()?;
    let chain = chain.ok_or(WireError::Missing("chain"))?;
    Ok(match mtype.as_deref() {
        Some(b"getRecordsSince") => Some(Datagram::GetRecordsSince {
            chain,
            time: time.ok_or(WireError::Missing("time"))?,
        }),
        Some(b"record") => Some(Datagram::Record {
            chain,
            modified: modified.ok_or(WireError::Missing("mod"))?,
            httpport: port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or(WireError::Range("httpport"))?,
        }),
        _ => None,
    })
}

/// Where discovery listens and how eagerly it pulls.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    pub group: Ipv4Addr,
    pub port: u16,
    /// The interface (by address) to join the group on and send from.
    pub interface: Ipv4Addr,
    /// The HTTP port this node serves its streams on, announced to peers.
    pub http_port: u16,
    /// At most one pull per stream this often.
    pub min_interval: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            group: GROUP,
            port: PORT,
            interface: Ipv4Addr::UNSPECIFIED,
            http_port: 33125,
            min_interval: Duration::from_secs(10),
        }
    }
}

/// Discovery for the streams at `paths` (opened per use: a stream file
/// takes several connections).
#[derive(Debug)]
pub struct Discovery {
    config: DiscoveryConfig,
    listener: UdpSocket,
    sender: UdpSocket,
    streams: HashMap<[u8; 32], PathBuf>,
    /// Per stream: when the last pull started, and whether one is running.
    pulls: Pulls,
}

/// Per stream: when its last LAN-triggered pull started, and whether it is
/// still running.
type Pulls = Arc<Mutex<HashMap<[u8; 32], (Instant, bool)>>>;

impl Discovery {
    /// Binds the group port (shared, as the original did) and an
    /// ephemeral sender socket.
    pub fn bind(config: DiscoveryConfig, paths: &[PathBuf]) -> std::io::Result<Self> {
        let mut streams = HashMap::new();
        for path in paths {
            let stream = Stream::open_read_only(path).map_err(std::io::Error::other)?;
            streams.insert(*stream.public_key().as_bytes(), path.clone());
        }
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port).into())?;
        socket.join_multicast_v4(&config.group, &config.interface)?;
        let listener = UdpSocket::from_std(socket.into())?;
        let sender = std::net::UdpSocket::bind(SocketAddrV4::new(config.interface, 0))?;
        sender.set_multicast_ttl_v4(2)?;
        sender.set_multicast_loop_v4(true)?;
        if !config.interface.is_unspecified() {
            socket2::SockRef::from(&sender).set_multicast_if_v4(&config.interface)?;
        }
        sender.set_nonblocking(true)?;
        Ok(Self {
            config,
            listener,
            sender: UdpSocket::from_std(sender)?,
            streams,
            pulls: Arc::default(),
        })
    }

    /// Asks the group for newer records of every stream held, and
    /// announces this node's tips.
    pub async fn announce(&self) -> std::io::Result<()> {
        let group = SocketAddr::from((self.config.group, self.config.port));
        for path in self.streams.values() {
            let stream = Stream::open_read_only(path).map_err(std::io::Error::other)?;
            let tip = stream.tip().map_err(std::io::Error::other)?;
            self.sender
                .send_to(&encode_get_records_since(stream.public_key(), tip), group)
                .await?;
            if let Some(datagram) = self.tip_announcement(&stream)? {
                self.sender.send_to(&datagram, group).await?;
            }
        }
        Ok(())
    }

    fn tip_announcement(&self, stream: &Stream) -> std::io::Result<Option<Vec<u8>>> {
        let Some((tip, body)) = stream
            .newest_records(1)
            .map_err(std::io::Error::other)?
            .pop()
        else {
            return Ok(None);
        };
        Ok(Some(encode_record(
            &tip,
            &body.key,
            self.config.http_port,
            stream.public_key(),
        )))
    }

    /// Serves datagrams until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        let mut group_buf = vec![0u8; MAX_DATAGRAM];
        let mut unicast_buf = vec![0u8; MAX_DATAGRAM];
        loop {
            // Unicast answers come back to the sender's ephemeral port.
            let (datagram, from) = tokio::select! {
                r = self.listener.recv_from(&mut group_buf) => {
                    let (n, from) = r?;
                    (&group_buf[..n], from)
                }
                r = self.sender.recv_from(&mut unicast_buf) => {
                    let (n, from) = r?;
                    (&unicast_buf[..n], from)
                }
            };
            match decode(datagram) {
                Ok(Some(datagram)) => self.handle(datagram, from).await,
                Ok(None) => {}
                Err(e) => tracing::debug!(%from, error = %e, "bad DrayerUDP datagram"),
            }
        }
    }

    async fn handle(&self, datagram: Datagram, from: SocketAddr) {
        match datagram {
            Datagram::GetRecordsSince { chain, time } => {
                let Some(path) = self.streams.get(&chain) else {
                    return;
                };
                let reply = Stream::open_read_only(path).ok().and_then(|s| {
                    (s.tip().ok()? > time)
                        .then(|| self.tip_announcement(&s).ok().flatten())
                        .flatten()
                });
                if let Some(reply) = reply {
                    // Unicast to the asker only.
                    let _ = self.sender.send_to(&reply, from).await;
                }
            }
            Datagram::Record {
                chain,
                modified,
                httpport,
            } => {
                // A LAN protocol: announcements from public addresses are
                // someone steering this node's fetches from afar.
                if !is_local(from.ip()) {
                    return;
                }
                let Some(path) = self.streams.get(&chain).cloned() else {
                    return;
                };
                let newer = Stream::open_read_only(&path)
                    .and_then(|s| s.tip())
                    .is_ok_and(|tip| modified > tip);
                if !newer || !self.claim(chain) {
                    return;
                }
                // Only the datagram's own source, whatever it claims.
                let url = format!("http://{}/", SocketAddr::new(from.ip(), httpport));
                let pulls = self.pulls.clone();
                tokio::spawn(async move {
                    let result = async {
                        let mut stream = Stream::open(&path).map_err(std::io::Error::other)?;
                        let key = *stream.public_key();
                        let mut source = HttpSource::new(&url, key);
                        pull(&mut stream, &mut source)
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))
                    }
                    .await;
                    match result {
                        Ok(pulled) => {
                            tracing::info!(%url, ?pulled, "pulled after a LAN announcement")
                        }
                        Err(e) => tracing::warn!(%url, error = %e, "LAN pull failed"),
                    }
                    if let Some(entry) = pulls
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(&chain)
                    {
                        entry.1 = false;
                    }
                });
            }
        }
    }

    /// Whether a pull of `chain` may start now (none running, none
    /// started within `min_interval`); marks it running.
    fn claim(&self, chain: [u8; 32]) -> bool {
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match pulls.get(&chain) {
            Some((started, running))
                if *running || now.duration_since(*started) < self.config.min_interval =>
            {
                false
            }
            _ => {
                pulls.insert(chain, (now, true));
                true
            }
        }
    }

    /// The address the listener is bound to.
    pub fn local_port(&self) -> std::io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }
}

/// Whether `ip` is a private, loopback or link-local address.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}
