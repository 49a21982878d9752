//! A load generator for any namebump server (ours or the reference).
//!
//! `clients` workers run until the deadline, each with its own key, its own
//! source address when the server is on 127.0.0.0/8 (so per-address quotas
//! are not what is measured), and one persistent socket: a connected UDP
//! socket or one TCP connection carrying request after request. Each worker
//! first claims its names, then issues GETs and PUTs in the requested ratio,
//! one at a time, timing each from the send to the arrival of its reply
//! (which is then decrypted and checked before it counts as a success: the
//! generator's own decryption, queued behind other workers' on a shared
//! machine, is not the server's latency).
//!
//! To leave the CPU to the server, a worker seals all its requests under one
//! ephemeral key ([`ecies::Sealing`]), with a fresh IV each: every request
//! is still distinct (pkid, time, signature) and costs the server its full
//! decryption, but the generator skips a scalar multiplication per request.
//!
//! With `claims` set, every request is a PUT of a name never claimed before
//! (issue 12, "Speed"): the quota path, which refreshes never take. A
//! server allows [`V4_NAME_LIMIT`] names per IPv4 address, so each worker
//! walks its own run of 127.0.0.0/8 addresses, moving to the next (a new
//! socket bound to it) after `claims_per_source` attempts. Claims are sent
//! DONT_BUMP: a refusal means the walk went wrong, and counts as an error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::tcp_framing::{MAX_SEALED_REQUEST, SealedStream};
use keyway_core::namebump::{DO_BUMP, DONT_BUMP, Op, Packet, V4_NAME_LIMIT};
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::{Keypair, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::clock::{Clock, SystemClock};

/// Bytes of every value the generator writes.
const VALUE_LEN: usize = 100;

/// Which transport the workers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTransport {
    Udp,
    Tcp,
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub server: SocketAddr,
    pub server_pk: PublicKey,
    pub clients: usize,
    pub duration: Duration,
    /// Relative weights of GET and PUT.
    pub mix: (u32, u32),
    pub transport: BenchTransport,
    /// How long a request may wait for its reply before it counts as a timeout.
    pub timeout: Duration,
    /// Names each worker owns and writes (at most 5 keeps IPv6 quotas happy).
    pub names_per_client: usize,
    /// Total requests per second to aim for, spread evenly over the workers
    /// on a fixed schedule; `None` sends each request as soon as the
    /// previous reply arrives (maximum throughput).
    pub rate: Option<f64>,
    /// Every request claims a fresh name (the mix is ignored).
    pub claims: bool,
    /// Claims sent from one source address before the next one is used;
    /// at most the server's names per IPv4 address.
    pub claims_per_source: usize,
}

impl BenchConfig {
    /// A configuration with the defaults of `keyway namebump bench`.
    pub fn new(server: SocketAddr, server_pk: PublicKey) -> Self {
        Self {
            server,
            server_pk,
            clients: 16,
            duration: Duration::from_secs(10),
            mix: (1, 1),
            transport: BenchTransport::Udp,
            timeout: Duration::from_secs(2),
            names_per_client: 4,
            rate: None,
            claims: false,
            claims_per_source: V4_NAME_LIMIT as usize,
        }
    }
}

/// Latency figures of one operation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpStats {
    pub count: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BenchReport {
    pub elapsed: Duration,
    pub get: OpStats,
    /// Refreshes: PUTs of names the worker already holds.
    pub put: OpStats,
    /// PUTs of new names.
    pub claim: OpStats,
    /// Source addresses the claims came from.
    pub sources: u64,
    /// Requests that got an error reply or a PUT rejection.
    pub errors: u64,
    pub timeouts: u64,
}

impl BenchReport {
    /// Successful operations per second over the run.
    pub fn ops_per_sec(&self) -> f64 {
        (self.get.count + self.put.count + self.claim.count) as f64
            / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("worker {0} could not claim its names: {1}")]
    Setup(usize, String),
    #[error("claims need a server on 127.0.0.0/8 (many source addresses), not {0}")]
    ClaimsNeedLoopback(SocketAddr),
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, Box<SealedStream>),
}

