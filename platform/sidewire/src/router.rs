//! The Router: a node's presence on a pool of brokers (spec §5–§6).
//!
//! - It subscribes to its own topic (its key's hex) on the top of its own
//!   ranking in each address family, [`set_size`] brokers plus spares (by
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use keyway_core::rand_core::{Rng, UnwrapErr};
use keyway_core::rate::RateLimit;
use keyway_core::sidewire::receiver::FRESHNESS_WINDOW;
use keyway_core::sidewire::rendezvous::{
    self, AF_INET, AF_INET6, Broker, Ranked, Ranking, set_size,
};
use keyway_core::sidewire::screen::{Class, Peer, Screen, ScreenLimits};
use keyway_core::sidewire::{AppPacket, MsgType, Receiver, Slot, Verdict};
use keyway_core::{Keypair, PublicKey};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ack_cache::{AckCache, Reack};
use crate::hint_cache::{self, HintCache};
use crate::link::{BrokerLink, Inbound, LinkConfig};
use crate::verify_queue::VerifyQueue;

/// How far down a ranking a reference node's walk looks: it races its
/// first 10 candidates and subscribes wherever connects finish (spec
/// §5.4), so no send needs to go further.
const REFERENCE_RACE_WIDTH: usize = 10;

/// Hints (the caller's, then remembered ones) used per send, at most: all
/// are connected at once, so their number bounds a send's connects.
const MAX_HINTS: usize = 16;

/// Screened packets waiting for a signature check, per [`Class`]: beyond
/// this one is dropped, as UDP would (the newest of the key with the most
/// packets queued).
const VERIFY_QUEUE: usize = 256;

/// A broker of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerEntry {
    /// Hostname or IP literal: the broker's identity in the ranking.
    pub host: String,
    pub port: u16,
    /// Only used with [`Ranking::Weighted`].
    pub weight: f64,
    /// The family it is ranked in: 2 (IPv4) or 10 (IPv6).
    pub af: u8,
}

