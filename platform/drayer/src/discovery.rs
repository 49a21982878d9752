//! DrayerUDP: finding peers on the LAN (spec §11), hardened (O9).
//!
//! A datagram is the magic `ab c1 61 29` and one msgpack map. A node asks
//! the group `getRecordsSince {chain, time}`; a node holding that stream
//! with newer records answers with a `record` announcement of its tip and
//! HTTP port; a node hearing of a newer tip pulls from
//! `http://<the datagram's source IP>:<httpport>/`.
//!
//! The original would fetch from whatever address a datagram named and
//! verified nothing (O9), and answered anyone by unicast with three times
//! what they sent. Here: only datagrams from loopback or a directly
//! attached subnet are looked at, each source within a token bucket (the
//! least recently heard making room for a new one) and all within a
//! node-wide one; each stream's tip is read from its file at most once a
//! second. An answer goes by unicast only if it is no larger than the
//! request, else to the group (where the original asker listens too), at
//! most once a second per stream. Only the datagram's source address is
//! ever contacted, with no redirects, only for streams this node holds, at
//! most one pull per stream at a time and one per `min_interval`, at most
//! [`MAX_LAN_PULLS`] at once node-wide, each within its `PullLimits`, and
//! every record pulled is verified as in any sync. Datagrams are parsed
//! strictly and size-capped; a failed receive never ends the service;
//! SQLite work runs on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyway_core::drayer::{Meta, VerifyingKey};
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use keyway_core::rate::{RateLimit, TokenBucket};

use crate::http::HttpSource;
use crate::stream::Stream;
use crate::sync::{PullLimits, pull_with};
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
    /// Bounds on each pull a peer's announcement starts.
    pub pull_limits: PullLimits,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            group: GROUP,
            port: PORT,
            interface: Ipv4Addr::UNSPECIFIED,
            http_port: 33125,
            min_interval: Duration::from_secs(10),
            pull_limits: PullLimits::default(),
        }
    }
}

/// Datagrams taken from one source address: 16 a second after a burst of
/// 64 (a node asks about, and announces, every stream it holds at once).
pub const SOURCE_LIMIT: RateLimit = RateLimit {
    rate: 16.0,
    burst: 64.0,
};

/// Source addresses whose buckets are remembered; when the table is full,
/// a new source takes the bucket of the one heard from least recently (a
/// host spoofing many addresses must not keep new peers out).
pub const MAX_SOURCES: usize = 1024;

/// Datagrams handled by the node from all sources together: 256 a second
/// after a burst of 1,024. Spoofed source addresses each get a bucket of
/// their own; this bounds what they cost together.
pub const NODE_LIMIT: RateLimit = RateLimit {
    rate: 256.0,
    burst: 1024.0,
};

/// LAN-triggered pulls running at once, node-wide: an announcement that
/// finds them all busy is skipped (the stream is asked about again at the
/// next announcement), not queued.
pub const MAX_LAN_PULLS: usize = 2;

/// How long a stream's tip, as read from its file, answers datagrams:
/// SQLite is opened at most this often per stream, however many arrive.
pub const TIP_TTL: Duration = Duration::from_secs(1);

/// At most one announcement of a stream to the group this often, however
/// many ask: every node on the LAN hears each one.
pub const GROUP_REPLY_INTERVAL: Duration = Duration::from_secs(1);

