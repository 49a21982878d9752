//! The Router: a node's presence on a pool of brokers (spec §5–§6).
//!
//! - It subscribes to its own topic (its key's hex) on the top of its own
//!   ranking in each address family, [`set_size`](keyway_core::sidewire::rendezvous::set_size) brokers plus spares (by
//!   default down to the 10th, where reference senders may publish),
//!   skipping only brokers that fail (not "whichever connects first":
//!   spec §10 item 10).
//! - [`SmartPipe::send`] signs one MSG and publishes it on the top of the
//!   destination's ranking, retransmitting the same packet on more of the
//!   ranking each time (1, 3, 7… brokers more per family, to the 10th)
//!   until an ACK arrives or the timeout passes.
//! - Inbound packets are checked cheapest first: topic, size cap, decode,
//!   then [`Screen`] decides whether a packet earns a signature check and
//!   how urgently (recently verified peers first, a node-wide budget for
//!   everyone else), then the signature, then the receive rules of
//!   [`Receiver`]. ACKs go back through the link the MSG arrived on (the
//!   sender is certainly connected there) and the sender's own top brokers.

mod acks;
mod config;
mod inbound;
mod links;
mod pipe;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::sidewire::node::ack_cache::{AckCache, SourceAcks};
use keyway_core::sidewire::node::backoff::{self, Backoff, BackoffLimits};
use keyway_core::sidewire::node::key_cache::{KeyCache, KeySlot};
use keyway_core::sidewire::node::verify_queue::VerifyQueue;
use keyway_core::sidewire::screen::{Peer, Screen, ScreenLimits};
use keyway_core::sidewire::{Receiver, Slot};
use keyway_core::time::{Clock as WallClock, SystemClock};
use keyway_core::{Keypair, PublicKey};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::config::RouterConfig;
pub use self::pipe::SmartPipe;
use crate::hint_cache::HintCache;
use crate::link::{BrokerLink, Inbound};
pub use crate::pool::{BrokerEntry, Pool};

/// Screened packets waiting for a signature check, per [`Class`]: beyond
/// this one is dropped, as UDP would (the newest of the key with the most
/// packets queued).
///
/// [`Class`]: keyway_core::sidewire::Class
const VERIFY_QUEUE: usize = 256;

/// Brokers remembered as backing off, at most: hints name brokers outside
/// the pool, so the table must not grow without bound (when full, the
/// entry due soonest is forgotten first).
const BACKOFF_BROKERS: usize = 256;

/// Parsed keys kept for the verifiers.
const KEY_CACHE: usize = 1024;

/// A delivered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: PublicKey,
    pub data: Vec<u8>,
    /// The sender's queue (random per send): what the reference hands its
    /// handlers as `queue_id`.
    pub queue_id: [u8; 32],
}

/// Called once per delivered message, on one of the Router's tasks and
/// possibly for two messages at once: hand long work to a task or channel.
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

/// A sent MSG: its queue id and sequence number.
type MessageId = ([u8; 32], u32);

/// The receive rules over the Router's heap buffers (slots, watermarks).
type ReplayTable = Receiver<Box<[Slot]>, Box<[u64]>>;

/// Brokers that failed, by address, in a heap table.
type BrokerBackoff = Backoff<String, Box<[Option<backoff::Entry<String>>]>>;

/// A send waiting for its ACK: the destination key and who to tell.
type PendingSend = ([u8; 33], oneshot::Sender<()>);