/// A worker's walk over source addresses, in claims mode.
struct Claims {
    /// Index of the current source address (see [`loopback`]).
    source: u32,
    /// Added to `source` to reach the next one: the number of workers, so
    /// workers interleave and never share an address.
    stride: u32,
    /// Claims sent from the current source.
    sent: usize,
    per_source: usize,
    /// Unique to this run and worker; a counter completes each name.
    prefix: String,
    next: u64,
    sources: u64,
}

/// The `n`th address of 127.0.0.0/8 the claims walk, none in 127.0.0.0/24
/// (where 127.0.0.1 lives, and where the other workers' sources start) and
/// none ending in .0 or .255.
fn loopback(n: u32) -> Ipv4Addr {
    const PER_24: u32 = 254;
    let n = n % ((65_536 - 256) * PER_24);
    let block = 256 + n / PER_24;
    Ipv4Addr::from(0x7f00_0000 | (block << 8) | (1 + n % PER_24))
}

struct Worker {
    conn: Conn,
    server: SocketAddr,
    transport: BenchTransport,
    claims: Option<Claims>,
    key: Keypair,
    reply: Keypair,
    names: Vec<Vec<u8>>,
    sealing: ecies::Sealing,
    rng: UnwrapErr<getrandom::SysRng>,
    timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Put,
    Claim,
}

enum Sample {
    Ok(Kind, Duration),
    Error,
    Timeout,
}

