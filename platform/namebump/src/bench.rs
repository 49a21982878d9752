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
//! With `precompute` set (issue 12: "a load generator that precomputes
//! sealed requests, so the client costs almost nothing"), a worker also
//! signs and seals its requests before the clock starts, and over UDP
//! keeps each reply as it arrives and decrypts and checks it after the
//! clock stops: during the run it only sends and receives. A reply that
//! then fails its check counts as an error (checked at once, a datagram
//! that does not match is passed over and the reply waited for); a run
//! that outlasts what was prepared signs the rest as it goes
//! (`BenchReport::signed_during_run`). Over UDP this takes the first
//! datagram after a request as its reply: meant for a server that sends
//! one reply per request (Keyway's; the reference sends five, bug 8, and
//! its extra copies would count as errors).
//!
//! With `claims` set, every request is a PUT of a name never claimed before
//! (issue 12, "Speed"): the quota path, which refreshes never take. A
//! server allows [`V4_NAME_LIMIT`] names per IPv4 address, so each worker
//! walks its own run of 127.0.0.0/8 addresses, moving to the next (a new
//! socket bound to it) after `claims_per_source` attempts. Claims are sent
//! DONT_BUMP: a refusal means the walk went wrong, and counts as an error.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use keyway_core::ecies;
use keyway_core::namebump::freshness::MAX_REQUEST_TTL;
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
    /// Sign and seal the requests before the run and check UDP replies
    /// after it (see the module).
    pub precompute: bool,
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
            precompute: false,
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
    /// With `precompute`: requests signed during the run because the
    /// prepared ones ran out or grew too old.
    pub signed_during_run: u64,
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
    /// Requests of the run signed and sealed ahead, in order (`precompute`).
    prepared: VecDeque<Prepared>,
    /// Replies to check after the run (`precompute`, UDP).
    unchecked: Vec<Unchecked>,
    /// The mix position of the next request: its op and its name.
    n: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Get,
    Put,
    Claim,
}

enum Sample {
    Ok(Kind, Duration),
    /// Kept in `Worker::unchecked`, decided after the run.
    Unchecked,
    Error,
    Timeout,
}

/// A request signed (if it is a write) and sealed, ready to send.
struct Prepared {
    kind: Kind,
    op: Op,
    pkid: u32,
    sealed: Vec<u8>,
    /// Its `updated`: a request is sent within its ttl of it, or not at all.
    updated: f64,
}

/// Replies a worker keeps to check after the run, at most (~200 bytes each).
const MAX_UNCHECKED: usize = 16_384;

/// A reply received during a `precompute` run, still encrypted.
struct Unchecked {
    kind: Kind,
    op: Op,
    pkid: u32,
    took: Duration,
    reply: Vec<u8>,
}

/// What came back for a request.
enum Answer {
    /// Decrypted and matched: its op and `updated`.
    Checked(Op, f64),
    /// The first datagram after the request, as it came (`precompute`).
    Raw(Vec<u8>),
}

/// The ttl of prepared requests: the longest a server accepts, so they
/// stay fresh through the run.
const PREPARED_TTL: f64 = MAX_REQUEST_TTL;