/// How often the interfaces' subnets are read again.
const SUBNETS_TTL: Duration = Duration::from_secs(60);

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
    /// [`MAX_LAN_PULLS`] slots for pulls.
    pull_slots: Arc<Semaphore>,
    /// Each stream's tip as last read, and when.
    tips: HashMap<[u8; 32], (Instant, Tip)>,
    gate: Gate,
    /// The subnets this host is attached to, and when they were read.
    subnets: (Subnets, Instant),
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
            pull_slots: Arc::new(Semaphore::new(MAX_LAN_PULLS)),
            tips: HashMap::new(),
            gate: Gate::new(Instant::now()),
            subnets: (Subnets::of_this_host(), Instant::now()),
        })
    }

    /// Asks the group for newer records of every stream held, and
    /// announces this node's tips.
    pub async fn announce(&self) -> std::io::Result<()> {
        let group = SocketAddr::from((self.config.group, self.config.port));
        let paths: Vec<PathBuf> = self.streams.values().cloned().collect();
        let http_port = self.config.http_port;
        let datagrams = blocking(move || {
            let mut out = Vec::new();
            for path in paths {
                let stream = Stream::open_read_only(&path).map_err(std::io::Error::other)?;
                let tip = stream.tip().map_err(std::io::Error::other)?;
                out.push(encode_get_records_since(stream.public_key(), tip));
                out.extend(tip_announcement(&stream, http_port)?);
            }
            Ok::<_, std::io::Error>(out)
        })
        .await??;
        for datagram in datagrams {
            self.sender.send_to(&datagram, group).await?;
        }
        Ok(())
    }

    /// Serves datagrams until the task is dropped. A failed receive (an
    /// ICMP error a peer provoked, say) is logged and waited out; it never
    /// ends the task.
    pub async fn run(mut self) -> std::io::Result<()> {
        let mut group_buf = vec![0u8; MAX_DATAGRAM];
        let mut unicast_buf = vec![0u8; MAX_DATAGRAM];
        let mut failures = 0u32;
        loop {
            // Unicast answers come back to the sender's ephemeral port.
            let received = tokio::select! {
                r = self.listener.recv_from(&mut group_buf) => {
                    r.map(|(n, from)| (&group_buf[..n], from))
                }
                r = self.sender.recv_from(&mut unicast_buf) => {
                    r.map(|(n, from)| (&unicast_buf[..n], from))
                }
            };
            let (datagram, from) = match received {
                Ok(received) => {
                    failures = 0;
                    received
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(error = %e, failures, "DrayerUDP receive failed");
                    tokio::time::sleep(retry_after(failures)).await;
                    continue;
                }
            };
            if !self.admit(from) {
                continue;
            }
            match decode(datagram) {
                Ok(Some(decoded)) => {
                    let size = datagram.len();
                    self.handle(decoded, size, from).await;
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(%from, error = %e, "bad DrayerUDP datagram"),
            }
        }
    }

    /// Whether a datagram from `from` is looked at: a source on a
    /// directly attached subnet (or loopback) with tokens left.
    fn admit(&mut self, from: SocketAddr) -> bool {
        let now = Instant::now();
        if now.duration_since(self.subnets.1) >= SUBNETS_TTL {
            self.subnets = (Subnets::of_this_host(), now);
        }
        self.subnets.0.attached(from.ip()) && self.gate.admit(from.ip(), now)
    }

    async fn handle(&mut self, datagram: Datagram, size: usize, from: SocketAddr) {
        match datagram {
            Datagram::GetRecordsSince { chain, time } => {
                let Some(tip) = self.tip(chain, Instant::now()).await else {
                    return;
                };
                let Some(reply) = tip.announcement.filter(|_| tip.modified > time) else {
                    return;
                };
                let to = match self.gate.route(chain, reply.len(), size, Instant::now()) {
                    Route::Unicast => from,
                    Route::Group => SocketAddr::from((self.config.group, self.config.port)),
                    Route::Nowhere => return,
                };
                let _ = self.sender.send_to(&reply, to).await;
            }
            Datagram::Record {
                chain,
                modified,
                httpport,
            } => {
                let Some(path) = self.streams.get(&chain).cloned() else {
                    return;
                };
                let newer = self
                    .tip(chain, Instant::now())
                    .await
                    .is_some_and(|tip| modified > tip.modified);
                if !newer {
                    return;
                }
                let Ok(slot) = self.pull_slots.clone().try_acquire_owned() else {
                    tracing::debug!(%from, "LAN pulls all busy: announcement skipped");
                    return;
                };
                if !self.claim(chain) {
                    return;
                }
                // Only the datagram's own source, whatever it claims.
                let url = format!("http://{}/", SocketAddr::new(from.ip(), httpport));
                let limits = self.config.pull_limits;
                self.spawn_pull(chain, slot, async move {
                    let result = async {
                        let mut stream = blocking(move || Stream::open(&path))
                            .await?
                            .map_err(std::io::Error::other)?;
                        let key = *stream.public_key();
                        let mut source = HttpSource::new(&url, key);
                        pull_with(&mut stream, &mut source, &limits)
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
                });
            }
        }
    }

    /// `chain`'s tip, if this node holds the stream: read from its file at
    /// most once per [`TIP_TTL`] (a flood of datagrams about it costs no
    /// SQLite work), else as last read. One entry per stream held.
    async fn tip(&mut self, chain: [u8; 32], now: Instant) -> Option<Tip> {
        if let Some((read, tip)) = self.tips.get(&chain)
            && now.duration_since(*read) < TIP_TTL
        {
            return Some(tip.clone());
        }
        let path = self.streams.get(&chain)?.clone();
        let http_port = self.config.http_port;
        let tip = blocking(move || {
            let stream = Stream::open_read_only(&path).ok()?;
            Some(Tip {
                modified: stream.tip().ok()?,
                announcement: tip_announcement(&stream, http_port).ok().flatten(),
            })
        })
        .await
        .ok()
        .flatten()?;
        self.tips.insert(chain, (now, tip.clone()));
        Some(tip)
    }

    /// Runs `work`, a pull of `chain` holding `slot`; however it ends (a
    /// panic included), the stream is marked as not pulling and the slot
    /// is given back.
    fn spawn_pull(
        &self,
        chain: [u8; 32],
        slot: OwnedSemaphorePermit,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let running = Running {
            pulls: self.pulls.clone(),
            chain,
            _slot: slot,
        };
        tokio::spawn(async move {
            let _running = running;
            work.await;
        })
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

/// A stream's tip as discovery uses it.
#[derive(Clone, Debug)]
struct Tip {
    /// When its newest record was modified (0 if none).
    modified: i64,
    /// Its `record` announcement, if it has records.
    announcement: Option<Vec<u8>>,
}

/// A LAN-triggered pull in progress: dropped when its task ends, however
/// it ends.
struct Running {
    pulls: Pulls,
    chain: [u8; 32],
    _slot: OwnedSemaphorePermit,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(entry) = self
            .pulls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&self.chain)
        {
            entry.1 = false;
        }
    }
}

/// A `record` announcement of `stream`'s tip, if it has records.
fn tip_announcement(stream: &Stream, http_port: u16) -> std::io::Result<Option<Vec<u8>>> {
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
        http_port,
        stream.public_key(),
    )))
}

