//! The sidewire node as a sans-I/O state machine: everything a node on a
//! pool of brokers decides (spec §5–§6), in link terms, with no sockets,
//! clocks or heap.
//!
//! **Inputs** (each with `now`, the monotonic [`Instant`], and where the
//! wire needs it `unix`, wall-clock seconds):
//! - [`Node::handle_link_up`] / [`Node::handle_link_down`]: a link the node
//!   asked for is connected and subscribed to the node's topic (the MQTT
//!   session does the SUBSCRIBE), or is gone, and how ([`LinkDown`]).
//! - [`Node::handle_message`]: a PUBLISH payload arrived on a link. The
//!   checks that cost no signature run here, cheapest first (topic, size,
//!   decode, type and freshness, re-ACK from the kept signed ACKs, ACKs
//!   nobody waits for, known copies, the [`Screen`] budgets); a packet
//!   that earns a signature check is queued by class and named by a
//!   [`Ticket`] (the shell keeps its bytes).
//! - [`Node::poll_verify`] then [`Node::handle_verified`]: the shell checks
//!   signatures wherever it likes (a blocking pool), in the order the node
//!   gives (recent peers first, fair per key within a class), and reports
//!   each outcome; the node applies the [`Receiver`] rules, signs ACKs and
//!   says what to deliver.
//! - [`Node::send`]: signs a MSG into the caller's buffer (kept until the
//!   send ends) and tracks it; [`Node::cancel`] forgets it.
//! - [`Node::handle_timeout`] at [`Node::poll_timeout`].
//!
//! **Outputs**: [`Node::poll_transmit`] ([`Transmit`]: connect to a
//! broker, close a link, publish a send's packet or an ACK), and
//! [`Node::poll_event`] ([`Event`]: a send acknowledged or failed, a
//! destination reached through a broker, worth remembering).
//!
//! **Timers**: resends (every `resend_every`, widening: [`widening`]) and
//! send deadlines ([`pending`]); own subscriptions checked every
//! `resubscribe_every`, replacing brokers that dropped; connect timeouts;
//! ACK walks to a sender's set end at the connect timeout ([`ack_walk`]);
//! idle close of links opened only to send ([`links`]); broker backoff
//! from 1 s doubling to 5 min ([`backoff`]); re-ACKs at most once per half
//! `resend_every` per link ([`ack_cache`]); hint expiry ([`hints`]).
//!
//! **Shells**: the tokio crate `keyway-sidewire` (its Router is one task
//! owning one node; signatures checked on tasks, with [`key_cache`] for
//! parsed keys; the hint file fed to each send as hints), embassy
//! firmware and, through the Router, the uniffi mobile face, the Python
//! wheel and the C library.
//!
//! Bounded everywhere: `L` links, `S` sends, `Q` queued checks per class,
//! `B` brokers tracked for backoff and hints, `T` brokers one publish or
//! ACK walk reaches, `O` publishes waiting to be polled (beyond that a
//! publish is dropped, as a datagram would be: sends publish again,
//! copies are re-ACKed), `W` ACK walks; the replay table, peer table and
//! ACK cache are the caller's storage. `B`, `T`, `O` and `W` default to
//! [`BROKERS_TRACKED`], [`MAX_TARGETS`], [`OUTBOX`] and
//! [`ACK_WALKS`] (a server's sizes); a device with a few brokers picks
//! smaller ones (issue 14's RAM budget).

pub mod ack_cache;
pub mod ack_walk;
pub mod arrival;
pub mod backoff;
pub mod hints;
mod inbound;
pub mod key_cache;
pub mod links;
mod outbox;
pub mod pending;
pub mod pool_view;
mod route;
pub mod verify_queue;
pub mod widening;

use core::ops::Range;
use core::time::Duration;

use crate::identity::{Keypair, PUBLIC_KEY_LEN};
use crate::rand_core::CryptoRng;
use crate::sidewire::app_packet::{AppPacket, HEADER_LEN, MsgType};
use crate::sidewire::receiver::{Receiver, Slot};
use crate::sidewire::screen::{Peer, Screen, ScreenLimits};
use crate::time::Instant;

use ack_cache::{AckCache, SourceAcks};
pub use ack_walk::ACK_WALKS;
use ack_walk::AckWalk;
pub use arrival::precheck;
use backoff::{Backoff, BackoffLimits};
use hints::Hints;
use links::Links;
use outbox::Outbox;
use pending::{Due, Pending};
pub use pending::{PendingFull, SendId};
pub use pool_view::{PoolBroker, PoolSlice, PoolView};
pub use route::MAX_TARGETS;
use verify_queue::VerifyQueue;