struct Inner {
    key: Keypair,
    topic: String,
    pool: Pool,
    config: RouterConfig,
    links: Mutex<Vec<(String, BrokerLink)>>,
    /// Numbers links, so an inbound message names the link it came on.
    next_link: AtomicUsize,
    inbound: mpsc::Sender<Inbound>,
    pending: Mutex<HashMap<MessageId, PendingSend>>,
    receiver: Mutex<ReplayTable>,
    /// Which inbound packets earn a signature check.
    screen: Mutex<Screen<Box<[Peer]>>>,
    /// Screened packets waiting for their check, most urgent class first.
    to_verify: Mutex<Box<[VerifyQueue<Inbound, VERIFY_QUEUE>; 3]>>,
    handlers: Mutex<Vec<Handler>>,
    /// ACKs being published: [`Router::close`] lets them finish.
    acks: TaskTracker,
    /// One per ACK task, `max_ack_tasks` in all.
    ack_permits: Arc<Semaphore>,
    /// Signed ACKs by (sender, queue, seq, digest), re-sent for copies.
    signed_acks: Mutex<AckCache<Box<[SourceAcks]>>>,
    /// Brokers that failed: consecutive failures and when to try again.
    backoff: Mutex<BrokerBackoff>,
    /// Where destinations were reached.
    hints: Mutex<HintCache>,
    /// When each link was last handed out.
    last_used: Mutex<HashMap<String, keyway_core::time::Instant>>,
    /// Brokers being connected to right now.
    connecting: Arc<Mutex<std::collections::HashSet<String>>>,
    started: Instant,
    get_time: Clock,
    /// Parsed keys of recent senders.
    keys: Mutex<KeyCache<Box<[KeySlot]>>>,
    /// Tasks doing signature checks at once (one per core).
    verifying: Arc<Semaphore>,
    /// Set by [`Router::start`]; the inbound queue's receiving end until then.
    inbound_rx: Mutex<Option<mpsc::Receiver<Inbound>>>,
    /// Cancelled by [`Router::close`]: stops the background tasks and any
    /// further connects.
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
            .field("key", self.inner.key.public())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn now(&self) -> u64 {
        (self.get_time)()
    }

    /// Seconds on the screen's monotonic clock.
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The core's monotonic clock, from the Router's start.
    fn mono(&self) -> keyway_core::time::Instant {
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        keyway_core::time::Instant::from_micros(micros)
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
        let (inbound, rx) = mpsc::channel(1024);
        let mut seed = [0u8; 16];
        UnwrapErr(getrandom::SysRng).fill_bytes(&mut seed);
        let mut screen_seed = [0u8; 16];
        UnwrapErr(getrandom::SysRng).fill_bytes(&mut screen_seed);
        let hints = HintCache::open(config.hint_cache.clone(), config.hint_expiry);
        let replay_slots = vec![Slot::EMPTY; config.replay_slots].into_boxed_slice();
        let max_ack_tasks = config.max_ack_tasks;
        let mut ack_seed = [0u8; 16];
        UnwrapErr(getrandom::SysRng).fill_bytes(&mut ack_seed);
        let mut key_seed = [0u8; 16];
        UnwrapErr(getrandom::SysRng).fill_bytes(&mut key_seed);
        let backoff_limits = BackoffLimits {
            base: config.backoff_base,
            max: config.backoff_max,
        };
        let ack_cache_sources = config.ack_cache_sources;
        let watermarks = vec![0u64; config.replay_watermarks].into_boxed_slice();
        let screen = Screen::new(
            vec![Peer::EMPTY; config.verified_peers].into_boxed_slice(),
            screen_seed,
            ScreenLimits {
                peer: config.per_source,
                claimed: config.claimed,
                unverified: config.unverified,
                ..ScreenLimits::default()
            },
            0.0,
        );
        let inner = Arc::new(Inner {
            topic: keypair.public().to_string(),
            key: keypair,
            pool,
            config,
            links: Mutex::new(Vec::new()),
            next_link: AtomicUsize::new(0),
            inbound,
            pending: Mutex::new(HashMap::new()),
            receiver: Mutex::new(Receiver::new(replay_slots, watermarks, seed)),
            screen: Mutex::new(screen),
            to_verify: Mutex::new(Box::new(std::array::from_fn(|_| VerifyQueue::new()))),
            handlers: Mutex::new(handler.into_iter().collect()),
            acks: TaskTracker::new(),
            ack_permits: Arc::new(Semaphore::new(max_ack_tasks)),
            backoff: Mutex::new(Backoff::new(
                vec![None; BACKOFF_BROKERS].into_boxed_slice(),
                backoff_limits,
            )),
            connecting: Arc::new(Mutex::new(std::collections::HashSet::new())),
            last_used: Mutex::new(HashMap::new()),
            hints: Mutex::new(hints),
            signed_acks: Mutex::new(AckCache::new(
                vec![SourceAcks::EMPTY; ack_cache_sources].into_boxed_slice(),
                ack_seed,
            )),
            started: Instant::now(),
            get_time: Arc::new(get_time),
            keys: Mutex::new(KeyCache::new(
                vec![KeySlot::EMPTY; KEY_CACHE].into_boxed_slice(),
                key_seed,
            )),
            verifying: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            inbound_rx: Mutex::new(Some(rx)),
            closed: CancellationToken::new(),
        });
        Self { inner }
    }