/// Runs SQLite work on the blocking pool, off the runtime's threads (a
/// panic there goes on here).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    crate::blocking::run(f).await.map_err(std::io::Error::other)
}

/// How long to wait after `failures` failed receives in a row: at once
/// at first, then longer, up to a second (a socket that keeps failing
/// must not spin).
fn retry_after(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.saturating_sub(1).min(7)).min(Duration::from_secs(1))
}

/// Where an answer to `getRecordsSince` goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To the asker: the reply is no larger than the request.
    Unicast,
    /// To the group, which every node on the LAN (the asker included)
    /// listens to: the reply would be larger than the request.
    Group,
    /// Nowhere: the group heard this stream's announcement a moment ago.
    Nowhere,
}

/// The decisions that keep DrayerUDP from being a reflector or an
/// amplifier, and from being silenced: per-source token buckets in a
/// bounded table, a node-wide bucket, and the route of each reply.
#[derive(Debug)]
pub struct Gate {
    origin: Instant,
    sources: Sources,
    node: TokenBucket,
    /// Per stream, when its announcement last went to the group.
    told_group: HashMap<[u8; 32], Instant>,
}

impl Gate {
    pub fn new(now: Instant) -> Self {
        Self {
            origin: now,
            sources: Sources::default(),
            node: TokenBucket::new(&NODE_LIMIT, 0.0),
            told_group: HashMap::new(),
        }
    }

    /// Takes a token from `source`'s bucket (a new source always gets a
    /// full one, see [`MAX_SOURCES`]), then one from the node's.
    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        let t = now.duration_since(self.origin).as_secs_f64();
        self.sources.admit(source, t) && self.node.try_take(&NODE_LIMIT, t)
    }

    /// Where the `reply`-byte answer to a `request`-byte datagram about
    /// `chain` goes: never to the asker alone if larger than what it
    /// sent (spoofed requests must not make this node an amplifier), and
    /// to the group at most once per [`GROUP_REPLY_INTERVAL`] per stream.
    /// Nothing is padded and the wire format is the original's.
    pub fn route(&mut self, chain: [u8; 32], reply: usize, request: usize, now: Instant) -> Route {
        if reply <= request {
            return Route::Unicast;
        }
        // One entry per stream held: bounded by the streams served.
        match self.told_group.get(&chain) {
            Some(at) if now.duration_since(*at) < GROUP_REPLY_INTERVAL => Route::Nowhere,
            _ => {
                self.told_group.insert(chain, now);
                Route::Group
            }
        }
    }
}

/// Per-source token buckets, at most [`MAX_SOURCES`], the least recently
/// heard from making room for a new source.
#[derive(Debug, Default)]
struct Sources {
    /// Each source's bucket and when it was last heard from (a count).
    buckets: HashMap<IpAddr, (TokenBucket, u64)>,
    /// The sources by when they were last heard from.
    by_use: BTreeMap<u64, IpAddr>,
    heard: u64,
}