/// Names a link (one MQTT session to one broker); the node picks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

/// Names a broker to the shell: a [`PoolView`] index, or any other id the
/// shell gives a hint broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerId(pub u32);

/// Names a packet waiting for its signature check; the shell keeps the
/// bytes until [`Node::handle_verified`] or an eviction names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Brokers remembered as hints, backoff entries: at most this many by
/// default (`Node`'s `B`).
pub const BROKERS_TRACKED: usize = 64;

/// Publishes waiting for [`Node::poll_transmit`], at most, by default
/// (`Node`'s `O`).
pub const OUTBOX: usize = 64;

/// How a link ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDown {
    /// The connect failed (refused, timed out, handshake refused).
    ConnectFailed,
    /// A write missed its deadline: the broker completes handshakes, then
    /// stops reading; reconnecting at once would only wedge a new link.
    Stalled,
    /// Never heard from the broker after the handshake (a missing
    /// PINGRESP): it neither reads nor writes.
    Unheard,
    /// Closed after working: the broker's failures are forgotten.
    Closed,
}

impl LinkDown {
    /// How a link that dropped ended, from what its session saw: a missed
    /// write deadline (`stalled`) first, then never hearing from the
    /// broker after the handshake (`heard` false), else it worked.
    pub fn of(stalled: bool, heard: bool) -> Self {
        if stalled {
            Self::Stalled
        } else if !heard {
            Self::Unheard
        } else {
            Self::Closed
        }
    }

    /// Whether the broker backs off for it: every way but [`Self::Closed`].
    pub fn is_failure(self) -> bool {
        self != Self::Closed
    }
}

/// What the shell should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Open `link` to `broker` and subscribe to the node's topic there;
    /// report [`Node::handle_link_up`] or [`Node::handle_link_down`].
    Connect { link: LinkId, broker: BrokerId },
    /// Close `link` (MQTT DISCONNECT).
    Disconnect { link: LinkId },
    /// Publish the packet of `send` (the buffer given to [`Node::send`])
    /// on `link`, topic `to`'s key in lowercase hex; never wait on a full
    /// link queue (the next resend tries again).
    PublishSend {
        link: LinkId,
        to: [u8; PUBLIC_KEY_LEN],
        send: SendId,
    },
    /// Publish the first `len` bytes written to `poll_transmit`'s buffer
    /// (a signed ACK) on `link`, topic `to`'s key in hex.
    PublishAck {
        link: LinkId,
        to: [u8; PUBLIC_KEY_LEN],
        len: usize,
    },
}

/// Why a send ended without an ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// No ACK before the deadline.
    Timeout,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    SendAcked(SendId),
    SendFailed(SendId, SendFailure),
    /// `dest` answered through `broker` and the hint rules say this is
    /// worth saving (a shell keeping hints in a file writes it).
    Reached {
        dest: [u8; PUBLIC_KEY_LEN],
        broker: BrokerId,
    },
}

/// Why [`Node::send`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The packet would exceed `max_message`.
    TooLarge { len: usize, max: usize },
    /// The caller's buffer cannot hold the packet.
    BufferTooSmall { needed: usize },
    /// `S` sends are waiting already.
    Full,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the {max}-byte limit")
            }
            Self::BufferTooSmall { needed } => write!(f, "the packet needs {needed} bytes"),
            Self::Full => f.write_str("too many sends waiting for their ACK"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why [`Node::handle_message`] dropped a packet before any signature check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not on the node's topic.
    Topic,
    /// Beyond `max_message`.
    TooLarge,
    /// Not an AppPacket.
    Malformed,
    /// A MSG outside the freshness window, a PROBE or an unknown type:
    /// refused after the check anyway, so not checked (a replay of a
    /// peer's old packets must not spend its budget).
    Refused,
    /// An exact copy of an acknowledged MSG: its kept ACK went back (or
    /// went back on this link within the interval).
    Reacked,
    /// A known copy whose kept ACK was gone: a new ACK was signed.
    KnownCopy,
    /// An ACK no send waits for (completed already, or never ours).
    Unexpected,
    /// The budget its claimed key is charged to is spent ([`Screen`]).
    Budget,
    /// Its class's queue is full of other keys' packets.
    QueueFull,
}