    /// Joins the pool: subscribes at the top of the node's own ranking
    /// (the set and a spare; the further spares follow in the background)
    /// and starts handling inbound packets; the subscriptions are kept up
    /// for the Router's life. Fails if no broker of the pool answers.
    /// Starting again is a no-op.
    pub async fn start(&self) -> Result<(), RouterError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(RouterError::Closed);
        }
        let Some(mut rx) = inner
            .inbound_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(());
        };
        let own = *inner.key.public();
        if inner
            .links_for(&own, inner.config.spare_subscriptions.min(1))
            .await
            .is_empty()
        {
            // Let a later start try again.
            *inner.inbound_rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
            return Err(RouterError::NoBroker);
        }
        let weak = Arc::downgrade(inner);
        let closed = inner.closed.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = closed.cancelled() => return,
                    message = rx.recv() => message,
                };
                let Some(message) = message else { return };
                let Some(inner) = weak.upgrade() else { return };
                // Screening never waits for a verifier: it keeps sorting
                // arrivals so that a peer's packet is not stuck behind
                // junk; each class's queue is bounded instead.
                if let Some((message, src, class)) = inner.screen(message) {
                    inner.enqueue(message, src, class);
                }
            }
        });
        let weak = Arc::downgrade(inner);
        let every = inner.config.resubscribe_every;
        let closed = inner.closed.clone();
        tokio::spawn(async move {
            loop {
                // At once the first time: the further spares.
                if let Some(inner) = weak.upgrade() {
                    inner.maintain().await;
                } else {
                    return;
                }
                tokio::select! {
                    () = closed.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        Ok(())
    }

    pub fn public_key(&self) -> &PublicKey {
        self.inner.key.public()
    }

    /// The brokers ("host:port") this node is connected to now. Every link
    /// subscribes to the node's own topic, so these are its inbound paths:
    /// what a peer may use as hint brokers.
    pub fn brokers(&self) -> Vec<String> {
        let links = self.inner.links.lock().unwrap_or_else(|e| e.into_inner());
        links
            .iter()
            .filter(|(_, l)| l.is_alive())
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// ACKs being signed or published right now: at most
    /// [`RouterConfig::max_ack_tasks`].
    pub fn acks_in_flight(&self) -> usize {
        // The permits, not the tracker's tasks: a task releases its
        // permit a moment before it leaves the tracker, so counting tasks
        // could read one more than the cap.
        self.inner
            .config
            .max_ack_tasks
            .saturating_sub(self.inner.ack_permits.available_permits())
    }

    /// Sends waiting for their ACK right now.
    pub fn pending_sends(&self) -> usize {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Calls `handler` for every message delivered from now on.
    pub fn add_msg_handler(&self, handler: impl Fn(&Message) + Send + Sync + 'static) {
        self.inner
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
    /// already delivered to go out, then drops every link (DISCONNECT).
    /// Every clone of the Router is closed; sends fail with
    /// [`RouterError::Closed`].
    pub async fn close(&self, grace: Duration) {
        self.inner.closed.cancel();
        self.inner.acks.close();
        let _ = tokio::time::timeout(grace, self.inner.acks.wait()).await;
        self.inner
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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
