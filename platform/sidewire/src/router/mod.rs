//! The Router: a node's presence on a pool of brokers (spec §5–§6), a
//! tokio shell around the core's sans-I/O
//! [`Node`](keyway_core::sidewire::node::Node), which decides everything
//! (see its documentation and `core/DESIGN.md`):
//!
//! - the node subscribes to its own topic (its key's hex) on the top of
//!   its own ranking in each address family, the set plus spares (by
//!   default down to the 10th, where reference senders may publish),
//!   skipping only brokers that fail (spec §10 item 10);
//! - [`SmartPipe::send`] signs one MSG and publishes it on the
//!   destination's hints and the top of its ranking, wider with each
//!   resend, until an ACK arrives or the timeout passes;
//! - inbound packets are screened cheapest first, checked in the node's
//!   order, delivered and acknowledged.
//!
//! Files: `driver` (the one task that owns the node and moves bytes),
//! `brokers` (broker ids for the node), `pipe` (the sending API),
//! `config` (settings).

mod brokers;
mod config;
mod driver;
mod pipe;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyway_core::time::{Clock as WallClock, SystemClock};
use keyway_core::{Keypair, PublicKey};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use self::config::RouterConfig;
use self::driver::{CONNECT_MARGIN, Driver, SEND_QUEUE, SendRequest, Shared, Status};
pub use self::pipe::SmartPipe;
pub use crate::pool::{BrokerEntry, Pool};

/// A delivered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: PublicKey,
    pub data: Vec<u8>,
    /// The sender's queue (random per send): what the reference hands its
    /// handlers as `queue_id`.
    pub queue_id: [u8; 32],
}

/// Called once per delivered message, in delivery order, on the Router's
/// handlers' thread (`DESIGN.md`). It may block — ACKs and timers go on —
/// but later messages wait for it: hand long work to a task or channel.
pub type Handler = Arc<dyn Fn(&Message) + Send + Sync>;

/// Wall-clock time in Unix seconds. Packets are stamped with it and
/// judged fresh against it, so a node with a skewed clock neither sends
/// nor accepts messages: pass an NTP-corrected clock in production. A
/// function, as the reference's `get_time`; [`clock_fn`] makes one of the
/// workspace's one clock type, `keyway_core::time::Clock`.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock, for [`Router::new`]'s `get_time`.
pub fn system_time() -> u64 {
    SystemClock.unix_secs()
}

/// `get_time` reading any [`keyway_core::time::Clock`] (a test's
/// `ManualClock`, say), in whole seconds.
pub fn clock_fn(clock: Arc<dyn WallClock>) -> impl Fn() -> u64 + Send + Sync + 'static {
    move || clock.unix_secs()
}

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("no broker of the pool could be reached")]
    NoBroker,
    #[error("the router is closed")]
    Closed,
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
}

struct Inner {
    key: PublicKey,
    max_message: usize,
    /// How long one connect may take (the node's connect timeout).
    connect_timeout: Duration,
    /// Sends to the driver (bounded: a caller waits while it is full).
    commands: mpsc::Sender<SendRequest>,
    /// The driver until it is spawned (by `start` or the first send).
    driver: Mutex<Option<Driver>>,
    status: watch::Receiver<Status>,
    shared: Arc<Shared>,
    /// Sends whose caller is waiting.
    sending: AtomicUsize,
    /// Cancelled by [`Router::close`]: ends the driver and every send.
    closed: CancellationToken,
}

/// A node on the pool; cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Spawns the driver if it is not running yet.
    fn spawn_driver(&self) {
        let driver = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(driver) = driver {
            tokio::spawn(driver.run());
        }
    }
}

impl Router {
    /// A node for `keypair` on `pool`, not yet connected: the seed's
    /// `Router(kp, msg_handler, get_time, servers)`. `handler` (if any) is
    /// called for every delivered message; add more with
    /// [`Self::add_msg_handler`]. `get_time` is required on purpose: see
    /// [`Clock`] ([`system_time`] for a single host).
    pub fn new(
        keypair: Keypair,
        handler: Option<Handler>,
        get_time: impl Fn() -> u64 + Send + Sync + 'static,
        pool: Pool,
    ) -> Self {
        Self::with_config(keypair, handler, get_time, pool, RouterConfig::default())
    }