/// What [`Node::handle_message`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screened {
    Dropped(Dropped),
    /// Queued for a signature check; `evicted`'s bytes may be let go.
    Queued {
        ticket: Ticket,
        evicted: Option<Ticket>,
    },
}

/// A MSG to hand to the application: `data` is its range in the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub from: [u8; PUBLIC_KEY_LEN],
    pub queue_id: [u8; 32],
    pub data: Range<usize>,
}

/// The node's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeConfig {
    /// Largest AppPacket accepted or sent, checked before any signature work.
    pub max_message: usize,
    /// A pending send publishes again this often; copies are re-ACKed at
    /// most once per half of it per link.
    pub resend_every: Duration,
    pub screen: ScreenLimits,
    pub resubscribe_every: Duration,
    /// Brokers per family subscribed beyond the set size (at most the top
    /// 10 in all).
    pub spare_subscriptions: usize,
    pub backoff: BackoffLimits,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// Seconds a remembered broker stays a hint.
    pub hint_expiry: u64,
    /// Whether sends try remembered hints.
    pub use_hints: bool,
    /// ACK walks waiting for connects at once, at most (and never more
    /// than the node's `W`): beyond that a first ACK goes only on links
    /// already up ([`ack_walk`]).
    pub max_ack_walks: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_message: 64 * 1024,
            resend_every: Duration::from_secs(1),
            screen: ScreenLimits::default(),
            resubscribe_every: Duration::from_secs(1),
            spare_subscriptions: widening::REFERENCE_RACE_WIDTH,
            backoff: BackoffLimits::default(),
            idle_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            hint_expiry: 3600,
            use_hints: true,
            max_ack_walks: ACK_WALKS,
        }
    }
}

/// A table in the caller's storage: an array, a boxed slice, a `Vec`.
pub trait Table<T>: AsRef<[T]> + AsMut<[T]> {}

impl<T, S: AsRef<[T]> + AsMut<[T]>> Table<T> for S {}

/// The caller's storage for the big tables.
#[derive(Debug)]
pub struct NodeTables<Sl, Wm, Pe, Ak> {
    /// Replay slots ([`Receiver`]).
    pub slots: Sl,
    /// Replay watermarks ([`Receiver`]).
    pub watermarks: Wm,
    /// Recently verified peers ([`Screen`]).
    pub peers: Pe,
    /// Signed ACKs kept ([`AckCache`]).
    pub acks: Ak,
}

/// A send's routing: its hints, and which brokers its current publish
/// reached.
#[derive(Clone, Copy, Debug)]
struct Route<const T: usize> {
    id: SendId,
    dest: [u8; PUBLIC_KEY_LEN],
    hints: [Option<BrokerId>; widening::MAX_HINTS],
    attempt: u32,
    published: [Option<BrokerId>; T],
    /// Set when the send ended, until [`Node::poll_event`] reports it.
    done: Option<Event>,
}

/// A sidewire node; see the module documentation.
#[derive(Debug)]
pub struct Node<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize = BROKERS_TRACKED,
    const T: usize = MAX_TARGETS,
    const O: usize = OUTBOX,
    const W: usize = ACK_WALKS,
> {
    key: Keypair,
    topic: [u8; 2 * PUBLIC_KEY_LEN],
    pool: P,
    config: NodeConfig,
    links: Links<L>,
    backoff: Backoff<BrokerId, [Option<backoff::Entry<BrokerId>>; B]>,
    pending: Pending<S>,
    routes: [Option<Route<T>>; S],
    receiver: Receiver<Sl, Wm>,
    screen: Screen<Pe>,
    acks: AckCache<Ak>,
    queues: [VerifyQueue<(Ticket, LinkId), Q>; 3],
    next_ticket: u64,
    hints: Hints<BrokerId, B>,
    outbox: Outbox<L, O>,
    reached: Option<Event>,
    next_maintain: Instant,
    ack_walks: [Option<AckWalk<T>>; W],
    /// A MSG's ACK waiting for its signature ([`Self::handle_verified`]).
    unsigned: Option<inbound::UnsignedAck>,
}

impl<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const T: usize,
    const O: usize,
    const W: usize,