impl Sources {
    /// Takes a token from `source`'s bucket at `t` seconds.
    fn admit(&mut self, source: IpAddr, t: f64) -> bool {
        self.heard += 1;
        let heard = self.heard;
        if let Some((bucket, last)) = self.buckets.get_mut(&source) {
            self.by_use.remove(last);
            *last = heard;
            self.by_use.insert(heard, source);
            return bucket.try_take(&SOURCE_LIMIT, t);
        }
        if self.buckets.len() >= MAX_SOURCES
            && let Some((_, stale)) = self.by_use.pop_first()
        {
            self.buckets.remove(&stale);
        }
        let mut bucket = TokenBucket::new(&SOURCE_LIMIT, t);
        let admitted = bucket.try_take(&SOURCE_LIMIT, t);
        self.buckets.insert(source, (bucket, heard));
        self.by_use.insert(heard, source);
        admitted
    }
}

/// The IPv4 subnets this host's interfaces are on (address and netmask).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subnets(Vec<(Ipv4Addr, Ipv4Addr)>);

impl Subnets {
    /// Read from the interfaces now; none if they cannot be read (then
    /// only loopback is answered).
    pub fn of_this_host() -> Self {
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => Self::new(interfaces.into_iter().filter_map(|i| match i.addr {
                if_addrs::IfAddr::V4(v4) => Some((v4.ip, v4.netmask)),
                if_addrs::IfAddr::V6(_) => None,
            })),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list network interfaces: DrayerUDP answers loopback only");
                Self::default()
            }
        }
    }

    /// From (address, netmask) pairs.
    pub fn new(nets: impl IntoIterator<Item = (Ipv4Addr, Ipv4Addr)>) -> Self {
        Self(nets.into_iter().collect())
    }

    /// Whether `ip` is loopback or on a directly attached subnet. DrayerUDP
    /// is a LAN protocol: a datagram from anywhere else is someone steering
    /// this node from afar (O9), or a spoofed source to reflect at.
    pub fn attached(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return v6.is_loopback(),
            },
        };
        // 0.0.0.0 and the limited broadcast are no one's address.
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return false;
        }
        ip.is_loopback()
            || self.0.iter().any(|(addr, mask)| {
                let (addr, mask, ip) = (u32::from(*addr), u32::from(*mask), u32::from(ip));
                // A /32 (point-to-point) covers only this host's address.
                addr & mask == ip & mask
            })
    }
}