    /// [`Self::new`] with settings other than the defaults.
    pub fn with_config(
        keypair: Keypair,
        handler: Option<Handler>,
        get_time: impl Fn() -> u64 + Send + Sync + 'static,
        pool: Pool,
        config: RouterConfig,
    ) -> Self {
        let (commands, requests) = mpsc::channel(SEND_QUEUE);
        let (status_tx, status) = watch::channel(Status::default());
        let shared = Arc::new(Shared {
            handlers: Mutex::new(handler.into_iter().collect()),
            abandoned: tokio::sync::Notify::new(),
            grace: Mutex::new(Duration::ZERO),
        });
        let closed = CancellationToken::new();
        let key = *keypair.public();
        let max_message = config.max_message;
        let connect_timeout = config.link.connect_timeout.saturating_add(CONNECT_MARGIN);
        let driver = Driver::new(
            keypair,
            pool,
            config,
            Arc::new(get_time),
            requests,
            shared.clone(),
            status_tx,
            closed.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                key,
                max_message,
                connect_timeout,
                commands,
                driver: Mutex::new(Some(driver)),
                status,
                shared,
                sending: AtomicUsize::new(0),
                closed,
            }),
        }
    }

    /// Joins the pool: subscribes at the top of the node's own ranking
    /// (the set and the spares, connected at once) and handles inbound
    /// packets; the subscriptions are kept up for the Router's life.
    /// Returns once no own connect is under way, or after one connect
    /// timeout once a subscription is up (brokers that keep failing are
    /// replaced in the background); fails if none answered. Starting
    /// again is a no-op once joined.
    pub async fn start(&self) -> Result<(), RouterError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(RouterError::Closed);
        }
        inner.spawn_driver();
        let mut status = inner.status.clone();
        let waited = tokio::time::Instant::now().checked_add(inner.connect_timeout);
        let joined = async {
            let settled = |s: &Status| s.joined && s.own.1 == 0;
            let first = match waited {
                Some(at) => tokio::time::timeout_at(at, status.wait_for(settled))
                    .await
                    .ok()
                    .map(|s| s.map(|s| s.own.0)),
                None => Some(status.wait_for(settled).await.map(|s| s.own.0)),
            };
            match first {
                Some(joined) => joined,
                // A connect timeout passed: joined once one is up.
                None => status
                    .wait_for(|s| s.own.0 > 0 || s.own.1 == 0)
                    .await
                    .map(|s| s.own.0),
            }
        };
        let joined = tokio::select! {
            joined = joined => joined,
            () = inner.closed.cancelled() => return Err(RouterError::Closed),
        };
        match joined {
            Ok(0) => Err(RouterError::NoBroker),
            Ok(_) => Ok(()),
            Err(_) => Err(RouterError::Closed),
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.inner.key
    }

    /// The brokers ("host:port") this node is connected to now. Every link
    /// subscribes to the node's own topic, so these are its inbound paths:
    /// what a peer may use as hint brokers.
    pub fn brokers(&self) -> Vec<String> {
        if self.inner.closed.is_cancelled() {
            return Vec::new();
        }
        self.inner.status.borrow().brokers.clone()
    }

    /// First ACKs waiting for connects to their sender's set right now:
    /// at most [`RouterConfig::max_ack_tasks`].
    pub fn acks_in_flight(&self) -> usize {
        self.inner.status.borrow().ack_walks
    }

    /// Sends waiting for their ACK right now.
    pub fn pending_sends(&self) -> usize {
        self.inner.sending.load(Ordering::SeqCst)
    }

    /// Calls `handler` for every message delivered from now on.
    pub fn add_msg_handler(&self, handler: impl Fn(&Message) + Send + Sync + 'static) {
        self.inner
            .shared
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(handler));
    }

    /// A pipe to `dest`, using the hint cache (if configured). The seed's
    /// `pipe(dest, hint_brokers, use_cache, expiry)` is
    /// `pipe(dest).with_hints(..).use_cache(..).cache_expiry(..)`.
    pub fn pipe(&self, dest: PublicKey) -> SmartPipe {
        SmartPipe::new(self.inner.clone(), dest)
    }

    /// A pipe to `dest` that publishes on `hints` first.
    pub fn pipe_with_hints(&self, dest: PublicKey, hints: Vec<BrokerEntry>) -> SmartPipe {
        self.pipe(dest).with_hints(hints)
    }

    /// Leaves the pool: waits (at most `grace`) for the ACKs of messages
    /// being checked to go out, then drops every link (DISCONNECT).
    /// Every clone of the Router is closed; sends fail with
    /// [`RouterError::Closed`].
    pub async fn close(&self, grace: Duration) {
        let inner = &self.inner;
        *inner.shared.grace.lock().unwrap_or_else(|e| e.into_inner()) = grace;
        inner.closed.cancel();
        // Never started: nothing to wait for.
        drop(
            inner
                .driver
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        // The driver drops its end of the status when it is done.
        let mut status = inner.status.clone();
        let ended = async { while status.changed().await.is_ok() {} };
        let _ = tokio::time::timeout(grace.saturating_add(Duration::from_secs(1)), ended).await;
    }
}

#[cfg(test)]
mod clock_tests {
    use std::sync::Arc;

    use keyway_core::time::ManualClock;

    #[test]
    fn get_time_follows_the_workspace_clock() {
        let clock = Arc::new(ManualClock::new(1_800_000_000.7));
        let get_time = super::clock_fn(clock.clone());
        assert_eq!(get_time(), 1_800_000_000);
        clock.advance(5.0);
        assert_eq!(get_time(), 1_800_000_005);
        assert!(super::system_time() > 1_700_000_000);
    }
}

#[cfg(test)]
mod small_stack_tests {
    use keyway_core::Keypair;
    use keyway_core::rand_core::UnwrapErr;

    use super::{Router, system_time};
    use crate::pool::Pool;

    /// Apps make Routers on threads with small stacks (JVM and Android
    /// threads: 512 KiB–1 MiB). The node's tables are built by value and
    /// overflowed such a stack (SIGSEGV in the Kotlin suite); a Rust
    /// thread of 256 KiB overflows the same way (the test process aborts).
    #[test]
    fn a_router_is_made_on_a_thread_with_a_small_stack() {
        let made = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let key = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
                let pool = Pool::from_toml("[[broker]]\nhost = \"127.0.0.1\"\nport = 1\n").unwrap();
                let router = Router::new(key, None, system_time, pool);
                router.public_key().to_string()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(made.len(), 66);
    }
}