impl BrokerEntry {
    /// A broker of weight 1, in the family of its address (IPv4 for names).
    pub fn new(host: &str, port: u16) -> Self {
        let af = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            AF_INET6
        } else {
            AF_INET
        };
        Self {
            host: host.to_owned(),
            port,
            weight: 1.0,
            af,
        }
    }

    pub fn af(&self) -> u8 {
        self.af
    }

    fn address(&self) -> String {
        if self.host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The brokers every peer shares, and how they are ranked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pool {
    pub brokers: Vec<BrokerEntry>,
    pub ranking: Ranking,
}

impl Pool {
    /// Brokers for `dest`, best first, family by family (IPv4 then IPv6),
    /// each family's list as ranked: where `dest` listens and is sent to.
    pub fn ranked(&self, dest: &PublicKey) -> Vec<Vec<&BrokerEntry>> {
        [AF_INET, AF_INET6]
            .into_iter()
            .map(|af| {
                let family: Vec<&BrokerEntry> =
                    self.brokers.iter().filter(|b| b.af() == af).collect();
                let input: Vec<Broker<'_>> = family
                    .iter()
                    .map(|b| Broker {
                        host: &b.host,
                        weight: b.weight,
                    })
                    .collect();
                let mut scratch = vec![Ranked::default(); family.len()];
                rendezvous::rank(af, dest.as_bytes(), &input, self.ranking, &mut scratch)
                    .iter()
                    .map(|r| family[r.index])
                    .collect()
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub link: LinkConfig,
    /// Largest AppPacket accepted or sent, checked before any signature work.
    pub max_message: usize,
    /// A pending send publishes its packet again this often.
    pub resend_every: Duration,
    /// Signature checks per second for each recently verified peer (its
    /// packets are checked before anyone else's). Junk claiming a peer's
    /// key cannot spend this: once a check fails under the key, its
    /// packets are charged to `claimed` until one verifies again.
    pub per_source: RateLimit,
    /// Node-wide signature checks per second for packets claiming a peer
    /// that failed a check since (or exceeds `per_source`).
    pub claimed: RateLimit,
    /// Node-wide signature checks per second for packets from every other
    /// key: bounds the work a flood from fresh keys costs, and how many
    /// new keys per second can reach the replay table (see DESIGN.md).
    pub unverified: RateLimit,
    /// Keys remembered as recently verified peers (about 100 bytes each).
    pub verified_peers: usize,
    /// MSGs remembered against replays (48 bytes each). The ±120 s window
    /// is covered in full up to `replay_slots / 120` messages per second;
    /// beyond that older copies are refused rather than risk delivering
    /// one twice.
    pub replay_slots: usize,
    /// Cells of the per-source watermark sketch (8 bytes each): a source
    /// whose remembered MSGs were evicted has its older copies refused,
    /// and another source is refused only if flooding keys raised all 8
    /// of its cells. See DESIGN.md for how many keys that takes.
    pub replay_watermarks: usize,
    /// How often the node checks its own subscriptions, replacing brokers
    /// that dropped and returning to them when they come back.
    pub resubscribe_every: Duration,
    /// Brokers per family subscribed beyond the set size, down the node's
    /// own ranking (at most the top 10 in all). `start` returns once the
    /// set and one spare are up; the maintenance loop adds the rest.
    /// The default reaches the top 10, every broker a sidewire 0.1.9
    /// sender may publish on: it picks whichever of its top 10 connect
    /// first (spec §10 item 10), so with fewer subscriptions about one
    /// message in 15 from it was lost even in a 3-broker pool on loopback.
    /// A pool of Keyway peers only needs 1 (redundancy when a broker
    /// fails): fewer connections, e.g. on phones.
    pub spare_subscriptions: usize,
    /// After a failed connect a broker is not tried again for this long,
    /// doubling with each further failure up to `backoff_max` (the
    /// reference locked a broker out for 20 minutes after one failure:
    /// spec §10 item 15). A success resets it.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A link outside the node's own set (opened to send) is closed after
    /// this long unused, and reopened when a send needs it again.
    pub idle_timeout: Duration,
    /// Remember across restarts where each destination was reached (a JSON
    /// file, mode 0600, e.g. in the application's data directory); every
    /// send tries those brokers first (at the cost of publishing there
    /// too). `None`: no cache.
    pub hint_cache: Option<std::path::PathBuf>,
    /// How long a remembered broker stays a hint.
    pub hint_expiry: Duration,
    /// ACKs being signed and published at once, at most; beyond that an
    /// inbound MSG's ACK is dropped (its sender retransmits, and every
    /// copy is acknowledged), so a flood cannot pile up tasks.
    pub max_ack_tasks: usize,
    /// Sources whose signed ACKs are kept (their 4 newest each, about
    /// 1 KiB per source at most), to re-send for a copy of a delivered
    /// MSG even after a flood evicted it from the replay table. The least
    /// recently acknowledged source is forgotten first, so this should
    /// exceed `verified_peers` (see DESIGN.md).
    pub ack_cache_sources: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            link: LinkConfig::default(),
            max_message: 64 * 1024,
            resend_every: Duration::from_millis(1000),
            per_source: ScreenLimits::default().peer,
            claimed: ScreenLimits::default().claimed,
            unverified: ScreenLimits::default().unverified,
            verified_peers: 4096,
            replay_slots: 1 << 16,
            replay_watermarks: 1 << 18,
            resubscribe_every: Duration::from_secs(1),
            spare_subscriptions: REFERENCE_RACE_WIDTH,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(600),
            hint_cache: None,
            hint_expiry: Duration::from_secs(3600),
            max_ack_tasks: 256,
            ack_cache_sources: 8192,
        }
    }
}

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
/// nor accepts messages: pass an NTP-corrected clock in production.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock, for [`Router::new`]'s `get_time`.
pub fn system_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    to_verify: Mutex<[VerifyQueue<Inbound>; 3]>,
    handlers: Mutex<Vec<Handler>>,
    /// ACKs being published: [`Router::close`] lets them finish.
    acks: TaskTracker,
    /// One per ACK task, `max_ack_tasks` in all.
    ack_permits: Arc<Semaphore>,
    /// Signed ACKs by (sender, queue, seq, digest), re-sent for copies.
    signed_acks: Mutex<AckCache>,
    /// Brokers that failed: consecutive failures and when to try again.
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
    /// Where destinations were reached.
    hints: Mutex<HintCache>,
    /// When each link was last handed out.
    last_used: Mutex<HashMap<String, Instant>>,
    /// Brokers being connected to right now.
    connecting: Arc<Mutex<std::collections::HashSet<String>>>,
    started: Instant,
    get_time: Clock,
    /// Parsed keys of recent peers.
    keys: Mutex<HashMap<[u8; 33], PublicKey>>,
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

    /// An open link to `broker`, connecting (and so subscribing to our own
    /// topic there) if needed; `None` while the broker backs off after a
    /// failure (hinted brokers too: a dead hint must not be dialled on
    /// every send) or while another connect to it is under way. The
    /// connect runs in a task of its own, so a caller that stops waiting
    /// (its deadline passed) does not cancel it: its outcome, a link or a
    /// backoff, is recorded all the same.
    async fn link(self: &Arc<Self>, broker: &BrokerEntry) -> Option<BrokerLink> {
        if self.closed.is_cancelled() {
            return None;
        }
        let address = broker.address();
        {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            self.prune(&mut links);
            if let Some((_, l)) = links.iter().find(|(a, _)| *a == address) {
                self.touch(&address);
                return Some(l.clone());
            }
        }
        let in_backoff = self
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
            .is_some_and(|(_, retry_at)| Instant::now() < *retry_at);
        if in_backoff {
            return None;
        }
        // One connect per broker at a time: concurrent walks (sends, ACKs,
        // the maintenance loop) skip a broker whose connect is under way,
        // or a silent broker would be dialled once per walk until its
        // first timeout is recorded.
        let claim = Connecting::claim(&self.connecting, &address)?;
        let inner = self.clone();
        tokio::spawn(async move {
            let _claim = claim;
            inner.connect(address).await
        })
        .await
        .ok()
        .flatten()
    }

    /// Opens a link to `address` (bounded by the link's connect timeout)
    /// and records the outcome.
    async fn connect(&self, address: String) -> Option<BrokerLink> {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let connected = BrokerLink::connect(
            &address,
            self.topic.as_bytes(),
            id,
            &self.config.link,
            self.inbound.clone(),
        )
        .await;
        let link = {
            let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            match connected {
                Ok(link) => {
                    // Not reset yet: a broker that accepts and then stops
                    // reading keeps backing off further ([`Self::prune`]).
                    if let Some((_, retry_at)) = backoff.get_mut(&address) {
                        *retry_at = Instant::now();
                    }
                    link
                }
                Err(e) => {
                    let (failures, wait) = self.back_off(&mut backoff, &address);
                    tracing::debug!(error = %e, failures, ?wait, "broker unavailable");
                    return None;
                }
            }
        };
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.is_cancelled() {
            // Closed while connecting: the link goes with this handle.
            return None;
        }
        if let Some((_, existing)) = links.iter().find(|(a, _)| *a == address) {
            // Lost a race with another connect: keep the first.
            return Some(existing.clone());
        }
        self.touch(&address);
        links.push((address, link.clone()));
        Some(link)
    }

    /// Records one more failure of `address`: it is not tried again for
    /// `backoff_base`, doubling per consecutive failure up to `backoff_max`.
    fn back_off(
        &self,
        backoff: &mut HashMap<String, (u32, Instant)>,
        address: &str,
    ) -> (u32, Duration) {
        let now = Instant::now();
        // Hints name brokers outside the pool: forget the ones whose wait
        // is over rather than grow without bound.
        if backoff.len() >= 4096 {
            backoff.retain(|_, (_, retry_at)| *retry_at > now);
        }
        let failures = backoff
            .get(address)
            .map_or(0, |(n, _)| *n)
            .saturating_add(1);
        let wait = self
            .config
            .backoff_base
            .saturating_mul(1 << (failures - 1).min(20))
            .min(self.config.backoff_max);
        backoff.insert(address.to_owned(), (failures, now + wait));
        (failures, wait)
    }

    /// Drops closed links. One closed because a write missed its deadline
    /// counts as a failure of its broker (it completes handshakes, then
    /// stops reading: reconnecting at once would only wedge a new link),
    /// and so does one that never heard from its broker after the
    /// handshake (closed at a missing PINGRESP: the broker neither reads
    /// nor writes). Only one that worked resets the backoff.
    fn prune(&self, links: &mut Vec<(String, BrokerLink)>) {
        links.retain(|(address, l)| {
            if l.is_alive() {
                return true;
            }
            let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            if l.stalled() || !l.heard() {
                let (failures, wait) = self.back_off(&mut backoff, address);
                tracing::debug!(failures, ?wait, stalled = l.stalled(), "broker link failed");
            } else {
                backoff.remove(address);
            }
            false
        });
    }

    /// The top of each family of `dest`'s ranking: the set size plus
    /// `extra` brokers (at most the 10 a reference node may use).
    fn ranked_groups(&self, dest: &PublicKey, extra: usize) -> Vec<(Vec<&BrokerEntry>, usize)> {
        self.pool
            .ranked(dest)
            .into_iter()
            .map(|family| {
                let wanted = (set_size(family.len()) + extra).min(REFERENCE_RACE_WIDTH);
                (family, wanted)
            })
            .collect()
    }

    /// Links to the first `wanted` brokers of each group that answer,
    /// connected in parallel (each one that fails or is backing off is
    /// replaced by the next of its group), each handed to `found` as soon
    /// as it is up: one slow or silent broker delays no other.
    async fn walk(
        self: &Arc<Self>,
        groups: Vec<(Vec<&BrokerEntry>, usize)>,
        mut found: impl FnMut(BrokerLink),
    ) {
        let mut rest = Vec::with_capacity(groups.len());
        let mut connects = FuturesUnordered::new();
        for (group, (brokers, wanted)) in groups.into_iter().enumerate() {
            let mut brokers = brokers.into_iter();
            for broker in brokers.by_ref().take(wanted) {
                connects.push(self.tagged_link(group, broker));
            }
            rest.push(brokers);
        }
        while let Some((group, link)) = connects.next().await {
            match link {
                Some(link) => found(link),
                None => {
                    if let Some(next) = rest.get_mut(group).and_then(Iterator::next) {
                        connects.push(self.tagged_link(group, next));
                    }
                }
            }
        }
    }

    async fn tagged_link(
        self: &Arc<Self>,
        group: usize,
        broker: &BrokerEntry,
    ) -> (usize, Option<BrokerLink>) {
        (group, self.link(broker).await)
    }

    /// The top of `dest`'s ranking in each family that answers, `extra`
    /// more than the set size, skipping brokers that fail.
    async fn links_for(self: &Arc<Self>, dest: &PublicKey, extra: usize) -> Vec<BrokerLink> {
        let mut chosen = Vec::new();
        self.walk(self.ranked_groups(dest, extra), |link| chosen.push(link))
            .await;
        chosen
    }

    /// Remembers that `dest` answered through the link numbered `link`.
    fn remember_hint(&self, dest: &PublicKey, link: usize) {
        let address = {
            let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            links
                .iter()
                .find(|(_, l)| l.id() == link)
                .map(|(a, _)| a.clone())
        };
        let Some((host, port)) = address.as_deref().and_then(|a| a.rsplit_once(':')) else {
            return;
        };
        let (host, Ok(port)) = (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse(),
        ) else {
            return;
        };
        let mut hints = self.hints.lock().unwrap_or_else(|e| e.into_inner());
        if hints.remember(&dest.to_string(), host, port, self.now())
            && let Some((path, bytes)) = hints.snapshot()
        {
            // Off the inbound path; a failed write only loses a hint.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = hint_cache::save(&path, &bytes) {
                    tracing::warn!(error = %e, path = %path.display(), "cannot save broker hints");
                }
            });
        }
    }

    fn touch(&self, address: &str) {
        let mut used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        used.insert(address.to_owned(), Instant::now());
    }

    /// Keeps the node's own subscriptions up and closes links opened only
    /// to send that have been idle for `idle_timeout`.
    async fn maintain(self: &Arc<Self>) {
        let own_key = *self.key.public();
        let own: Vec<String> = self
            .links_for(&own_key, self.config.spare_subscriptions)
            .await
            .iter()
            .map(|l| l.broker().to_owned())
            .collect();
        let used = self
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let idle = |address: &String| {
            !own.contains(address)
                && used
                    .get(address)
                    .is_none_or(|t| t.elapsed() > self.config.idle_timeout)
        };
        // Dropping the last handle sends DISCONNECT.
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(a, _)| !idle(a));
    }

    /// Seconds on the screen's monotonic clock.
    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Queues a screened packet for its signature check and makes sure a
    /// verifier runs. Never waits: a full queue drops a packet of the key
    /// with the most queued (see [`VerifyQueue`]).
    fn enqueue(self: &Arc<Self>, inbound: Inbound, src: [u8; 33], class: Class) {
        let queued = self.to_verify.lock().unwrap_or_else(|e| e.into_inner())[class.rank()]
            .push(src, inbound);
        if !queued {
            return;
        }
        if let Ok(permit) = self.verifying.clone().try_acquire_owned() {
            let inner = self.clone();
            tokio::spawn(async move { inner.verify_queued(permit).await });
        }
    }

    /// The most urgent queued packet.
    fn next_to_verify(&self) -> Option<Inbound> {
        let mut queues = self.to_verify.lock().unwrap_or_else(|e| e.into_inner());
        queues.iter_mut().find_map(VerifyQueue::pop)
    }

    /// A verifier: checks queued packets, most urgent first, until none is
    /// left. Releasing its permit and then looking again means a packet
    /// queued while every permit was held is never stranded.
    async fn verify_queued(self: Arc<Self>, mut permit: tokio::sync::OwnedSemaphorePermit) {
        loop {
            while let Some(inbound) = self.next_to_verify() {
                if self.closed.is_cancelled() {
                    return;
                }
                self.verify_and_handle(&inbound);
                tokio::task::yield_now().await;
            }
            drop(permit);
            let waiting = self
                .to_verify
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|q| !q.is_empty());
            match self.verifying.clone().try_acquire_owned() {
                Ok(again) if waiting => permit = again,
                _ => return,
            }
        }
    }

    /// `bytes` parsed as a key, from a small cache: peers' keys recur, and
    /// parsing one costs a square root.
    fn public_key(&self, bytes: &[u8; 33]) -> Option<PublicKey> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = keys.get(bytes) {
            return Some(*key);
        }
        let key = PublicKey::from_bytes(bytes).ok()?;
        // Only keys that signed something valid would be worth keeping,
        // but an invalid point is refused above and a valid one is cheap
        // to hold; the bound keeps a flood of fresh keys from growing it.
        if keys.len() >= 1024 {
            keys.clear();
        }
        keys.insert(*bytes, key);
        Some(key)
    }

    /// The checks that cost no signature work, in arrival order. Returns
    /// the packets that still need [`Self::verify_and_handle`], with how
    /// urgently.
    fn screen(self: &Arc<Self>, inbound: Inbound) -> Option<(Inbound, [u8; 33], Class)> {
        if inbound.topic != self.topic.as_bytes() || inbound.payload.len() > self.config.max_message
        {
            return None;
        }
        let Ok(packet) = AppPacket::decode(&inbound.payload) else {
            return None;
        };
        // Cheap decisions before the signature check, and before any
        // budget is charged: they cost no signature work. A MSG outside
        // the freshness window, a PROBE or an unknown type would be
        // refused after the check anyway: checking them would only let
        // a replay of a peer's old packets spend that peer's budget.
        match packet.msg_type {
            MsgType::Msg if self.now().abs_diff(packet.timestamp) <= FRESHNESS_WINDOW => {}
            MsgType::Ack => {}
            _ => return None,
        }
        let expected = packet.msg_type == MsgType::Ack;
        if !expected && self.reack(&packet, inbound.link) != Reack::Unknown {
            return None;
        }
        if expected {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let waiting = pending
                .get(&(packet.queue_id, packet.seq_no))
                .is_some_and(|(dest, _)| *dest == packet.src_pk);
            if !waiting {
                // Completed already (fan-out copies) or never ours.
                return None;
            }
        }
        let known = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .known_copy(&packet, self.now());
        if let Some(ack) = known {
            // Delivered, but its signed ACK was forgotten: sign it again.
            if let Some(from) = self.public_key(&packet.src_pk) {
                self.sign_and_ack(&packet, ack, from, inbound.link, false);
            }
            return None;
        }
        let mut screen = self.screen.lock().unwrap_or_else(|e| e.into_inner());
        let class = if expected {
            // Only an ACK for a pending send gets this far.
            screen.admit_expected(&packet.src_pk, self.elapsed())
        } else {
            screen.admit(&packet.src_pk, self.elapsed())
        }?;
        let src = packet.src_pk;
        Some((inbound, src, class))
    }

    /// The signature check and what follows; runs concurrently for
    /// different packets (bounded by [`Inner::verifying`]).
    fn verify_and_handle(self: &Arc<Self>, inbound: &Inbound) {
        let Ok(packet) = AppPacket::decode(&inbound.payload) else {
            return;
        };
        let valid = self
            .public_key(&packet.src_pk)
            .filter(|from| packet.verify_as(from).is_ok());
        {
            let mut screen = self.screen.lock().unwrap_or_else(|e| e.into_inner());
            match valid {
                Some(_) => screen.verified(&packet.src_pk, self.elapsed()),
                None => screen.failed(&packet.src_pk, self.elapsed()),
            }
        }
        let Some(from) = valid else {
            return;
        };
        let verdict = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .on_packet(&packet, self.now());
        match verdict {
            Verdict::Deliver { ack } => {
                // ACK first: the send is tracked before the application
                // sees the message (and may close the router).
                self.sign_and_ack(&packet, ack, from, inbound.link, true);
                let message = Message {
                    from,
                    data: packet.msg.to_vec(),
                    queue_id: packet.queue_id,
                };
                let handlers = self
                    .handlers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for handler in handlers {
                    handler(&message);
                }
            }
            Verdict::Duplicate { ack } => {
                if self.reack(&packet, inbound.link) == Reack::Unknown {
                    self.sign_and_ack(&packet, ack, from, inbound.link, false);
                }
            }
            Verdict::Acked { queue_id, seq_no } => {
                tracing::debug!(link = inbound.link, seq_no, "ACK received");
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending
                    .get(&(queue_id, seq_no))
                    .is_some_and(|(dest, _)| *dest == packet.src_pk)
                    && let Some((_, done)) = pending.remove(&(queue_id, seq_no))
                {
                    drop(pending);
                    // Before the sender learns of it (and may close the router).
                    self.remember_hint(&from, inbound.link);
                    let _ = done.send(());
                }
            }
            Verdict::TooOld => {
                // A copy of a MSG delivered before a flood evicted it:
                // its kept ACK is the sender's only way to learn of it.
                if self.reack(&packet, inbound.link) == Reack::Unknown {
                    tracing::debug!("MSG older than the replay table covers");
                }
            }
            Verdict::Stale { .. } | Verdict::Conflict | Verdict::Ignored => {}
        }
    }

    /// Re-sends the kept signed ACK for an exact copy of a delivered MSG
    /// back the way the copy came, at most once per half `resend_every`
    /// per link (copies replayed at line rate cost a few publishes), with
    /// no task, permit or signature. [`Reack::Unknown`]: no ACK is kept.
    fn reack(&self, packet: &AppPacket<'_>, link: usize) -> Reack {
        let reack = self
            .signed_acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reack(
                &packet.src_pk,
                (packet.queue_id, packet.seq_no),
                &packet.digest(),
                link,
                Instant::now(),
                self.config.resend_every / 2,
            );
        if let Reack::Send(bytes) = &reack {
            let topic = self.public_key(&packet.src_pk).map(|k| k.to_string());
            if let (Some(topic), Some(link)) = (topic, self.live_link(link)) {
                let result = link.try_publish(topic.as_bytes(), bytes);
                tracing::debug!(broker = link.broker(), ok = result.is_ok(), "ACK re-sent");
            }
        }
        reack
    }

    fn live_link(&self, id: usize) -> Option<BrokerLink> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, l)| l.is_alive() && l.id() == id)
            .map(|(_, l)| l.clone())
    }

    /// Signs the ACK for `msg`, keeps it (for later copies) and publishes
    /// it on the link the MSG arrived on. For a first copy (`first`) it
    /// also goes through the sender's own brokers, off the inbound path.
    /// A first ACK is signed here, on the verifier (one signature per
    /// delivered MSG, within the verification budget), so it is kept even
    /// when no ACK task is free; a later copy's ACK is signed in a task,
    /// which may only use the permits not reserved for first ACKs.
    fn sign_and_ack(
        self: &Arc<Self>,
        msg: &AppPacket<'_>,
        ack: AppPacket<'static>,
        to: PublicKey,
        arrived_on: usize,
        first: bool,
    ) {
        let id = (msg.queue_id, msg.seq_no);
        let (src, digest) = (msg.src_pk, msg.digest());
        if !first {
            let reserved = self.config.max_ack_tasks / 4;
            if self.ack_permits.available_permits() <= reserved {
                tracing::debug!("ACK dropped: ACK tasks reserved for first copies");
                return;
            }
            let Ok(permit) = self.ack_permits.clone().try_acquire_owned() else {
                return;
            };
            let inner = self.clone();
            self.acks.spawn(async move {
                let _permit = permit;
                if let Some(bytes) = inner.keep(src, id, digest, ack, arrived_on) {
                    inner.publish_on(arrived_on, &to, &bytes);
                }
            });
            return;
        }
        let Some(bytes) = self.keep(src, id, digest, ack, arrived_on) else {
            return;
        };
        // Bounded work per inbound MSG: with every permit taken (brokers
        // slow to connect, a flood), this ACK goes out only on the link
        // the MSG came by; the sender's resend is answered from the kept
        // bytes.
        let Ok(permit) = self.ack_permits.clone().try_acquire_owned() else {
            tracing::debug!("ACK walk dropped: too many ACKs under way");
            self.publish_on(arrived_on, &to, &bytes);
            return;
        };
        let inner = self.clone();
        self.acks.spawn(async move {
            let _permit = permit;
            let topic = to.to_string();
            inner.publish_on(arrived_on, &to, &bytes);
            // Never waiting on a link's queue: a full one (a broker not
            // reading) drops this ACK there, as a datagram would be.
            let mut sent = vec![arrived_on];
            let publish = |link: BrokerLink| {
                // Once per broker: the MSG often arrived on the sender's own set.
                if !sent.contains(&link.id()) {
                    sent.push(link.id());
                    let result = link.try_publish(topic.as_bytes(), &bytes);
                    tracing::debug!(broker = link.broker(), ok = result.is_ok(), "ACK published");
                }
            };
            // Connects are bounded by their own timeout; this bounds the
            // task whatever the brokers do.
            let walk = inner.walk(inner.ranked_groups(&to, 0), publish);
            let _ = tokio::time::timeout(inner.config.link.connect_timeout, walk).await;
        });
    }

    /// Signs `ack` and keeps it for copies of the MSG (src, id, digest),
    /// as sent on `arrived_on` just now.
    fn keep(
        &self,
        src: [u8; 33],
        id: ([u8; 32], u32),
        digest: [u8; keyway_core::signature::DIGEST_LEN],
        mut ack: AppPacket<'static>,
        arrived_on: usize,
    ) -> Option<Arc<[u8]>> {
        ack.sign(&self.key);
        let mut bytes = vec![0u8; ack.encoded_len()];
        ack.encode(&mut bytes).ok()?;
        let bytes: Arc<[u8]> = bytes.into();
        self.signed_acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                src,
                id,
                digest,
                bytes.clone(),
                Some((arrived_on, Instant::now())),
            );
        Some(bytes)
    }

    /// Publishes an ACK to `to` on the link numbered `id`, if it is up,
    /// never waiting on its queue.
    fn publish_on(&self, id: usize, to: &PublicKey, bytes: &[u8]) {
        if let Some(link) = self.live_link(id) {
            let result = link.try_publish(to.to_string().as_bytes(), bytes);
            tracing::debug!(broker = link.broker(), ok = result.is_ok(), "ACK published");
        }
    }
}

