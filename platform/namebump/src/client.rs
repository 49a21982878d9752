//! The namebump client (spec §4.5 and the seed's API), for tokio: a thin
//! shell around [`keyway_core::namebump::client::Exchange`], which decides
//! everything (the request's bytes, the UDP/TCP × IPv4/IPv6 race, retries,
//! reply matching, the reading of error replies; see its documentation).
//!
//! This file keeps only I/O: resolving the server's name, one socket or
//! connection per leg the machine transmits on (a task each, dropped when
//! the machine closes the leg), the clocks, and the GET the machine asks
//! for when it needs a name's owner.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use keyway_core::namebump::client::{
    Event, Exchange, Failure, Families, Family, LEGS, Leg, LegFault, Outcome, Policy, TRANSMIT_LEN,
    Target, Transport,
};
use keyway_core::namebump::usage::Usage;
use keyway_core::namebump::{EncodeError, Op};
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::time::Instant;
use keyway_core::{Keypair, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket, lookup_host};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

pub use keyway_core::namebump::client::{Behavior, ErrorKind};

use crate::clock::{Clock, SystemClock};

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

impl ClientError {
    /// The kind every face reports (the CLI's `kind` word, the C status
    /// code, the Python exception): the one mapping (issue 13).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::RejectedAtQuota => ErrorKind::RejectedAtQuota,
            Self::WouldBump => ErrorKind::WouldBump,
            Self::NotOwner => ErrorKind::NotOwner,
            Self::ClockSkew { .. } => ErrorKind::ClockSkew,
            Self::ServerError => ErrorKind::ServerError,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::Network { .. } => ErrorKind::Network,
            Self::BadReply => ErrorKind::BadReply,
        }
    }
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
        let policy = Policy::default();
        Self {
            attempts: policy.attempts,
            retry_pause: policy.retry_pause,
            reply_timeout: policy.reply_timeout,
            source: None,
            udp: policy.udp,
        }
    }
}

