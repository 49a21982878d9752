//! The accepting side of a node: a TCP listener, one task per connection,
//! a global connection cap, and the exponential blocklist consulted before
//! a connection gets a task (issue 16, item 4).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use getrandom::SysRng;
use keyway_core::PublicKey;
use keyway_core::link::{BlockKey, Blocklist, BlocklistPolicy, Link, LinkConfig};
use keyway_core::rand_core::UnwrapErr;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::connection::{self, Handler, Observer, Traffic};

/// Connections a node holds at once unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// A peer with a link to this node, as the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Where it connected from.
    pub address: SocketAddr,
    /// The identity it proved (`None` until its proof).
    pub identity: Option<PublicKey>,
    /// How long the link has been open.
    pub age: Duration,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
}

/// A link's entry in the node's table.
struct Entry {
    address: SocketAddr,
    identity: Option<PublicKey>,
    since: tokio::time::Instant,
    traffic: Arc<Traffic>,
}

impl Entry {
    fn status(&self) -> PeerStatus {
        PeerStatus {
            address: self.address,
            identity: self.identity,
            age: self.since.elapsed(),
            bytes_in: self.traffic.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.traffic.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// What a node is doing, for a status page (`--ui`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's identity.
    pub node_pk: PublicKey,
    /// Its links, accepted ones.
    pub peers: Vec<PeerStatus>,
    /// Sources and identities on the blocklist now.
    pub blocked: usize,
}

/// A listening node.
pub struct Node {
    config: Arc<LinkConfig>,
    handler: Arc<dyn Handler>,
    clock: Clock,
    blocklist: Mutex<Blocklist>,
    slots: Arc<Semaphore>,
    peers: Mutex<BTreeMap<u64, Entry>>,
    next_id: AtomicU64,
}

impl core::fmt::Debug for Node {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("node_pk", self.config.identity.public())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data under these locks stays consistent at every await-free step.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Node {
    /// A node serving `handler` to peers, holding at most
    /// `max_connections` links at once.
    pub fn new(
        config: Arc<LinkConfig>,
        handler: Arc<dyn Handler>,
        max_connections: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            handler,
            clock: Clock::new(),
            blocklist: Mutex::new(Blocklist::new(BlocklistPolicy::DEFAULT)),
            slots: Arc::new(Semaphore::new(max_connections)),
            peers: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// A snapshot for a status page.
    pub fn status(&self) -> NodeStatus {
        let now = self.clock.now();
        let blocked = {
            let mut blocklist = lock(&self.blocklist);
            blocklist.expire(now);
            blocklist.len()
        };
        NodeStatus {
            node_pk: *self.config.identity.public(),
            peers: lock(&self.peers).values().map(Entry::status).collect(),
            blocked,
        }
    }

    /// Whether `key` (a source before a proof, an identity after) is on
    /// the blocklist now.
    pub fn is_blocked(&self, key: &BlockKey) -> bool {
        lock(&self.blocklist).is_blocked(key, self.clock.now())
    }

    /// How long `key` stays on the blocklist, if it is on it.
    pub fn blocked_for(&self, key: &BlockKey) -> Option<Duration> {
        let now = self.clock.now();
        lock(&self.blocklist)
            .blocked_until(key, now)
            .map(|until| until.saturating_duration_since(now))
    }

    /// Accepts connections on `listener` for ever (until the task is
    /// dropped). A source on the blocklist, or one beyond the connection
    /// cap, is closed at once: no byte of it is read.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (socket, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let now = self.clock.now();
            {
                let mut blocklist = lock(&self.blocklist);
                blocklist.expire(now);
                if blocklist.is_blocked(&BlockKey::Address(from.ip()), now) {
                    tracing::debug!(%from, "blocklisted source: closed");
                    continue;
                }
            }
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                tracing::debug!(%from, "connection cap reached: closed");
                continue;
            };
            let _ = socket.set_nodelay(true);
            let node = self.clone();
            tokio::spawn(async move {
                let id = node.next_id.fetch_add(1, Ordering::Relaxed);
                let traffic = Arc::new(Traffic::default());
                lock(&node.peers).insert(
                    id,
                    Entry {
                        address: from,
                        identity: None,
                        since: tokio::time::Instant::now(),
                        traffic: traffic.clone(),
                    },
                );
                let link = Link::new_responder(
                    node.config.clone(),
                    node.clock.now(),
                    &mut UnwrapErr(SysRng),
                );
                let observer = Arc::new(Watch {
                    node: node.clone(),
                    id,
                });
                let (reason, peer) = connection::run(
                    link,
                    socket,
                    node.clock,
                    node.handler.clone(),
                    Some(observer),
                    None,
                    traffic,
                )
                .await;
                lock(&node.peers).remove(&id);
                node.closed(from.ip(), peer.as_ref(), reason.penalised());
                tracing::debug!(%from, %reason, "link closed");
                drop(slot);
            });
        }
    }

    fn closed(&self, ip: IpAddr, peer: Option<&PublicKey>, penalised: bool) {
        if !penalised {
            return;
        }
        // Before the proof only the source address is known; after it, the
        // identity answers for what it did (issue 16, item 4).
        let key = peer.map_or(BlockKey::Address(ip), BlockKey::identity);
        lock(&self.blocklist).penalise(key, self.clock.now());
    }
}

/// Records a link's proven identity and refuses blocklisted identities.
struct Watch {
    node: Arc<Node>,
    id: u64,
}

impl Observer for Watch {
    fn connected(&self, peer: &PublicKey) -> bool {
        if self.node.is_blocked(&BlockKey::identity(peer)) {
            return false;
        }
        if let Some(status) = lock(&self.node.peers).get_mut(&self.id) {
            status.identity = Some(*peer);
        }
        true
    }
}