/// A claim on connecting to one broker, released when dropped (also when
/// the connecting future is cancelled).
struct Connecting {
    set: Arc<Mutex<std::collections::HashSet<String>>>,
    address: String,
}

impl Connecting {
    fn claim(set: &Arc<Mutex<std::collections::HashSet<String>>>, address: &str) -> Option<Self> {
        let fresh = set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address.to_owned());
        fresh.then(|| Self {
            set: set.clone(),
            address: address.to_owned(),
        })
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.address);
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
            to_verify: Mutex::new(std::array::from_fn(|_| VerifyQueue::new(VERIFY_QUEUE))),
            handlers: Mutex::new(handler.into_iter().collect()),
            acks: TaskTracker::new(),
            ack_permits: Arc::new(Semaphore::new(max_ack_tasks)),
            backoff: Mutex::new(HashMap::new()),
            connecting: Arc::new(Mutex::new(std::collections::HashSet::new())),
            last_used: Mutex::new(HashMap::new()),
            hints: Mutex::new(hints),
            signed_acks: Mutex::new(AckCache::new(ack_cache_sources)),
            started: Instant::now(),
            get_time: Arc::new(get_time),
            keys: Mutex::new(HashMap::new()),
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
        SmartPipe {
            inner: self.inner.clone(),
            dest,
            hints: Vec::new(),
            use_cache: true,
            cache_expiry: None,
        }
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

