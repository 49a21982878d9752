//! The namebump client (spec §4.5 and the seed's API), for tokio.
//!
//! - PUT, DEL and USAGE: each attempt builds **one** signed packet and sends
//!   it over UDP and TCP at once; the first valid reply wins. Unlike the
//!   reference (which signs each leg separately, so the server executes the
//!   write twice: bug 12) both legs carry the same request, which the
//!   server's replay cache answers once.
//! - GET: races every address family × {TCP, UDP}. UDP GETs are padded to
//!   the size of the largest possible reply, because servers (ours) never
//!   answer a datagram with a bigger one.
//! - [`ClientConfig::udp`] `= false` leaves UDP out of both races.
//! - 3 attempts, 0.5 s apart, on network errors and timeouts only.
//! - Every attempt uses a fresh reply key, and a reply is accepted only if
//!   it decrypts under that key and carries the request's pkid and op (or
//!   is an error reply): a stale reply to an earlier call, such as one of
//!   the reference server's 5 UDP copies, cannot even be read (bugs 10, 41).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::tcp_framing::SealedStream;
use keyway_core::namebump::usage::Usage;
use keyway_core::namebump::{
    DEFAULT_REQUEST_TTL, DO_BUMP, DONT_BUMP, EncodeError, MAX_NAME_LEN, MAX_VALUE_LEN, Op, Packet,
};
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::{Keypair, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket, lookup_host};

use crate::clock::{Clock, SystemClock};

/// What a PUT may do when the address's quota is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    /// Evict the oldest bumpable name of the same quota row (DO_BUMP).
    #[default]
    Bump,
    /// Fail with [`ClientError::RejectedAtQuota`] (DONT_BUMP).
    DontBump,
    /// Fail with [`ClientError::WouldBump`] instead of bumping (THROW_BUMP).
    Throw,
}

/// A name's current value, as the server returned it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub value: Vec<u8>,
    /// The owner's compressed public key.
    pub owner: [u8; 33],
    /// Unix seconds of the last write (whole seconds).
    pub timestamp: f64,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("rejected: this address's quota of names is full")]
    RejectedAtQuota,
    #[error("rejected: storing this would bump another name (THROW_BUMP)")]
    WouldBump,
    #[error("not the owner: the name belongs to another key")]
    NotOwner,
    #[error("request refused as expired: the server clock is {skew:+.1} s from ours")]
    ClockSkew { skew: f64 },
    #[error("the server refused the request")]
    ServerError,
    #[error("no reply from {server} after {attempts} attempts")]
    Timeout { server: String, attempts: u32 },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("cannot reach {server}: {source}")]
    Network {
        server: String,
        source: std::io::Error,
    },
    #[error("the server's reply is malformed")]
    BadReply,
}

impl From<EncodeError> for ClientError {
    fn from(e: EncodeError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

/// Timeouts and retries. The defaults are the reference client's.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub attempts: u32,
    pub retry_pause: Duration,
    /// How long one attempt waits for a reply.
    pub reply_timeout: Duration,
    /// Bind outgoing sockets to this address (quota tests, multi-homed hosts).
    pub source: Option<IpAddr>,
    /// Race UDP next to TCP (the default); `false` sends over TCP only, for
    /// networks that drop UDP.
    pub udp: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            retry_pause: Duration::from_millis(500),
            reply_timeout: Duration::from_secs(2),
            source: None,
            udp: true,
        }
    }
}

/// A client of one namebump server.
#[derive(Clone)]
pub struct Client {
    /// Resolved addresses, IPv4 first.
    servers: Arc<[SocketAddr]>,
    label: Arc<str>,
    server_pk: PublicKey,
    clock: Arc<dyn Clock>,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.label)
            .finish_non_exhaustive()
    }
}

