//! The namebump server: TCP and UDP on every configured address.

mod connections;
mod handler;
mod limiter;
mod metrics;
mod replay;
#[cfg(feature = "fuzzing")]
mod responder;
mod source_key;
mod tcp;
mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyway_core::rate::RateLimit;
use keyway_core::{Keypair, PublicKey};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use metrics::Metrics;
#[cfg(feature = "fuzzing")]
pub use responder::Responder;

use crate::clock::Clock;
use crate::store::{Limits, NameStore};
use connections::ConnectionTable;
use handler::Handler;
use limiter::SourceLimiter;
use replay::ReplayCache;

/// How a server runs. [`Default`] is what `keyway namebump serve` uses.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// TCP and UDP are both bound on each address (port 0: one free port,
    /// the same for both).
    pub listen: Vec<SocketAddr>,
    /// Requests per second per source (an IPv4 address or an IPv6 /64),
    /// before any cryptography; `None` disables every rate limit
    /// (benchmarks).
    pub rate_limit: Option<RateLimit>,
    /// Requests per second of all the /64s of one IPv6 /48 together, on top
    /// of `rate_limit`; `None`: no aggregate.
    pub rate_limit_per_48: Option<RateLimit>,
    /// Source addresses tracked by the rate limiter at most.
    pub max_sources: usize,
    /// UDP requests being worked on at once; more are dropped.
    pub max_in_flight: usize,
    /// Open TCP connections at once. When all are taken, a new connection
    /// replaces one of a source (address or IPv6 /64) holding more than the
    /// new one's: a trickler's (no complete request 2 s after its accept)
    /// or an answered one, heaviest source and oldest first; a connection
    /// under 2 s old not yet answered is never replaced. Otherwise the new
    /// connection is closed at accept (`server/connections.rs`).
    pub max_connections: usize,
    /// Open TCP connections per source address (IPv6: per /64; an IPv6 /48
    /// may hold 4 times this); more are closed at accept.
    pub max_connections_per_source: usize,
    /// Each request on a TCP connection must arrive whole within this time
    /// of the accept or of the previous reply, however the bytes trickle
    /// in; otherwise the connection is closed.
    pub tcp_request_timeout: Duration,
    /// A reply not taken by the peer within this time closes the connection.
    pub tcp_write_timeout: Duration,
    /// How often expired names, tombstones and unused addresses are
    /// purged; at most half of `limits.tombstone_lifetime`, so a tombstone
    /// is collected within 1.5 lifetimes of its `updated`.
    pub purge_interval: Duration,
    pub limits: Limits,
    /// Signed requests remembered for replay protection.
    pub replay_capacity: usize,
    /// Serve Prometheus metrics at `http://ADDR/metrics`.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, keyway_core::namebump::NB_PORT)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, keyway_core::namebump::NB_PORT)),
            ],
            rate_limit: Some(RateLimit {
                rate: 20.0,
                burst: 40.0,
            }),
            // Ten busy /64s' worth: a site's hosts are not starved by one
            // another, and a /48 cannot spend 65,536 budgets.
            rate_limit_per_48: Some(RateLimit {
                rate: 200.0,
                burst: 400.0,
            }),
            max_sources: 100_000,
            max_in_flight: 1024,
            max_connections: 1024,
            max_connections_per_source: 16,
            tcp_request_timeout: Duration::from_secs(10),
            tcp_write_timeout: Duration::from_secs(5),
            purge_interval: Duration::from_secs(60),
            limits: Limits::default(),
            replay_capacity: 200_000,
            metrics_listen: None,
        }
    }
}

/// State every listener shares.
pub(crate) struct Shared<S> {
    pub(crate) handler: Arc<Handler<S>>,
    pub(crate) config: ServerConfig,
    limiter: Option<SourceLimiter>,
    started: Instant,
}

impl<S> Shared<S> {
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        self.limiter
            .as_ref()
            .is_none_or(|l| l.allow(ip, self.started.elapsed().as_secs_f64()))
    }
}

/// A running server. Dropping it does not stop it: call [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    public_key: PublicKey,
    tcp: Vec<SocketAddr>,
    udp: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    metrics: Metrics,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