/// Sends to one destination.
#[derive(Clone)]
pub struct SmartPipe {
    inner: Arc<Inner>,
    dest: PublicKey,
    /// Brokers to publish on first (and always try), e.g. where the
    /// destination said it listens.
    hints: Vec<BrokerEntry>,
    /// Whether brokers remembered in the hint cache are tried too.
    use_cache: bool,
    /// Remembered brokers older than this are not tried (the cache's own
    /// expiry still applies).
    cache_expiry: Option<Duration>,
}

impl std::fmt::Debug for SmartPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartPipe")
            .field("dest", &self.dest)
            .finish_non_exhaustive()
    }
}

impl SmartPipe {
    /// Publishes on `hints` first: the fast path when the destination's
    /// brokers are known (they need not be in the pool). The destination's
    /// ranking is still used as well. All are connected at once, so only
    /// the first 16 (with any the hint cache remembers) are used.
    #[must_use]
    pub fn with_hints(mut self, hints: Vec<BrokerEntry>) -> Self {
        self.hints = hints;
        self
    }

    /// Whether to try the brokers the hint cache remembers for the
    /// destination (default: yes, when the Router has a cache file).
    #[must_use]
    pub fn use_cache(mut self, use_cache: bool) -> Self {
        self.use_cache = use_cache;
        self
    }