/// A server's reply, decrypted and matched to its request.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub op: Op,
    pub pkid: u32,
    /// For PUT and DEL the request's own time, echoed.
    pub updated: f64,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    pub vkc: Option<[u8; 33]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Client {
    /// Resolves `server` ("host:port") and builds a client with a fresh reply key.
    pub async fn new(server: &str, server_pk: PublicKey) -> Result<Self, ClientError> {
        let mut servers: Vec<SocketAddr> = lookup_host(server)
            .await
            .map_err(|source| ClientError::Network {
                server: server.to_owned(),
                source,
            })?
            .collect();
        if servers.is_empty() {
            return Err(ClientError::InvalidInput(format!(
                "{server} resolves to no address"
            )));
        }
        servers.sort_by_key(SocketAddr::is_ipv6);
        servers.dedup();
        Ok(Self {
            servers: servers.into(),
            label: server.into(),
            server_pk,
            clock: Arc::new(SystemClock),
            config: ClientConfig::default(),
        })
    }

    pub fn with_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The server's resolved addresses, IPv4 first.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.servers
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reads a name. `Ok(None)` when it does not exist (or has expired).
    pub async fn get(&self, name: &[u8]) -> Result<Option<Record>, ClientError> {
        check_name(name)?;
        let reply = self.with_retries(|| self.get_once(name)).await?;
        if reply.op != Op::Get || reply.name != name {
            return Err(ClientError::BadReply);
        }
        if reply.updated == 0.0 {
            return Ok(None);
        }
        let owner = reply.vkc.ok_or(ClientError::BadReply)?;
        Ok(Some(Record {
            value: reply.value,
            owner,
            timestamp: reply.updated,
        }))
    }

    /// Claims or updates a name with `key`; ttl in seconds (at most 60).
    pub async fn put(
        &self,
        name: &[u8],
        value: &[u8],
        key: &Keypair,
        behavior: Behavior,
        ttl: Option<f64>,
    ) -> Result<(), ClientError> {
        self.put_reply(name, value, key, behavior, ttl)
            .await
            .map(drop)
    }

    /// [`Self::put`], returning the server's reply (what the reference's
    /// Python client hands its callers).
    pub async fn put_reply(
        &self,
        name: &[u8],
        value: &[u8],
        key: &Keypair,
        behavior: Behavior,
        ttl: Option<f64>,
    ) -> Result<Reply, ClientError> {
        check_name(name)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(EncodeError::ValueTooLong { len: value.len() }.into());
        }
        let wire_behavior = if behavior == Behavior::Bump {
            DO_BUMP
        } else {
            DONT_BUMP
        };
        let reply = self
            .with_retries(|| self.signed_once(Op::Put, name, value, key, wire_behavior, ttl))
            .await?;
        match reply.op {
            Op::Put if reply.updated == 0.0 && reply.value.is_empty() => match behavior {
                Behavior::Throw => Err(ClientError::WouldBump),
                _ => Err(ClientError::RejectedAtQuota),
            },
            Op::Put => Ok(reply),
            Op::Error => Err(self.explain_error(&reply, Some((name, key))).await),
            _ => Err(ClientError::BadReply),
        }
    }

    /// Deletes a name owned by `key`. Deleting a missing name succeeds.
    pub async fn delete(
        &self,
        name: &[u8],
        key: &Keypair,
        ttl: Option<f64>,
    ) -> Result<(), ClientError> {
        check_name(name)?;
        let reply = self
            .with_retries(|| self.signed_once(Op::Del, name, b"", key, DO_BUMP, ttl))
            .await?;
        match reply.op {
            Op::Del => Ok(()),
            Op::Error => Err(self.explain_error(&reply, Some((name, key))).await),
            _ => Err(ClientError::BadReply),
        }
    }

    /// This address's quota state (any key may ask).
    pub async fn usage(&self, key: &Keypair, ttl: Option<f64>) -> Result<Usage, ClientError> {
        let reply = self
            .with_retries(|| self.signed_once(Op::Usage, b"", b"", key, DO_BUMP, ttl))
            .await?;
        match reply.op {
            Op::Usage => Usage::decode(&reply.value).map_err(|_| ClientError::BadReply),
            Op::Error => Err(self.explain_error(&reply, None).await),
            _ => Err(ClientError::BadReply),
        }
    }

    /// An error reply carries no reason (spec §6.5): tell clock skew by the
    /// server time it carries, and a foreign owner by looking the name up.
    async fn explain_error(&self, reply: &Reply, name: Option<(&[u8], &Keypair)>) -> ClientError {
        let skew = reply.updated - self.clock.now();
        if skew.abs() > keyway_core::namebump::freshness::CLOCK_SKEW_SLACK {
            return ClientError::ClockSkew { skew };
        }
        if let Some((name, key)) = name
            && let Ok(Some(record)) = self.get(name).await
            && record.owner != *key.public().as_bytes()
        {
            return ClientError::NotOwner;
        }
        ClientError::ServerError
    }

    async fn with_retries<F, Fut>(&self, mut attempt: F) -> Result<Reply, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Reply, ClientError>>,
    {
        let attempts = self.config.attempts.max(1);
        let mut last = None;
        for i in 0..attempts {
            if i > 0 {
                tokio::time::sleep(self.config.retry_pause).await;
            }
            match attempt().await {
                Err(e @ (ClientError::Timeout { .. } | ClientError::Network { .. })) => {
                    last = Some(e)
                }
                other => return other,
            }
        }
        Err(match last {
            Some(ClientError::Timeout { .. }) | None => ClientError::Timeout {
                server: self.label.to_string(),
                attempts,
            },
            Some(e) => e,
        })
    }

    async fn signed_once(
        &self,
        op: Op,
        name: &[u8],
        value: &[u8],
        key: &Keypair,
        behavior: u8,
        ttl: Option<f64>,
    ) -> Result<Reply, ClientError> {
        let pkid = random_pkid();
        let reply_key = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
        let mut packet = Packet::new(op, pkid, self.clock.now(), name, value);
        packet.reply_pk = Some(*reply_key.public().as_bytes());
        packet.behavior = behavior;
        packet.ttl = ttl.unwrap_or(DEFAULT_REQUEST_TTL);
        packet.sign(key)?;
        let plaintext = encode(&packet)?;
        let server = self.servers[0];
        let legs = [Transport::Udp, Transport::Tcp]
            .into_iter()
            .filter(|t| self.config.udp || *t == Transport::Tcp)
            .map(|t| self.leg(t, server, &plaintext, &reply_key, pkid, op));
        self.race(legs.collect()).await
    }

    async fn get_once(&self, name: &[u8]) -> Result<Reply, ClientError> {
        let pkid = random_pkid();
        let reply_key = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
        let mut packet = Packet::new(Op::Get, pkid, self.clock.now(), name, b"");
        packet.reply_pk = Some(*reply_key.public().as_bytes());
        // As the reference client does without a key.
        packet.vkc = packet.reply_pk;
        let plain = encode(&packet)?;
        let padding = [0u8; MAX_VALUE_LEN];
        let padded = encode(&Packet {
            value: &padding,
            ..packet
        })?;
        let mut families: Vec<SocketAddr> = Vec::new();
        for addr in self.servers.iter() {
            if !families.iter().any(|a| a.is_ipv6() == addr.is_ipv6()) {
                families.push(*addr);
            }
        }
        let legs: FuturesUnordered<_> = families
            .iter()
            .flat_map(|addr| {
                [(Transport::Udp, &padded), (Transport::Tcp, &plain)]
                    .into_iter()
                    .filter(|(t, _)| self.config.udp || *t == Transport::Tcp)
                    .map(|(t, request)| self.leg(t, *addr, request, &reply_key, pkid, Op::Get))
            })
            .collect();
        self.race(legs).await
    }

    /// The first leg to succeed wins. An error reply is returned only when
    /// no leg succeeds: a reference server executes both legs of one
    /// request, and the second may fail ("0 rows changed", bug 14) even
    /// though the first was stored.
    async fn race<F>(&self, mut legs: FuturesUnordered<F>) -> Result<Reply, ClientError>
    where
        F: Future<Output = Result<Reply, ClientError>>,
    {
        let mut error_reply = None;
        let mut last = None;
        while let Some(result) = legs.next().await {
            match result {
                Ok(reply) if reply.op != Op::Error => return Ok(reply),
                Ok(reply) => error_reply = Some(reply),
                // Prefer a network error's reason over a bare timeout.
                Err(e) if last.is_none() || matches!(e, ClientError::Network { .. }) => {
                    last = Some(e);
                }
                Err(_) => {}
            }
        }
        match (error_reply, last) {
            (Some(reply), _) => Ok(reply),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ClientError::Timeout {
                server: self.label.to_string(),
                attempts: 1,
            }),
        }
    }

    async fn leg(
        &self,
        transport: Transport,
        server: SocketAddr,
        plaintext: &[u8],
        reply_key: &Keypair,
        pkid: u32,
        op: Op,
    ) -> Result<Reply, ClientError> {
        let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
        ecies::seal(
            &self.server_pk,
            plaintext,
            &mut UnwrapErr(getrandom::SysRng),
            &mut sealed,
        )
        .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        let exchange = async {
            match transport {
                Transport::Udp => {
                    self.udp_exchange(server, &sealed, reply_key, pkid, op)
                        .await
                }
                Transport::Tcp => {
                    self.tcp_exchange(server, &sealed, reply_key, pkid, op)
                        .await
                }
            }
        };
        let network = |source| ClientError::Network {
            server: server.to_string(),
            source,
        };
        match tokio::time::timeout(self.config.reply_timeout, exchange).await {
            Ok(result) => result.map_err(network),
            Err(_) => Err(ClientError::Timeout {
                server: self.label.to_string(),
                attempts: 1,
            }),
        }
    }

    fn local_addr(&self, server: SocketAddr) -> SocketAddr {
        let ip = match (self.config.source, server) {
            (Some(ip), _) => ip,
            (None, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (None, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        SocketAddr::new(ip, 0)
    }

    /// Decrypts and matches one reply; `None` for anything else (a stray
    /// or stale datagram), which the caller ignores.
    fn accept(sealed: &[u8], reply_key: &Keypair, pkid: u32, op: Op) -> Option<Reply> {
        let mut buf = vec![0u8; sealed.len()];
        let plaintext = ecies::open(reply_key, sealed, &mut buf).ok()?;
        parse_reply(plaintext, pkid, op)
    }

    async fn udp_exchange(
        &self,
        server: SocketAddr,
        sealed: &[u8],
        reply_key: &Keypair,
        pkid: u32,
        op: Op,
    ) -> std::io::Result<Reply> {
        let socket = UdpSocket::bind(self.local_addr(server)).await?;
        // Connected: datagrams from anyone but the server are not even read.
        socket.connect(server).await?;
        socket.send(sealed).await?;
        let mut buf = vec![0u8; 2048];
        loop {
            let n = socket.recv(&mut buf).await?;
            if let Some(reply) = Self::accept(&buf[..n], reply_key, pkid, op) {
                return Ok(reply);
            }
        }
    }

    async fn tcp_exchange(
        &self,
        server: SocketAddr,
        sealed: &[u8],
        reply_key: &Keypair,
        pkid: u32,
        op: Op,
    ) -> std::io::Result<Reply> {
        let socket = if server.is_ipv6() {
            TcpSocket::new_v6()?
        } else {
            TcpSocket::new_v4()?
        };
        if self.config.source.is_some() {
            socket.bind(self.local_addr(server))?;
        }
        let mut stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        // One write: a reference server reads one chunk as one message.
        stream.write_all(sealed).await?;
        let mut framer = SealedStream::new();
        let mut plaintext = vec![0u8; keyway_core::namebump::tcp_framing::MAX_SEALED_REQUEST];
        loop {
            while let Ok(Some(p)) = framer.next_message(reply_key, &mut plaintext) {
                if let Some(reply) = parse_reply(p, pkid, op) {
                    return Ok(reply);
                }
            }
            let n = stream.read(framer.spare()).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            framer.filled(n);
        }
    }
}

/// A fresh request id. Never 0: the reference replaces 0 and then fails
/// the signature (bug 27).
pub fn random_pkid() -> u32 {
    UnwrapErr(getrandom::SysRng).next_u32().max(1)
}

fn check_name(name: &[u8]) -> Result<(), ClientError> {
    if name.len() > MAX_NAME_LEN {
        return Err(EncodeError::NameTooLong { len: name.len() }.into());
    }
    Ok(())
}

fn encode(packet: &Packet<'_>) -> Result<Vec<u8>, ClientError> {
    let mut buf = vec![0u8; MAX_PACKET_LEN];
    let n = packet.encode(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn parse_reply(plaintext: &[u8], pkid: u32, op: Op) -> Option<Reply> {
    let p = Packet::decode(plaintext).ok()?;
    // Reference servers give error replies a random pkid (bug 31); ours echo it.
    let ours = p.pkid == pkid && (p.op == op || p.op == Op::Error);
    let reference_error = p.op == Op::Error && p.name == keyway_core::namebump::reply::ERROR_NAME;
    (ours || reference_error).then(|| Reply {
        op: p.op,
        pkid: p.pkid,
        updated: p.updated,
        name: p.name.to_vec(),
        value: p.value.to_vec(),
        vkc: p.vkc,
    })
}