/// How long before a prepared request's ttl runs out it is no longer
/// sent: room for the server's clock to run ahead of ours (a server
/// allows requests 5 s ahead of its own) and for the request's flight, so
/// it never arrives stale.
const PREPARED_MARGIN: f64 = 10.0;

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
            prepared: VecDeque::new(),
            unchecked: Vec::new(),
            n: index as u32,
        })
    }

    /// The run's next request: a claim of the next new name, or the mix's
    /// next GET or refresh.
    fn prepare_next(&mut self, cycle: u32, gets: u32, ttl: f64) -> Option<Prepared> {
        if let Some(c) = self.claims.as_mut() {
            let name = format!("{}{}", c.prefix, c.next).into_bytes();
            c.next += 1;
            return self.prepare(Kind::Claim, Op::Put, &name, DONT_BUMP, ttl);
        }
        let (op, kind) = if self.n % cycle < gets {
            (Op::Get, Kind::Get)
        } else {
            (Op::Put, Kind::Put)
        };
        let name = self.names[self.n as usize % self.names.len()].clone();
        self.n = self.n.wrapping_add(1);
        self.prepare(kind, op, &name, DO_BUMP, ttl)
    }

    /// Signs `count` of the run's requests ahead.
    fn prepare_ahead(&mut self, count: usize, cycle: u32, gets: u32) {
        for _ in 0..count {
            match self.prepare_next(cycle, gets, PREPARED_TTL) {
                Some(p) => self.prepared.push_back(p),
                None => break,
            }
        }
    }

    /// The next prepared request still fresh enough to send, if any; a
    /// stale one means every later one is too (they were made in order).
    fn take_prepared(&mut self) -> Option<Prepared> {
        let p = self.prepared.pop_front()?;
        if SystemClock.now() - p.updated > PREPARED_TTL - PREPARED_MARGIN {
            self.prepared.clear();
            return None;
        }
        Some(p)
    }

    /// Sends a claim from a source address with room for it. Every attempt
    /// counts against its source, answered or not.
    async fn send_claim(&mut self, p: Prepared, defer: bool) -> Sample {
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
        self.send(p, defer).await
    }

    /// One request made and sent now, its reply checked at once.
    async fn request(&mut self, op: Op, name: &[u8], behavior: u8) -> Sample {
        let kind = if op == Op::Get { Kind::Get } else { Kind::Put };
        let ttl = keyway_core::namebump::DEFAULT_REQUEST_TTL;
        match self.prepare(kind, op, name, behavior, ttl) {
            Some(p) => self.send(p, false).await,
            None => Sample::Error,
        }
    }

    fn prepare(
        &mut self,
        kind: Kind,
        op: Op,
        name: &[u8],
        behavior: u8,
        ttl: f64,
    ) -> Option<Prepared> {
        let pkid = self.rng.next_u32().max(1);
        let updated = SystemClock.now();
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
        let mut p = Packet::new(op, pkid, updated, name, value);
        p.reply_pk = Some(*self.reply.public().as_bytes());
        p.behavior = behavior;
        p.ttl = ttl;
        if signed {
            p.sign(&self.key).ok()?;
        } else {
            p.vkc = p.reply_pk;
        }
        let mut plain = [0u8; MAX_PACKET_LEN];
        let n = p.encode(&mut plain).ok()?;
        let mut sealed = [0u8; MAX_SEALED_REQUEST];
        let mut iv = [0u8; ecies::BLOCK_LEN];
        self.rng.fill_bytes(&mut iv);
        let m = self.sealing.seal(&plain[..n], &iv, &mut sealed).ok()?;
        Some(Prepared {
            kind,
            op,
            pkid,
            sealed: sealed[..m].to_vec(),
            updated,
        })
    }

    /// Sends `p` and waits for its reply; `defer` (UDP): keeps the reply
    /// to check after the run.
    async fn send(&mut self, p: Prepared, defer: bool) -> Sample {
        let started = Instant::now();
        // Past the cap, replies are checked as they come: memory stays
        // bounded however long the run.
        let defer =
            defer && matches!(self.conn, Conn::Udp(_)) && self.unchecked.len() < MAX_UNCHECKED;
        match tokio::time::timeout(self.timeout, self.exchange(&p.sealed, p.pkid, defer)).await {
            Ok(Some((Answer::Checked(op, updated), arrived))) => {
                judge(p.kind, p.op, op, updated, arrived - started)
            }
            Ok(Some((Answer::Raw(reply), arrived))) => {
                self.unchecked.push(Unchecked {
                    kind: p.kind,
                    op: p.op,
                    pkid: p.pkid,
                    took: arrived - started,
                    reply,
                });
                Sample::Unchecked
            }
            Ok(None) => Sample::Error,
            Err(_) => Sample::Timeout,
        }
    }

    /// Decrypts and judges the replies kept during the run.
    fn check_unchecked(&mut self) -> Vec<Sample> {
        let mut out = [0u8; MAX_SEALED_REQUEST];
        let reply = &self.reply;
        self.unchecked
            .drain(..)
            .map(|u| match matching(reply, &u.reply, u.pkid, &mut out) {
                Some((op, updated)) => judge(u.kind, u.op, op, updated, u.took),
                // Not this request's reply (a late one of an earlier
                // request, or garbage): as inline, where it would not have
                // matched either, the request failed.
                None => Sample::Error,
            })
            .collect()
    }

    /// Sends and waits for the reply: checked and matched, or with
    /// `defer` the first datagram as it came; and when it arrived.
    async fn exchange(
        &mut self,
        sealed: &[u8],
        pkid: u32,
        defer: bool,
    ) -> Option<(Answer, Instant)> {
        let mut out = [0u8; MAX_SEALED_REQUEST];
        match &mut self.conn {
            Conn::Udp(s) => {
                s.send(sealed).await.ok()?;
                let mut buf = [0u8; 2048];
                loop {
                    let n = s.recv(&mut buf).await.ok()?;
                    let arrived = Instant::now();
                    if defer {
                        return Some((Answer::Raw(buf[..n].to_vec()), arrived));
                    }
                    // Stray datagrams (the reference's extra copies) do not match.
                    if let Some((op, updated)) = matching(&self.reply, &buf[..n], pkid, &mut out) {
                        return Some((Answer::Checked(op, updated), arrived));
                    }
                }
            }
            Conn::Tcp(s, framer) => {
                s.write_all(sealed).await.ok()?;
                let mut arrived = Instant::now();
                loop {
                    while let Ok(Some(p)) = framer.next_message(&self.reply, &mut out) {
                        if let Some((op, updated)) = decode_matching(p, pkid) {
                            return Some((Answer::Checked(op, updated), arrived));
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

/// A request's sample from its reply: an error reply, or a PUT the server
/// answered with `updated` 0 (not stored), is an error.
fn judge(kind: Kind, sent: Op, got: Op, updated: f64, took: Duration) -> Sample {
    if got == Op::Error || (sent == Op::Put && updated == 0.0) {
        Sample::Error
    } else {
        Sample::Ok(kind, took)
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
    let clients = config.clients.max(1);
    if config.precompute {
        let per_worker = prepared_per_worker(&config);
        let mut preparing = tokio::task::JoinSet::new();
        for mut w in workers {
            preparing.spawn(async move {
                w.prepare_ahead(per_worker, cycle, gets);
                w
            });
        }
        workers = Vec::new();
        while let Some(w) = preparing.join_next().await {
            workers.push(w.map_err(|e| BenchError::Setup(0, e.to_string()))?);
        }
    }
    let defer = config.precompute;
    let started = Instant::now();
    let deadline = started + config.duration;
    // Each worker's gap between sends, and its offset so sends interleave.
    let interval = config
        .rate
        .map(|r| Duration::from_secs_f64(clients as f64 / r.max(1e-3)));
    let mut runs = tokio::task::JoinSet::new();
    for (i, mut w) in workers.into_iter().enumerate() {
        runs.spawn(async move {
            let mut tally = Tally::default();
            let mut signed = 0;
            let mut next = interval.map(|gap| started + gap.mul_f64(i as f64 / clients as f64));
            while Instant::now() < deadline {
                if let (Some(at), Some(gap)) = (next, interval) {
                    tokio::time::sleep_until(at.into()).await;
                    next = Some(at + gap);
                }
                let p = match w.take_prepared() {
                    Some(p) => p,
                    None => {
                        signed += u64::from(defer);
                        let ttl = keyway_core::namebump::DEFAULT_REQUEST_TTL;
                        let Some(p) = w.prepare_next(cycle, gets, ttl) else {
                            tally.add(Sample::Error);
                            continue;
                        };
                        p
                    }
                };
                let sample = if p.kind == Kind::Claim {
                    w.send_claim(p, defer).await
                } else {
                    w.send(p, defer).await
                };
                tally.add(sample);
            }
            let sources = w.claims.as_ref().map_or(0, |c| c.sources);
            (w, tally, sources, signed, Instant::now())
        });
    }
    let mut all = Tally::default();
    let (mut sources, mut signed_during_run, mut last) = (0, 0, started);
    // Replies kept during the run are judged once every worker is done:
    // checked earlier, beside workers still waiting for their last reply,
    // they would delay those replies' reading (and their latency).
    let mut done = Vec::with_capacity(clients);
    while let Some(Ok((w, t, s, signed, finished))) = runs.join_next().await {
        done.push(w);
        last = last.max(finished);
        all.absorb(t);
        sources += s;
        signed_during_run += signed;
    }
    let elapsed = last - started;
    let mut checks = tokio::task::JoinSet::new();
    for mut w in done {
        checks.spawn(async move { w.check_unchecked() });
    }
    while let Some(Ok(samples)) = checks.join_next().await {
        for sample in samples {
            all.add(sample);
        }
    }
    Ok(BenchReport {
        // Until the last request's reply, not the checks after it.
        elapsed,
        get: stats(all.get),
        put: stats(all.put),
        claim: stats(all.claim),
        sources,
        errors: all.errors,
        timeouts: all.timeouts,
        signed_during_run,
    })
}

/// Requests each worker prepares with `precompute`: enough for the run at
/// its `rate`, or at [`PREPARED_RATE`] without one, and for at most
/// [`PREPARED_SECONDS`] (they must be sent within their ttl).
fn prepared_per_worker(config: &BenchConfig) -> usize {
    let seconds = config.duration.as_secs_f64().min(PREPARED_SECONDS);
    let rate = config.rate.unwrap_or(PREPARED_RATE);
    // 5 % over the schedule, so a paced run does not sign its last requests.
    (rate * seconds * 1.05 / config.clients.max(1) as f64).ceil() as usize
}

/// Requests per second prepared for a run without `rate`: well above what
/// one server reaches on the 2-core machine of BENCHMARKS.md (15,421
/// GETs/s, 10,430 refreshes/s, 8,498 claims/s); a faster server makes the
/// generator sign the rest of the run as it goes, which the report counts.
/// A prepared PUT is ~350 bytes: ~90 MB for a 10 s run, ~260 MB at most.
const PREPARED_RATE: f64 = 25_000.0;

/// The longest stretch of a run prepared ahead: the prepared requests'
/// ttl, less the margin, less time to prepare them.
const PREPARED_SECONDS: f64 = 30.0;

/// Samples of one worker, or of the run.
#[derive(Default)]
struct Tally {
    get: Vec<Duration>,
    put: Vec<Duration>,
    claim: Vec<Duration>,
    errors: u64,
    timeouts: u64,
}

impl Tally {
    fn add(&mut self, sample: Sample) {
        match sample {
            Sample::Ok(Kind::Get, t) => self.get.push(t),
            Sample::Ok(Kind::Put, t) => self.put.push(t),
            Sample::Ok(Kind::Claim, t) => self.claim.push(t),
            Sample::Unchecked => {}
            Sample::Error => self.errors += 1,
            Sample::Timeout => self.timeouts += 1,
        }
    }

    fn absorb(&mut self, other: Tally) {
        self.get.extend(other.get);
        self.put.extend(other.put);
        self.claim.extend(other.claim);
        self.errors += other.errors;
        self.timeouts += other.timeouts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker aimed at a port nothing answers on: `connect` of a UDP
    /// socket sends nothing.
    async fn worker(claims: bool) -> Worker {
        let mut rng = UnwrapErr(getrandom::SysRng);
        let server_pk = *Keypair::generate(&mut rng).public();
        let config = BenchConfig {
            clients: 2,
            claims,
            ..BenchConfig::new("127.0.0.1:9".parse().unwrap(), server_pk)
        };
        Worker::connect(&config, 0, 7).await.unwrap()
    }

    /// `plain` sealed to the worker's reply key, as a server answers.
    fn reply_to(w: &Worker, op: Op, pkid: u32, updated: f64) -> Vec<u8> {
        let p = Packet::new(op, pkid, updated, b"name", b"value");
        let mut plain = [0u8; MAX_PACKET_LEN];
        let n = p.encode(&mut plain).unwrap();
        let mut sealed = [0u8; ecies::sealed_len(MAX_PACKET_LEN)];
        let mut rng = UnwrapErr(getrandom::SysRng);
        let m = ecies::seal(w.reply.public(), &plain[..n], &mut rng, &mut sealed).unwrap();
        sealed[..m].to_vec()
    }

    fn unchecked(pkid: u32, reply: Vec<u8>) -> Unchecked {
        Unchecked {
            kind: Kind::Put,
            op: Op::Put,
            pkid,
            took: Duration::from_millis(3),
            reply,
        }
    }

    #[tokio::test]
    async fn replies_checked_after_the_run_count_only_when_they_match() {
        let mut w = worker(false).await;
        let good = reply_to(&w, Op::Put, 41, 1.0);
        let other_request = reply_to(&w, Op::Put, 42, 1.0);
        let not_stored = reply_to(&w, Op::Put, 43, 0.0);
        let error = reply_to(&w, Op::Error, 44, 1.0);
        let mut garbage = good.clone();
        garbage[40] ^= 1;
        w.unchecked = vec![
            unchecked(41, good),
            unchecked(41, other_request),
            unchecked(43, not_stored),
            unchecked(44, error),
            unchecked(41, garbage),
        ];
        let samples = w.check_unchecked();
        assert!(w.unchecked.is_empty());
        let ok: Vec<bool> = samples
            .iter()
            .map(|s| matches!(s, Sample::Ok(Kind::Put, t) if *t == Duration::from_millis(3)))
            .collect();
        assert_eq!(ok, [true, false, false, false, false]);
        assert!(samples[1..].iter().all(|s| matches!(s, Sample::Error)));
    }

    #[tokio::test]
    async fn prepared_claims_take_the_next_names_and_run_out() {
        let mut w = worker(true).await;
        w.prepare_ahead(3, 1, 0);
        assert_eq!(w.prepared.len(), 3);
        assert!(
            w.prepared
                .iter()
                .all(|p| p.kind == Kind::Claim && p.op == Op::Put)
        );
        // The next request made during the run claims the fourth name.
        assert_eq!(w.claims.as_ref().unwrap().next, 3);
        for _ in 0..3 {
            assert!(w.take_prepared().is_some());
        }
        assert!(w.take_prepared().is_none());
    }

    #[tokio::test]
    async fn a_prepared_request_near_the_end_of_its_ttl_is_not_sent() {
        let mut w = worker(false).await;
        w.prepare_ahead(4, 2, 1);
        assert_eq!(
            w.prepared.iter().map(|p| p.op).collect::<Vec<_>>(),
            [Op::Get, Op::Put, Op::Get, Op::Put]
        );
        w.prepared[0].updated -= PREPARED_TTL - PREPARED_MARGIN + 1.0;
        // Stale, and so is everything prepared after it.
        assert!(w.take_prepared().is_none());
        assert!(w.prepared.is_empty());
    }

    #[test]
    fn a_run_prepares_for_its_rate_and_at_most_its_ttl() {
        let server_pk = *Keypair::generate(&mut UnwrapErr(getrandom::SysRng)).public();
        let base = BenchConfig {
            clients: 10,
            duration: Duration::from_secs(10),
            ..BenchConfig::new("127.0.0.1:9".parse().unwrap(), server_pk)
        };
        let paced = BenchConfig {
            rate: Some(1_000.0),
            ..base.clone()
        };
        assert_eq!(prepared_per_worker(&paced), 1_050);
        assert_eq!(prepared_per_worker(&base), 26_250);
        let long = BenchConfig {
            duration: Duration::from_secs(600),
            ..paced
        };
        assert_eq!(prepared_per_worker(&long), 3_150);
    }
}