    /// Tries only remembered brokers seen within `expiry`.
    #[must_use]
    pub fn cache_expiry(mut self, expiry: Duration) -> Self {
        self.cache_expiry = Some(expiry);
        self
    }

    /// Sends `data` and waits for the destination's ACK, publishing on the
    /// top of its ranking and again every `resend_every`, each time further
    /// down it (1, 3, 7… brokers more per family, up to the 10 a reference
    /// node may listen on), until acknowledged or `timeout` passes.
    pub async fn send(&self, data: &[u8], timeout: Duration) -> Result<(), RouterError> {
        let inner = &self.inner;
        if inner.closed.is_cancelled() {
            return Err(RouterError::Closed);
        }
        let max = inner.config.max_message;
        if data.len() + keyway_core::sidewire::app_packet::HEADER_LEN > max {
            return Err(RouterError::TooLarge {
                len: data.len(),
                max,
            });
        }
        let mut queue_id = [0u8; 32];
        UnwrapErr(getrandom::SysRng).fill_bytes(&mut queue_id);
        let mut packet = AppPacket::new(queue_id, 0, inner.now(), MsgType::Msg, data);
        packet.sign(&inner.key);
        let mut bytes = vec![0u8; packet.encoded_len()];
        packet
            .encode(&mut bytes)
            .map_err(|_| RouterError::TooLarge {
                len: data.len(),
                max,
            })?;
        let (done_tx, mut done) = oneshot::channel();
        inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((queue_id, 0), (*self.dest.as_bytes(), done_tx));
        // Removed however this future ends, cancellation included.
        let _pending = PendingGuard {
            inner,
            id: (queue_id, 0),
        };
        let topic = self.dest.to_string();
        let now = tokio::time::Instant::now();
        // A timeout too long to add (Duration::MAX) waits for the ACK
        // alone, rather than panic.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        let mut attempt: u32 = 0;
        loop {
            let remembered = if self.use_cache {
                let hints = inner.hints.lock().unwrap_or_else(|e| e.into_inner());
                hints.hints(&topic, inner.now(), self.cache_expiry.map(|d| d.as_secs()))
            } else {
                Vec::new()
            };
            // Every hint, then the destination's set, then 1, 3, 7… brokers
            // more per family with each resend: a Keyway destination also
            // listens on a spare (in case its set is unreachable from here
            // but not from it), and a reference destination subscribed
            // wherever its connects finished first, anywhere in the top 10
            // it raced (spec §10 item 10), so only widening is sure to
            // reach it; doubling covers the bundled pool's top 10 by the
            // fourth publish, within the default 4 s timeout.
            let extra = (1usize << attempt.min(4)) - 1;
            attempt += 1;
            let hints: Vec<&BrokerEntry> = self
                .hints
                .iter()
                .chain(&remembered)
                .take(MAX_HINTS)
                .collect();
            let mut groups = vec![(hints, usize::MAX)];
            groups.extend(inner.ranked_groups(&self.dest, extra));
            let wait = tokio::time::Instant::now()
                .checked_add(inner.config.resend_every)
                .map_or(deadline, |t| t.min(deadline));
            // All connected in parallel, each link given the packet as soon
            // as it is up and never waited on (a full queue skips it until
            // the next resend): no broker delays the others or this send
            // past `wait`. Connects still going on then finish in the
            // background, for the next attempt.
            let mut published = Vec::new();
            let publish = inner.walk(groups, |link| {
                // Once per broker, though a hint may also rank high.
                if !published.contains(&link.id()) {
                    published.push(link.id());
                    let _ = link.try_publish(topic.as_bytes(), &bytes);
                }
            });
            let attempt_over = async {
                let _ = tokio::time::timeout_at(wait, publish).await;
                tokio::time::sleep_until(wait).await;
            };
            tokio::select! {
                _ = &mut done => break Ok(()),
                () = inner.closed.cancelled() => break Err(RouterError::Closed),
                () = attempt_over => {
                    if tokio::time::Instant::now() >= deadline {
                        break Err(RouterError::Timeout(timeout));
                    }
                }
            }
        }
    }
}

/// A send's entry in [`Inner::pending`], removed when the send ends or
/// its future is dropped (a caller's timeout, a cancelled awaitable).
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: MessageId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