/// Whether `ip` is a private, loopback or link-local address.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item 7: an ICMP error that comes back on the sender socket (here:
    /// connected to a port nobody listens on, so Linux reports it as
    /// ECONNREFUSED on the next receive) does not end discovery.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receive_error_does_not_end_discovery() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.stream");
        let mut owner = Stream::create(&path).unwrap();
        owner.set("k", "obj", b"\xa1v").unwrap();
        let config = DiscoveryConfig {
            port: 0,
            interface: Ipv4Addr::LOCALHOST,
            ..DiscoveryConfig::default()
        };
        let mut node = Discovery::bind(config, std::slice::from_ref(&path)).unwrap();
        let port = node.local_port().unwrap();
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let nobody = closed.local_addr().unwrap();
        drop(closed);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.connect(nobody).unwrap();
        sender.set_nonblocking(true).unwrap();
        node.sender = UdpSocket::from_std(sender).unwrap();
        node.sender.send(b"anyone?").await.unwrap();
        let task = tokio::spawn(node.run());

        // A request large enough to be answered by unicast.
        let mut asked = encode_get_records_since(owner.public_key(), 0);
        asked[4] = 0x84;
        asked.extend_from_slice(b"\xa3pad\xda\x02\x00");
        asked.resize(asked.len() + 512, 0);
        let asker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 2048];
        let mut answered = false;
        // A few tries: the first may be read before the error is.
        for _ in 0..5 {
            asker.send_to(&asked, ("127.0.0.1", port)).await.unwrap();
            if let Ok(r) =
                tokio::time::timeout(Duration::from_secs(2), asker.recv_from(&mut buf)).await
            {
                r.unwrap();
                answered = true;
            }
        }
        assert!(!task.is_finished(), "the discovery task ended: {task:?}");
        assert!(answered);
    }

    #[test]
    fn only_attached_subnets_and_loopback_are_admitted() {
        let nets = Subnets::new([
            (
                Ipv4Addr::new(192, 168, 1, 10),
                Ipv4Addr::new(255, 255, 255, 0),
            ),
            (Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(255, 0, 0, 0)),
            (Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::BROADCAST),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for yes in [
            "192.168.1.77",
            "192.168.1.10",
            "10.200.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "::ffff:192.168.1.5",
        ] {
            assert!(nets.attached(ip(yes)), "{yes}");
        }
        for no in [
            "192.168.2.1",
            "172.16.0.1",
            "8.8.8.8",
            "100.64.0.2",
            "0.0.0.0",
            "255.255.255.255",
            "224.7.130.8",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!nets.attached(ip(no)), "{no}");
        }
        // Interfaces that cannot be read: loopback only.
        assert!(!Subnets::default().attached(ip("192.168.1.77")));
        assert!(Subnets::default().attached(ip("127.0.0.1")));
        // This host's own table holds at least what it reads.
        assert!(Subnets::of_this_host().attached(ip("127.0.0.1")));
    }

    #[test]
    fn each_source_has_its_own_bucket_in_a_bounded_table() {
        let t0 = Instant::now();
        let mut gate = Gate::new(t0);
        let a = IpAddr::from([192, 168, 1, 5]);
        let burst = SOURCE_LIMIT.burst as usize;
        assert!((0..burst).all(|_| gate.admit(a, t0)));
        assert!(!gate.admit(a, t0));
        // Another source is not held back by the first.
        assert!(gate.admit(IpAddr::from([192, 168, 1, 6]), t0));
        let later = t0 + Duration::from_secs(1);
        let refilled = SOURCE_LIMIT.rate as usize;
        assert!((0..refilled).all(|_| gate.admit(a, later)));
        assert!(!gate.admit(a, later));
        // A flood of new sources never grows the table past its bound.
        for i in 0..MAX_SOURCES as u32 * 4 {
            gate.sources
                .admit(IpAddr::from((10 << 24 | i).to_be_bytes()), 1.0);
        }
        assert_eq!(gate.sources.buckets.len(), MAX_SOURCES);
        assert_eq!(gate.sources.by_use.len(), MAX_SOURCES);
    }

    /// Item 7 (silencing): 1,024 spoofed sources that keep their buckets
    /// empty do not keep a new, honest peer out; the source heard from
    /// least recently makes room.
    #[test]
    fn a_new_source_gets_a_bucket_in_a_table_kept_full() {
        let mut sources = Sources::default();
        let spoofed = |i: u32| IpAddr::from((10 << 24 | i).to_be_bytes());
        let burst = SOURCE_LIMIT.burst as usize;
        for i in 0..MAX_SOURCES as u32 {
            for _ in 0..burst {
                sources.admit(spoofed(i), 0.0);
            }
            assert!(!sources.admit(spoofed(i), 0.0));
        }
        let honest = IpAddr::from([192, 168, 1, 9]);
        assert!(sources.admit(honest, 0.0), "a new peer was turned away");
        // The one heard from least recently made room; the others keep
        // their empty buckets.
        assert!(!sources.buckets.contains_key(&spoofed(0)));
        assert!(!sources.admit(spoofed(MAX_SOURCES as u32 - 1), 0.0));
        assert_eq!(sources.buckets.len(), MAX_SOURCES);
        // And it keeps its bucket while others come and go.
        for i in 0..MAX_SOURCES as u32 / 2 {
            sources.admit(spoofed(MAX_SOURCES as u32 + i), 0.0);
        }
        assert!(sources.buckets.contains_key(&honest));
    }

    /// Item 7 (silencing): whatever the number of source addresses, the
    /// node handles at most its own budget of datagrams.
    #[test]
    fn datagrams_from_many_sources_share_a_node_wide_budget() {
        let t0 = Instant::now();
        let mut gate = Gate::new(t0);
        let admitted = (0..4 * NODE_LIMIT.burst as u32)
            .filter(|i| gate.admit(IpAddr::from((10 << 24 | i).to_be_bytes()), t0))
            .count();
        assert_eq!(admitted, NODE_LIMIT.burst as usize);
        let later = t0 + Duration::from_secs(1);
        let admitted = (0..4 * NODE_LIMIT.burst as u32)
            .filter(|i| gate.admit(IpAddr::from((11 << 24 | i).to_be_bytes()), later))
            .count();
        assert_eq!(admitted, NODE_LIMIT.rate as usize);
    }

    fn node_for(paths: &[PathBuf]) -> Discovery {
        let config = DiscoveryConfig {
            port: 0,
            interface: Ipv4Addr::LOCALHOST,
            min_interval: Duration::ZERO,
            ..DiscoveryConfig::default()
        };
        Discovery::bind(config, paths).unwrap()
    }

    /// Item 7 (silencing): a stream's tip is read from its file at most
    /// once per TIP_TTL, however many datagrams ask.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streams_tip_is_read_at_most_once_per_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.stream");
        let mut owner = Stream::create(&path).unwrap();
        owner.set("k", "obj", b"\xa1v").unwrap();
        let chain = *owner.public_key().as_bytes();
        let mut node = node_for(std::slice::from_ref(&path));
        let t0 = Instant::now();
        let first = node.tip(chain, t0).await.unwrap();
        assert_eq!(first.modified, owner.tip().unwrap());
        owner.set("k2", "obj", b"\xa1w").unwrap();
        let cached = node.tip(chain, t0 + TIP_TTL / 2).await.unwrap();
        assert_eq!(cached.modified, first.modified);
        let read = node.tip(chain, t0 + TIP_TTL).await.unwrap();
        assert_eq!(read.modified, owner.tip().unwrap());
        assert!(node.tip([0; 32], t0).await.is_none());
    }

    /// Item 5: a LAN pull that panics (a bug) does not leave its stream
    /// marked as pulling for ever, nor keep its slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_lan_pull_frees_its_stream_and_its_slot() {
        let node = node_for(&[]);
        let chain = [7; 32];
        assert!(node.claim(chain));
        assert!(!node.claim(chain));
        let slot = node.pull_slots.clone().try_acquire_owned().unwrap();
        let task = node.spawn_pull(chain, slot, async { panic!("a bug in a pull") });
        assert!(task.await.unwrap_err().is_panic());
        assert!(node.claim(chain), "the stream is still marked as pulling");
        assert_eq!(node.pull_slots.available_permits(), MAX_LAN_PULLS);
    }

    /// Item 5 (memory): announcements of every stream held start at most
    /// MAX_LAN_PULLS pulls at once; the others are skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lan_announcements_start_a_bounded_number_of_pulls() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        let mut tips = Vec::new();
        for i in 0..MAX_LAN_PULLS + 2 {
            let path = dir.path().join(format!("s{i}.stream"));
            let mut owner = Stream::create(&path).unwrap();
            owner.set("k", "obj", b"\xa1v").unwrap();
            tips.push((
                owner.newest_records(1).unwrap().remove(0),
                *owner.public_key(),
            ));
            paths.push(path);
        }
        // A peer that accepts pulls and never answers them.
        let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer_port = peer.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = peer.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if held.len() < 16 {
                    held.push(socket);
                }
            }
        });
        let node = node_for(&paths);
        let port = node.local_port().unwrap();
        let _task = tokio::spawn(node.run());
        let announcer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for ((meta, body), key) in &tips {
            let newer = Meta {
                modified: meta.modified + 1_000_000,
                ..*meta
            };
            let datagram = encode_record(&newer, &body.key, peer_port, key);
            announcer
                .send_to(&datagram, ("127.0.0.1", port))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let load = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        while load() < MAX_LAN_PULLS && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A while for pulls that should not start.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(load(), MAX_LAN_PULLS);
    }

    #[test]
    fn a_reply_larger_than_its_request_goes_to_the_group_once_a_second() {
        let t0 = Instant::now();
        let mut gate = Gate::new(t0);
        let (chain, other) = ([1; 32], [2; 32]);
        // The original's honest exchange: 74 bytes asked, 227 answered.
        assert_eq!(gate.route(chain, 227, 74, t0), Route::Group);
        assert_eq!(gate.route(chain, 227, 600, t0), Route::Unicast);
        assert_eq!(gate.route(chain, 600, 600, t0), Route::Unicast);
        let soon = t0 + GROUP_REPLY_INTERVAL / 2;
        assert_eq!(gate.route(chain, 227, 74, soon), Route::Nowhere);
        assert_eq!(gate.route(other, 227, 74, soon), Route::Group);
        let later = t0 + GROUP_REPLY_INTERVAL;
        assert_eq!(gate.route(chain, 227, 74, later), Route::Group);
    }

    #[test]
    fn failing_receives_are_retried_ever_more_slowly_up_to_a_second() {
        assert_eq!(retry_after(1), Duration::from_millis(10));
        assert!(retry_after(2) > retry_after(1));
        assert_eq!(retry_after(u32::MAX), Duration::from_secs(1));
    }
}