impl ClientConfig {
    fn policy(&self) -> Policy {
        Policy {
            attempts: self.attempts,
            retry_pause: self.retry_pause,
            reply_timeout: self.reply_timeout,
            udp: self.udp,
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

/// What a leg's task reports, tagged with the transmit it serves.
#[derive(Debug)]
struct LegReport {
    leg: Leg,
    generation: u64,
    what: LegInput,
}

#[derive(Debug)]
enum LegInput {
    Bytes(Vec<u8>),
    Failed(std::io::Error),
}

/// Reports a leg task may queue before it waits for the exchange to read
/// them: a flooding peer slows its own task, not the exchange.
const LEG_REPORTS: usize = 16;

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
        let exchange = Exchange::get(name, self.config.policy(), self.target())?;
        let (exchange, outcome) = self.run(exchange).await?;
        match (outcome, exchange.reply()) {
            (Outcome::NotFound, _) => Ok(None),
            (Outcome::Found, Some(reply)) => Ok(Some(Record {
                value: reply.value.to_vec(),
                owner: reply.vkc.ok_or(ClientError::BadReply)?,
                timestamp: reply.updated,
            })),
            _ => Err(ClientError::BadReply),
        }
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
        let exchange = Exchange::put(
            name,
            value,
            key,
            behavior,
            ttl,
            self.config.policy(),
            self.target(),
        )?;
        let (exchange, outcome) = self.run(exchange).await?;
        match (outcome, exchange.reply()) {
            (Outcome::Stored, Some(p)) => Ok(Reply {
                op: p.op,
                pkid: p.pkid,
                updated: p.updated,
                name: p.name.to_vec(),
                value: p.value.to_vec(),
                vkc: p.vkc,
            }),
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
        let exchange = Exchange::delete(name, key, ttl, self.config.policy(), self.target())?;
        match self.run(exchange).await?.1 {
            Outcome::Deleted => Ok(()),
            _ => Err(ClientError::BadReply),
        }
    }

    /// This address's quota state (any key may ask).
    pub async fn usage(&self, key: &Keypair, ttl: Option<f64>) -> Result<Usage, ClientError> {
        let exchange = Exchange::usage(key, ttl, self.config.policy(), self.target())?;
        match self.run(exchange).await?.1 {
            Outcome::Usage(usage) => Ok(usage),
            _ => Err(ClientError::BadReply),
        }
    }

    fn target(&self) -> Target {
        Target {
            key: self.server_pk,
            families: Families {
                v4: self.servers.iter().any(SocketAddr::is_ipv4),
                v6: self.servers.iter().any(SocketAddr::is_ipv6),
            },
        }
    }

    /// The address a leg of `family` goes to: the first resolved one.
    fn address(&self, family: Family) -> Option<SocketAddr> {
        self.servers
            .iter()
            .find(|a| a.is_ipv6() == (family == Family::V6))
            .copied()
    }

    /// Drives `exchange` to its end: its transmits become leg tasks, their
    /// bytes and failures and the timers go back in. A successful outcome
    /// comes back with the machine (which holds the reply).
    async fn run(&self, mut exchange: Exchange) -> Result<(Exchange, Outcome), ClientError> {
        let origin = tokio::time::Instant::now();
        let now = || {
            Instant::from_micros(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX))
        };
        let (reports, mut inbox) = mpsc::channel::<LegReport>(LEG_REPORTS);
        let mut tasks: [Option<AbortOnDropHandle<()>>; LEGS] = Default::default();
        let mut generations = [0u64; LEGS];
        let mut errors: [Option<std::io::Error>; LEGS] = Default::default();
        let mut rng = UnwrapErr(getrandom::SysRng);
        let mut buf = vec![0u8; TRANSMIT_LEN];
        loop {
            while let Some(event) = exchange.poll_event() {
                match event {
                    Event::CloseLeg(leg) => tasks[leg.index()] = None,
                    Event::LookupOwner => {
                        // A second exchange: the name's owner, if any.
                        let owner = match Box::pin(self.get(exchange.name())).await {
                            Ok(Some(record)) => Some(record.owner),
                            _ => None,
                        };
                        exchange.handle_lookup(now(), owner);
                    }
                    Event::Done(Outcome::Failed(failure)) => {
                        return Err(self.failure(failure, &mut errors));
                    }
                    Event::Done(outcome) => return Ok((exchange, outcome)),
                }
            }
            while let Some(transmit) =
                exchange.poll_transmit(now(), self.clock.now(), &mut rng, &mut buf)
            {
                let i = transmit.leg.index();
                generations[i] += 1;
                errors[i] = None;
                let Some(server) = self.address(transmit.leg.family) else {
                    continue;
                };
                let leg = LegTask {
                    leg: transmit.leg,
                    generation: generations[i],
                    server,
                    local: self.local_addr(server),
                    bind: self.config.source.is_some(),
                    request: buf[..transmit.len].to_vec(),
                    reports: reports.clone(),
                };
                tasks[i] = Some(AbortOnDropHandle::new(tokio::spawn(leg.run())));
            }
            if exchange.outcome().is_some() {
                continue;
            }
            let Some(deadline) = exchange.poll_timeout() else {
                // Only a finished exchange or a pending lookup has no timer,
                // and both were handled above.
                return Err(self.timeout(exchange.attempts()));
            };
            let wake = origin
                .checked_add(Duration::from_micros(deadline.as_micros()))
                .unwrap_or_else(|| origin + Duration::from_secs(86_400 * 365));
            tokio::select! {
                Some(report) = inbox.recv() => {
                    let i = report.leg.index();
                    if report.generation != generations[i] || tasks[i].is_none() {
                        continue;
                    }
                    match report.what {
                        LegInput::Bytes(bytes) => match report.leg.transport {
                            Transport::Udp => {
                                exchange.handle_datagram(now(), self.clock.now(), report.leg, &bytes)
                            }
                            Transport::Tcp => {
                                exchange.handle_stream(now(), self.clock.now(), report.leg, &bytes)
                            }
                        },
                        LegInput::Failed(e) => {
                            errors[i] = Some(e);
                            exchange.handle_leg_failed(now(), report.leg);
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => exchange.handle_timeout(now()),
            }
        }
    }

    fn failure(
        &self,
        failure: Failure,
        errors: &mut [Option<std::io::Error>; LEGS],
    ) -> ClientError {
        match failure {
            Failure::RejectedAtQuota => ClientError::RejectedAtQuota,
            Failure::WouldBump => ClientError::WouldBump,
            Failure::NotOwner => ClientError::NotOwner,
            Failure::ClockSkew { skew } => ClientError::ClockSkew { skew },
            Failure::ServerError => ClientError::ServerError,
            Failure::Timeout { attempts } => self.timeout(attempts),
            Failure::Network { leg, fault } => {
                let source = match (fault, errors[leg.index()].take()) {
                    (LegFault::Io, Some(e)) => e,
                    (LegFault::Io, None) => std::io::ErrorKind::UnexpectedEof.into(),
                    (LegFault::Unframeable, _) => std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the reply stream is not sealed to our reply key",
                    ),
                };
                ClientError::Network {
                    server: self
                        .address(leg.family)
                        .map_or_else(|| self.label.to_string(), |a| a.to_string()),
                    source,
                }
            }
            Failure::BadReply => ClientError::BadReply,
            Failure::InvalidInput(e) => e.into(),
        }
    }

    fn timeout(&self, attempts: u32) -> ClientError {
        ClientError::Timeout {
            server: self.label.to_string(),
            attempts,
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
}

/// One leg's socket: sends the request, then reports what arrives until
/// it fails or the exchange drops it.
struct LegTask {
    leg: Leg,
    generation: u64,
    server: SocketAddr,
    local: SocketAddr,
    /// Bind TCP to `local` too (UDP always binds).
    bind: bool,
    request: Vec<u8>,
    reports: mpsc::Sender<LegReport>,
}

impl LegTask {
    async fn run(self) {
        let result = match self.leg.transport {
            Transport::Udp => self.udp().await,
            Transport::Tcp => self.tcp().await,
        };
        if let Err(e) = result {
            self.report(LegInput::Failed(e)).await;
        }
    }

    async fn report(&self, what: LegInput) -> bool {
        let report = LegReport {
            leg: self.leg,
            generation: self.generation,
            what,
        };
        self.reports.send(report).await.is_ok()
    }

    async fn udp(&self) -> std::io::Result<()> {
        let socket = UdpSocket::bind(self.local).await?;
        // Connected: datagrams from anyone but the server are not even read.
        socket.connect(self.server).await?;
        socket.send(&self.request).await?;
        let mut buf = vec![0u8; 2048];
        loop {
            let n = socket.recv(&mut buf).await?;
            if !self.report(LegInput::Bytes(buf[..n].to_vec())).await {
                return Ok(());
            }
        }
    }

    async fn tcp(&self) -> std::io::Result<()> {
        let socket = if self.server.is_ipv6() {
            TcpSocket::new_v6()?
        } else {
            TcpSocket::new_v4()?
        };
        if self.bind {
            socket.bind(self.local)?;
        }
        let mut stream = socket.connect(self.server).await?;
        stream.set_nodelay(true)?;
        // One write: a reference server reads one chunk as one message.
        stream.write_all(&self.request).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if !self.report(LegInput::Bytes(buf[..n].to_vec())).await {
                return Ok(());
            }
        }
    }
}

/// A fresh request id. Never 0: the reference replaces 0 and then fails
/// the signature (bug 27).
pub fn random_pkid() -> u32 {
    UnwrapErr(getrandom::SysRng).next_u32().max(1)
}