impl Worker {
    async fn connect(config: &BenchConfig, index: usize, run: u32) -> Result<Self, BenchError> {
        let claims = config.claims.then(|| Claims {
            source: run.wrapping_add(index as u32),
            stride: config.clients.max(1) as u32,
            sent: 0,
            per_source: config.claims_per_source.max(1),
            prefix: format!("claim-{run:08x}-{index}-"),
            next: 0,
            sources: 1,
        });
        let source = match (config.server.ip(), &claims) {
            (IpAddr::V4(v4), Some(c)) if v4.is_loopback() => IpAddr::V4(loopback(c.source)),
            (_, Some(_)) => return Err(BenchError::ClaimsNeedLoopback(config.server)),
            // 127.0.0.0/8 is all ours: one source address per worker.
            (IpAddr::V4(v4), None) if v4.is_loopback() => {
                IpAddr::V4(Ipv4Addr::from(0x7f00_0002 + (index % 1_000_000) as u32))
            }
            (IpAddr::V4(_), None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (IpAddr::V6(_), None) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        let conn = open(config.server, config.transport, source).await?;
        let mut rng = UnwrapErr(getrandom::SysRng);
        let key = Keypair::generate(&mut rng);
        let reply = Keypair::generate(&mut rng);
        let names = (0..config.names_per_client)
            .map(|k| format!("bench-{:08x}-{index}-{k}", rng.next_u32()).into_bytes())
            .collect();
        let sealing = ecies::Sealing::new(&config.server_pk, &Keypair::generate(&mut rng));
        Ok(Self {
            conn,
            server: config.server,
            transport: config.transport,
            claims,
            key,
            reply,
            names,
            sealing,
            rng,
            timeout: config.timeout,
        })
    }

    /// A PUT of a name no one has claimed, from a source address with room
    /// for it. Every attempt counts against its source, answered or not.
    async fn claim(&mut self) -> Sample {
        let Some(c) = self.claims.as_mut() else {
            return Sample::Error;
        };
        if c.sent >= c.per_source {
            c.source = c.source.wrapping_add(c.stride);
            c.sent = 0;
            c.sources += 1;
            let source = IpAddr::V4(loopback(c.source));
            match open(self.server, self.transport, source).await {
                Ok(conn) => self.conn = conn,
                Err(_) => return Sample::Error,
            }
        }
        c.sent += 1;
        let name = format!("{}{}", c.prefix, c.next).into_bytes();
        c.next += 1;
        match self.request(Op::Put, &name, DONT_BUMP).await {
            Sample::Ok(_, t) => Sample::Ok(Kind::Claim, t),
            other => other,
        }
    }

    /// One request, timed from the first byte sent to its matching reply.
    async fn request(&mut self, op: Op, name: &[u8], behavior: u8) -> Sample {
        let pkid = self.rng.next_u32().max(1);
        let now = SystemClock.now();
        let mut value = [0u8; VALUE_LEN];
        let (value, signed) = match op {
            Op::Put => {
                self.rng.fill_bytes(&mut value);
                (&value[..], true)
            }
            // UDP GETs are padded by the value size, so the reply is never
            // larger than the request (see server/udp.rs). The generator
            // knows its values; a general client pads to the maximum.
            _ if matches!(self.conn, Conn::Udp(_)) => (&value[..], false),
            _ => (&value[..0], false),
        };
        let mut p = Packet::new(op, pkid, now, name, value);
        p.reply_pk = Some(*self.reply.public().as_bytes());
        p.behavior = behavior;
        if signed {
            if p.sign(&self.key).is_err() {
                return Sample::Error;
            }
        } else {
            p.vkc = p.reply_pk;
        }
        let mut plain = [0u8; MAX_PACKET_LEN];
        let Ok(n) = p.encode(&mut plain) else {
            return Sample::Error;
        };
        let mut sealed = [0u8; MAX_SEALED_REQUEST];
        let mut iv = [0u8; ecies::BLOCK_LEN];
        self.rng.fill_bytes(&mut iv);
        let Ok(m) = self.sealing.seal(&plain[..n], &iv, &mut sealed) else {
            return Sample::Error;
        };
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.exchange(&sealed[..m], pkid)).await {
            Ok(Some((reply_op, updated, arrived))) => {
                let rejected = reply_op == Op::Error || (op == Op::Put && updated == 0.0);
                if rejected {
                    Sample::Error
                } else if op == Op::Get {
                    Sample::Ok(Kind::Get, arrived - started)
                } else {
                    Sample::Ok(Kind::Put, arrived - started)
                }
            }
            Ok(None) => Sample::Error,
            Err(_) => Sample::Timeout,
        }
    }

    /// Sends and waits for the matching reply: its op, `updated`, and when
    /// its last byte arrived.
    async fn exchange(&mut self, sealed: &[u8], pkid: u32) -> Option<(Op, f64, Instant)> {
        let mut out = [0u8; MAX_SEALED_REQUEST];
        match &mut self.conn {
            Conn::Udp(s) => {
                s.send(sealed).await.ok()?;
                let mut buf = [0u8; 2048];
                loop {
                    let n = s.recv(&mut buf).await.ok()?;
                    let arrived = Instant::now();
                    // Stray datagrams (the reference's extra copies) do not match.
                    if let Some((op, updated)) = matching(&self.reply, &buf[..n], pkid, &mut out) {
                        return Some((op, updated, arrived));
                    }
                }
            }
            Conn::Tcp(s, framer) => {
                s.write_all(sealed).await.ok()?;
                let mut arrived = Instant::now();
                loop {
                    while let Ok(Some(p)) = framer.next_message(&self.reply, &mut out) {
                        if let Some((op, updated)) = decode_matching(p, pkid) {
                            return Some((op, updated, arrived));
                        }
                    }
                    let n = s.read(framer.spare()).await.ok()?;
                    arrived = Instant::now();
                    if n == 0 {
                        return None;
                    }
                    framer.filled(n);
                }
            }
        }
    }
}

/// A socket from `source` to the server: a connected UDP socket or a TCP
/// connection.
async fn open(
    server: SocketAddr,
    transport: BenchTransport,
    source: IpAddr,
) -> Result<Conn, BenchError> {
    let err = |e| BenchError::Connect(server, e);
    Ok(match transport {
        BenchTransport::Udp => {
            let s = UdpSocket::bind((source, 0)).await.map_err(err)?;
            s.connect(server).await.map_err(err)?;
            Conn::Udp(s)
        }
        BenchTransport::Tcp => {
            let s = if source.is_ipv6() {
                TcpSocket::new_v6()
            } else {
                TcpSocket::new_v4()
            }
            .map_err(err)?;
            s.bind((source, 0).into()).map_err(err)?;
            let stream = s.connect(server).await.map_err(err)?;
            stream.set_nodelay(true).map_err(err)?;
            Conn::Tcp(stream, Box::new(SealedStream::new()))
        }
    })
}

fn matching(reply: &Keypair, sealed: &[u8], pkid: u32, out: &mut [u8]) -> Option<(Op, f64)> {
    decode_matching(ecies::open(reply, sealed, out).ok()?, pkid)
}

fn decode_matching(plaintext: &[u8], pkid: u32) -> Option<(Op, f64)> {
    let p = Packet::decode(plaintext).ok()?;
    (p.pkid == pkid || p.op == Op::Error).then_some((p.op, p.updated))
}

fn stats(mut samples: Vec<Duration>) -> OpStats {
    samples.sort_unstable();
    let at = |q: f64| {
        samples.get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
    };
    OpStats {
        count: samples.len() as u64,
        p50: at(0.50).copied().unwrap_or_default(),
        p99: at(0.99).copied().unwrap_or_default(),
        max: samples.last().copied().unwrap_or_default(),
    }
}

/// Runs the benchmark and reports what it measured.
pub async fn run(config: BenchConfig) -> Result<BenchReport, BenchError> {
    let mut workers = Vec::with_capacity(config.clients);
    // Where this run's claims start: another run's addresses and names
    // (on the same server) are elsewhere, but for a rare overlap.
    let run_id = UnwrapErr(getrandom::SysRng).next_u32();
    for i in 0..config.clients.max(1) {
        workers.push(Worker::connect(&config, i, run_id).await?);
    }
    // Claim every name first, so GETs find values and PUTs are refreshes.
    let mut claims = tokio::task::JoinSet::new();
    for (i, mut w) in workers.into_iter().enumerate() {
        claims.spawn(async move {
            let names = if w.claims.is_some() {
                Vec::new()
            } else {
                w.names.clone()
            };
            for name in &names {
                // Servers may drop a write under contention (the reference
                // deadlocks on concurrent first writes: bug 12); try again.
                let mut claimed = false;
                for _ in 0..5 {
                    if matches!(w.request(Op::Put, name, DO_BUMP).await, Sample::Ok(..)) {
                        claimed = true;
                        break;
                    }
                }
                if !claimed {
                    return Err(BenchError::Setup(
                        i,
                        "PUT rejected or timed out 5 times".into(),
                    ));
                }
            }
            Ok(w)
        });
    }
    let mut workers = Vec::new();
    while let Some(w) = claims.join_next().await {
        workers.push(w.map_err(|e| BenchError::Setup(0, e.to_string()))??);
    }

    let (gets, puts) = config.mix;
    let cycle = (gets + puts).max(1);
    let started = Instant::now();
    let deadline = started + config.duration;
    let clients = config.clients.max(1);
    // Each worker's gap between sends, and its offset so sends interleave.
    let interval = config
        .rate
        .map(|r| Duration::from_secs_f64(clients as f64 / r.max(1e-3)));
    let mut runs = tokio::task::JoinSet::new();
    for (i, mut w) in workers.into_iter().enumerate() {
        runs.spawn(async move {
            let (mut get, mut put, mut claim) = (Vec::new(), Vec::new(), Vec::new());
            let (mut errors, mut timeouts) = (0, 0);
            let mut n = i as u32;
            let mut next = interval.map(|gap| started + gap.mul_f64(i as f64 / clients as f64));
            while Instant::now() < deadline {
                if let (Some(at), Some(gap)) = (next, interval) {
                    tokio::time::sleep_until(at.into()).await;
                    next = Some(at + gap);
                }
                let sample = if w.claims.is_some() {
                    w.claim().await
                } else {
                    let op = if n % cycle < gets { Op::Get } else { Op::Put };
                    let name = w.names[n as usize % w.names.len()].clone();
                    n = n.wrapping_add(1);
                    w.request(op, &name, DO_BUMP).await
                };
                match sample {
                    Sample::Ok(Kind::Get, t) => get.push(t),
                    Sample::Ok(Kind::Put, t) => put.push(t),
                    Sample::Ok(Kind::Claim, t) => claim.push(t),
                    Sample::Error => errors += 1,
                    Sample::Timeout => timeouts += 1,
                }
            }
            let sources = w.claims.as_ref().map_or(0, |c| c.sources);
            (get, put, claim, sources, errors, timeouts)
        });
    }
    let (mut get, mut put, mut claim) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sources, mut errors, mut timeouts) = (0, 0, 0);
    while let Some(Ok((g, p, c, s, e, t))) = runs.join_next().await {
        get.extend(g);
        put.extend(p);
        claim.extend(c);
        sources += s;
        errors += e;
        timeouts += t;
    }
    Ok(BenchReport {
        elapsed: started.elapsed(),
        get: stats(get),
        put: stats(put),
        claim: stats(claim),
        sources,
        errors,
        timeouts,
    })
}