> Node<P, Sl, Wm, Pe, Ak, L, S, Q, B, T, O, W>
where
    P: PoolView,
    Sl: Table<Slot>,
    Wm: Table<u64>,
    Pe: Table<Peer>,
    Ak: Table<SourceAcks>,
{
    /// A node for `key` on `pool`, not yet joined: the first
    /// [`Self::handle_timeout`] (due at once) connects its own set.
    pub fn new<R: CryptoRng + ?Sized>(
        key: Keypair,
        pool: P,
        config: NodeConfig,
        tables: NodeTables<Sl, Wm, Pe, Ak>,
        rng: &mut R,
        now: Instant,
    ) -> Self {
        let mut seeds = [[0u8; 16]; 3];
        for s in &mut seeds {
            rng.fill_bytes(s);
        }
        let mut topic = [0u8; 2 * PUBLIC_KEY_LEN];
        // 66 bytes always hold 33 bytes of hex.
        let _ = base16ct::lower::encode(key.public().as_bytes(), &mut topic);
        Self {
            key,
            topic,
            pool,
            links: Links::default(),
            backoff: Backoff::new([const { None }; B], config.backoff),
            pending: Pending::new(config.resend_every),
            routes: [None; S],
            receiver: Receiver::new(tables.slots, tables.watermarks, seeds[0]),
            screen: Screen::new(tables.peers, seeds[1], config.screen, seconds(now)),
            acks: AckCache::new(tables.acks, seeds[2]),
            queues: core::array::from_fn(|_| VerifyQueue::new()),
            next_ticket: 0,
            hints: Hints::new(config.hint_expiry),
            outbox: Outbox::default(),
            reached: None,
            next_maintain: now,
            ack_walks: [None; W],
            unsigned: None,
            config,
        }
    }

    pub fn public_key(&self) -> &crate::identity::PublicKey {
        self.key.public()
    }

    /// The node's topic: its key in lowercase hex.
    pub fn topic(&self) -> &[u8] {
        &self.topic
    }

    /// Links up now (each carries the node's subscription: an inbound path).
    pub fn links_up(&self) -> impl Iterator<Item = (LinkId, BrokerId)> + '_ {
        self.links.iter().filter(|l| l.up).map(|l| (l.id, l.broker))
    }

    /// Publishes dropped because the `O` outbox places were taken (the shell
    /// did not poll in time).
    pub fn publishes_dropped(&self) -> u64 {
        self.outbox.dropped
    }

    /// Sends waiting for their ACK.
    pub fn pending_sends(&self) -> usize {
        self.pending.len()
    }

    /// Whether the broker may be dialled at `now` (not backing off).
    pub fn broker_ready(&self, broker: BrokerId, now: Instant) -> bool {
        self.backoff.ready(&broker, now)
    }

    /// The node's own subscriptions: `(up, connecting)`. A shell waits
    /// for `connecting` to reach 0 after the first [`Self::handle_timeout`]
    /// to learn whether it joined the pool.
    pub fn own_links(&self) -> (usize, usize) {
        self.links
            .iter()
            .filter(|l| l.own)
            .fold((0, 0), |(up, connecting), l| {
                if l.up {
                    (up + 1, connecting)
                } else {
                    (up, connecting + 1)
                }
            })
    }

    /// Forgets what the node knows of `broker` (its backoff), so that a
    /// shell naming brokers outside the pool from a bounded table may give
    /// the id to another broker. Refused (`false`, nothing forgotten)
    /// while a link to it exists or a live send names it as a hint: the
    /// id still means the old broker there.
    pub fn forget_broker(&mut self, broker: BrokerId) -> bool {
        let hinted = self
            .routes
            .iter()
            .flatten()
            .any(|r| r.hints.contains(&Some(broker)));
        if hinted || self.links.to(broker).is_some() {
            return false;
        }
        self.backoff.worked(&broker);
        true
    }

    /// Builds and signs a MSG carrying `data` to `dest` into `out` (keep
    /// those bytes until the send ends: [`Transmit::PublishSend`] names
    /// them), and publishes it at once on the destination's hints and set.
    /// `hints` (at most [`widening::MAX_HINTS`] with remembered ones) are
    /// tried first.
    #[allow(clippy::too_many_arguments)]
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        now: Instant,
        unix: u64,
        dest: &[u8; PUBLIC_KEY_LEN],
        data: &[u8],
        hints: &[BrokerId],
        timeout: Duration,
        rng: &mut R,
        out: &mut [u8],
    ) -> Result<(SendId, usize), SendError> {
        self.sign_deferred();
        let max = self.config.max_message;
        if data.len().saturating_add(HEADER_LEN) > max {
            return Err(SendError::TooLarge {
                len: data.len(),
                max,
            });
        }
        let mut queue_id = [0u8; 32];
        rng.fill_bytes(&mut queue_id);
        let mut packet = AppPacket::new(queue_id, 0, unix, MsgType::Msg, data);
        packet.sign(&self.key);
        let len = packet.encode(out).map_err(|_| SendError::BufferTooSmall {
            needed: packet.encoded_len(),
        })?;
        let Some(slot) = self.routes.iter().position(Option::is_none) else {
            return Err(SendError::Full);
        };
        let id = self
            .pending
            .insert(now, *dest, (queue_id, 0), timeout)
            .map_err(|_| SendError::Full)?;
        let mut route = Route {
            id,
            dest: *dest,
            hints: [None; widening::MAX_HINTS],
            attempt: 0,
            published: [None; T],
            done: None,
        };
        for (h, slot) in hints.iter().zip(route.hints.iter_mut()) {
            *slot = Some(*h);
        }
        self.routes[slot] = Some(route);
        self.run_pending(now, unix);
        Ok((id, len))
    }

    /// Forgets a send whose caller stopped waiting.
    pub fn cancel(&mut self, id: SendId) {
        self.pending.cancel(id);
        if let Some(slot) = self
            .routes
            .iter_mut()
            .find(|r| r.is_some_and(|r| r.id == id))
        {
            *slot = None;
        }
    }

    /// The link asked for with [`Transmit::Connect`] is up and subscribed.
    pub fn handle_link_up(&mut self, now: Instant, unix: u64, link: LinkId) {
        self.sign_deferred();
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        l.up = true;
        l.used = now;
        let broker = l.broker;
        self.backoff.connected(&broker, now);
        // The sends and ACKs waiting for this broker publish there.
        self.reroute(now, unix);
        self.advance_acks(now);
    }

    /// `link` is gone (or its connect failed).
    pub fn handle_link_down(&mut self, now: Instant, unix: u64, link: LinkId, how: LinkDown) {
        self.sign_deferred();
        let Some(l) = self.links.remove(link) else {
            return;
        };
        if how.is_failure() {
            self.backoff.failed(l.broker, now);
        } else {
            self.backoff.worked(&l.broker);
        }
        // The next broker of each group replaces it.
        self.reroute(now, unix);
        self.advance_acks(now);
        if l.own {
            self.next_maintain = now;
        }
    }

    /// When [`Self::handle_timeout`] is due next (at once while an ACK
    /// waits for its signature: [`Self::handle_verified`]).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.unsigned.map(|u| u.now),
            self.pending.poll_timeout(),
            Some(self.next_maintain),
            self.links
                .poll_timeout(self.config.connect_timeout, self.config.idle_timeout),
            self.acks_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, unix: u64) {
        self.sign_deferred();
        while let Some((link, failed)) =
            self.links
                .next_expired(now, self.config.connect_timeout, self.config.idle_timeout)
        {
            self.outbox.disconnect(link);
            // An unanswered connect is a failure; an idle link worked.
            if let Some(l) = self.links.remove(link)
                && failed
            {
                self.backoff.failed(l.broker, now);
            }
        }
        self.expire_acks(now);
        self.run_pending(now, unix);
        if now >= self.next_maintain {
            self.maintain(now);
            self.next_maintain = now + self.config.resubscribe_every;
        }
    }

    /// The next thing to do; a [`Transmit::PublishAck`] has its bytes in
    /// `buf` (at least [`ack_cache::ACK_LEN`] bytes, or it is skipped).
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.sign_deferred();
        self.outbox.poll(buf)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        for slot in &mut self.routes {
            if let Some(done) = slot.and_then(|r| r.done) {
                *slot = None;
                return Some(done);
            }
        }
        self.reached.take()
    }

    /// Publishes and expiries due at `now`.
    fn run_pending(&mut self, now: Instant, unix: u64) {
        while let Some(due) = self.pending.next_due(now) {
            match due {
                Due::Expired(id) => {
                    if let Some(r) = self.route_mut(id) {
                        r.done = Some(Event::SendFailed(id, SendFailure::Timeout));
                    }
                }
                Due::Publish { id, attempt } => {
                    if let Some(r) = self.route_mut(id) {
                        r.attempt = attempt;
                        r.published = [None; T];
                    }
                    self.publish_send(now, unix, id);
                }
            }
        }
    }

    fn route_mut(&mut self, id: SendId) -> Option<&mut Route<T>> {
        self.routes.iter_mut().flatten().find(|r| r.id == id)
    }
}

/// Seconds on the screen's clock (any monotonic origin).
fn seconds(now: Instant) -> f64 {
    now.as_micros() as f64 / 1e6
}