fn socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        // Keep [::]:P and 0.0.0.0:P separate, as configured.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn bind_pair(addr: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    let tcp = socket(addr, Type::STREAM, Protocol::TCP)?;
    tcp.listen(1024)?;
    let tcp = TcpListener::from_std(tcp.into())?;
    let port = tcp.local_addr()?.port();
    let udp = socket(SocketAddr::new(addr.ip(), port), Type::DGRAM, Protocol::UDP)?;
    Ok((tcp, UdpSocket::from_std(udp.into())?))
}

impl Server {
    /// Binds every address and starts serving.
    pub async fn start<S: NameStore>(
        config: ServerConfig,
        key: Keypair,
        store: S,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let metrics = Metrics::with_store(store.db_metrics().as_ref());
        let public_key = *key.public();
        let mut bound = Vec::new();
        for addr in &config.listen {
            let pair = bind_pair(*addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            bound.push(pair);
        }
        let shared = Arc::new(Shared {
            handler: Arc::new(Handler {
                key,
                store,
                clock,
                limits: config.limits,
                replay: ReplayCache::new(config.replay_capacity),
                metrics: metrics.clone(),
            }),
            limiter: config.rate_limit.map(|l| {
                SourceLimiter::new(l, config.max_sources)
                    .with_subnet_limit(config.rate_limit_per_48)
            }),
            config: config.clone(),
            started: Instant::now(),
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let connections = Arc::new(ConnectionTable::new(
            config.max_connections,
            config.max_connections_per_source,
        ));
        let (mut tcp_addrs, mut udp_addrs) = (Vec::new(), Vec::new());
        for (tcp, udp) in bound {
            tcp_addrs.push(tcp.local_addr()?);
            udp_addrs.push(udp.local_addr()?);
            tracker.spawn(tcp::serve(
                tcp,
                shared.clone(),
                connections.clone(),
                tracker.clone(),
                shutdown.clone(),
            ));
            let udp = Arc::new(udp);
            for _ in 0..receive_loops() {
                tracker.spawn(udp::serve(
                    udp.clone(),
                    shared.clone(),
                    in_flight.clone(),
                    tracker.clone(),
                    shutdown.clone(),
                ));
            }
        }
        tracker.spawn(purge(shared.clone(), shutdown.clone()));
        let metrics_addr = match config.metrics_listen {
            Some(addr) => Some(serve_metrics(addr, &metrics, &tracker, &shutdown).await?),
            None => None,
        };
        tracing::info!(tcp = ?tcp_addrs, udp = ?udp_addrs, server_pk = %public_key, "namebump server listening");
        Ok(Self {
            public_key,
            tcp: tcp_addrs,
            udp: udp_addrs,
            metrics_addr,
            metrics,
            shutdown,
            tracker,
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting, lets requests in progress finish (each is bounded
    /// by its store call), and returns once everything has stopped or
    /// `grace` has passed.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over with requests still running");
        }
    }
}

/// As many UDP receive loops as the runtime has workers by default (one per
/// core), so every core can work on requests without a task per datagram.
fn receive_loops() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

async fn purge<S: NameStore>(shared: Arc<Shared<S>>, shutdown: CancellationToken) {
    let half_lifetime = Duration::from_secs(
        u64::try_from(shared.config.limits.tombstone_lifetime() / 2).unwrap_or(1),
    );
    let period = shared
        .config
        .purge_interval
        .min(half_lifetime)
        .max(Duration::from_secs(1));
    let mut every = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let now = shared.handler.clock.now();
        match shared.handler.store.purge_expired(now).await {
            Ok(p) if p.names + p.addresses > 0 => {
                tracing::info!(names = p.names, addresses = p.addresses, "purged expired");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed"),
        }
    }
}

async fn serve_metrics(
    addr: SocketAddr,
    metrics: &Metrics,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> std::io::Result<SocketAddr> {
    use axum::http::header::CONTENT_TYPE;
    let metrics = metrics.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = metrics.encode();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    body,
                )
            }
        }),
    );
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(local)
}
