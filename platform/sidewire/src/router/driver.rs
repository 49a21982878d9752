//! The Router's one task: it owns the core [`Node`], which makes every
//! protocol decision (which brokers, what to publish where and when,
//! backoff, idle close, ACKs, screening, delivery), and only moves bytes:
//! link events, inbound PUBLISHes and API sends go in as `handle_…(now,
//! …)`; `poll_transmit` output goes to the named broker link;
//! `poll_event` output goes back to the API; it sleeps until
//! `poll_timeout`. Signatures are checked on other tasks, in the order
//! the node gives, a bounded number at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use keyway_core::PublicKey;
use keyway_core::rand_core::UnwrapErr;
use keyway_core::sidewire::AppPacket;
use keyway_core::sidewire::app_packet::HEADER_LEN;
use keyway_core::sidewire::node::ack_cache::{ACK_LEN, SourceAcks};
use keyway_core::sidewire::node::key_cache::{KeyCache, KeySlot};
use keyway_core::sidewire::node::widening::MAX_HINTS;
use keyway_core::sidewire::node::{
    BrokerId, Event, LinkDown, LinkId, MAX_TARGETS, Node, OUTBOX, Screened, SendError, SendFailure,
    SendId, Ticket, Transmit,
};
use keyway_core::sidewire::{Peer, Slot};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::brokers::{Brokers, PoolIds};
use super::{Clock, Handler, Message, RouterConfig, RouterError};
use crate::hint_cache::{self, HintCache};
use crate::link::{BrokerLink, Inbound, LinkError};
use crate::pool::BrokerEntry;

/// Links at once, at most (own subscriptions, links opened to send, ACK
/// links to senders' sets).
pub(super) const LINKS: usize = 256;

/// Sends waiting for their ACK inside the node, at most; further sends
/// wait in [`SEND_QUEUE`], then in their callers (backpressure, bounded by
/// each send's own timeout).
pub(super) const SENDS: usize = 256;

/// Sends handed to the driver and not yet taken by the node.
pub(super) const SEND_QUEUE: usize = 64;

/// Screened packets waiting for a signature check, per class: beyond this
/// one is dropped, as UDP would (the newest of the key with the most
/// packets queued).
pub(super) const VERIFY_QUEUE: usize = 256;

/// Parsed keys kept for the verifiers.
const KEY_CACHE: usize = 1024;

/// Inbound PUBLISHes from every link waiting for the driver.
pub(super) const INBOUND_QUEUE: usize = 1024;

/// Delivered messages waiting for the handlers' thread: a slow handler
/// stops the driver (backpressure) only once this many are queued behind
/// it, instead of at once.
pub(super) const DELIVERY_QUEUE: usize = 1024;

/// The node's connect timeout beyond the link's own: the link's handshake
/// deadline ends a connect first, the node's only catches a lost report.
pub(super) const CONNECT_MARGIN: Duration = Duration::from_millis(500);

/// Brokers remembered as backing off, at most: hints name brokers outside
/// the pool, so the table must not grow without bound (when full, the
/// entry due soonest is forgotten first).
const BACKOFF_BROKERS: usize = 256;

/// ACK walks waiting for connects, at most (and at most
/// [`RouterConfig::max_ack_tasks`]).
const ACK_WALKS: usize = 64;

/// The core node over the Router's heap tables.
type RouterNode = Node<
    PoolIds,
    Box<[Slot]>,
    Box<[u64]>,
    Box<[Peer]>,
    Box<[SourceAcks]>,
    LINKS,
    SENDS,
    VERIFY_QUEUE,
    BACKOFF_BROKERS,
    MAX_TARGETS,
    OUTBOX,
    ACK_WALKS,
>;

/// A send handed to the driver.
pub(super) struct SendRequest {
    pub(super) dest: PublicKey,
    pub(super) data: Vec<u8>,
    pub(super) hints: Vec<BrokerEntry>,
    pub(super) use_cache: bool,
    pub(super) cache_expiry: Option<Duration>,
    pub(super) timeout: Duration,
    pub(super) done: oneshot::Sender<Result<(), RouterError>>,
}

/// What the API reads of the driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Status {
    /// Brokers ("host:port") with a link up.
    pub(super) brokers: Vec<String>,
    /// The node's own subscriptions up and connecting.
    pub(super) own: (usize, usize),
    /// Whether the node's timers ran once (its first subscriptions asked for).
    pub(super) joined: bool,
    /// ACK walks waiting for connects.
    pub(super) ack_walks: usize,
}

/// What the API shares with the driver.
pub(super) struct Shared {
    pub(super) handlers: Mutex<Vec<Handler>>,
    /// Rung by a send that ended on the caller's side (dropped or timed
    /// out): the driver forgets sends whose caller is gone.
    pub(super) abandoned: Notify,
    /// How long [`super::Router::close`] lets ACKs being checked go out.
    pub(super) grace: Mutex<Duration>,
}

/// A send inside the node: its signed packet, kept until it ends.
struct Sending {
    packet: Vec<u8>,
    topic: String,
    timeout: Duration,
    done: oneshot::Sender<Result<(), RouterError>>,
}

/// A signature check's outcome.
struct Checked {
    link: LinkId,
    inbound: Inbound,
    from: Option<PublicKey>,
}

/// A link's connect ended or an up link went down.
enum LinkEvent {
    Connected(LinkId, Result<BrokerLink, LinkError>),
    /// The connect was abandoned (the node closed the link first).
    Abandoned,
    Down(LinkId),
}

type LinkFuture = Pin<Box<dyn Future<Output = LinkEvent> + Send>>;

pub(super) struct Driver {
    node: Box<RouterNode>,
    brokers: Brokers,
    topic: String,
    config: RouterConfig,
    get_time: Clock,
    origin: tokio::time::Instant,
    links: HashMap<LinkId, BrokerLink>,
    connecting: HashMap<LinkId, tokio::task::AbortHandle>,
    link_events: FuturesUnordered<LinkFuture>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound: mpsc::Receiver<Inbound>,
    commands: mpsc::Receiver<SendRequest>,
    /// A send the node had no room for, retried as sends end.
    parked: Option<SendRequest>,
    sends: HashMap<SendId, Sending>,
    /// Packets queued in the node for their check, by ticket.
    queued: HashMap<Ticket, Inbound>,
    checked_tx: mpsc::Sender<Checked>,
    checked: mpsc::Receiver<Checked>,
    /// Signature checks under way, and at most how many (one per core).
    verifying: usize,
    verifiers: usize,
    keys: Arc<Mutex<KeyCache<Box<[KeySlot]>>>>,
    hints: HintCache,
    shared: Arc<Shared>,
    /// To the handlers' thread (see [`spawn_handlers`]).
    deliveries: mpsc::Sender<Message>,
    status: watch::Sender<Status>,
    links_changed: bool,
    closed: CancellationToken,
    closing: bool,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        key: keyway_core::Keypair,
        pool: crate::pool::Pool,
        config: RouterConfig,
        get_time: Clock,
        commands: mpsc::Receiver<SendRequest>,
        shared: Arc<Shared>,
        status: watch::Sender<Status>,
        closed: CancellationToken,
    ) -> Self {
        let mut rng = UnwrapErr(getrandom::SysRng);
        let origin = tokio::time::Instant::from_std(std::time::Instant::now());
        let topic = key.public().to_string();
        let node = build_node(|| {
            Box::new(Node::new(
                key.clone(),
                PoolIds(pool.clone()),
                config.node_config(CONNECT_MARGIN),
                config.node_tables(),
                &mut UnwrapErr(getrandom::SysRng),
                keyway_core::time::Instant::ZERO,
            ))
        });
        let mut key_seed = [0u8; 16];
        keyway_core::rand_core::Rng::fill_bytes(&mut rng, &mut key_seed);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let verifiers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (checked_tx, checked) = mpsc::channel(verifiers);
        let deliveries = spawn_handlers(Arc::clone(&shared));
        Self {
            node,
            brokers: Brokers::new(pool),
            topic,
            hints: HintCache::open(config.hint_cache.clone(), config.hint_expiry),
            config,
            get_time,
            origin,
            links: HashMap::new(),
            connecting: HashMap::new(),
            link_events: FuturesUnordered::new(),
            inbound_tx,
            inbound,
            commands,
            parked: None,
            sends: HashMap::new(),
            queued: HashMap::new(),
            checked_tx,
            checked,
            verifying: 0,
            verifiers,
            keys: Arc::new(Mutex::new(KeyCache::new(
                vec![KeySlot::EMPTY; KEY_CACHE].into_boxed_slice(),
                key_seed,
            ))),
            shared,
            deliveries,
            status,
            links_changed: false,
            closed,
            closing: false,
        }
    }

    /// The loop; ends when the Router is closed or every handle is gone.
    pub(super) async fn run(mut self) {
        loop {
            self.pump();
            let wake = self.node.poll_timeout().and_then(|t| self.tokio_at(t));
            let room = self.parked.is_none() && self.sends.len() < SENDS;
            let has_links = !self.link_events.is_empty();
            tokio::select! {
                () = self.closed.cancelled() => break,
                Some(checked) = self.checked.recv() => {
                    if let Some(message) = self.on_checked(checked) {
                        self.deliver(message).await;
                    }
                }
                Some(event) = self.link_events.next(), if has_links => self.on_link(event),
                Some(inbound) = self.inbound.recv() => self.on_inbound(inbound),
                command = self.commands.recv(), if room => match command {
                    Some(request) => self.on_send(request),
                    // Every Router and pipe is gone.
                    None => break,
                },
                () = sleep_until(wake) => {
                    let (now, unix) = self.clock();
                    self.node.handle_timeout(now, unix);
                    self.forget_abandoned();
                }
                () = self.shared.abandoned.notified() => self.forget_abandoned(),
            }
        }
        self.shutdown().await;
    }

    /// The node's time (from the driver's start) and the wall clock.
    fn clock(&self) -> (keyway_core::time::Instant, u64) {
        let micros = self.origin.elapsed().as_micros();
        let now =
            keyway_core::time::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX));
        (now, (self.get_time)())
    }

    /// When the node's `t` comes on tokio's clock; `None` if never.
    fn tokio_at(&self, t: keyway_core::time::Instant) -> Option<tokio::time::Instant> {
        self.origin
            .checked_add(Duration::from_micros(t.as_micros()))
    }

    /// Everything the node has to say after an input: due timers, checks
    /// to start, transmits, events; then the status the API reads.
    fn pump(&mut self) {
        let (now, unix) = self.clock();
        // Timers run even while inputs never stop arriving.
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now, unix);
        }
        self.start_checks();
        self.transmit(now, unix);
        self.events(unix);
        if self.parked.is_some() && self.sends.len() < SENDS {
            if let Some(request) = self.parked.take() {
                self.on_send(request);
            }
            self.transmit(now, unix);
        }
        self.publish_status();
    }

    fn transmit(&mut self, now: keyway_core::time::Instant, unix: u64) {
        let mut buf = [0u8; ACK_LEN];
        while let Some(t) = self.node.poll_transmit(now, &mut buf) {
            match t {
                Transmit::Connect { link, broker } => self.connect(now, unix, link, broker),
                Transmit::Disconnect { link } => {
                    // Dropping the handle sends DISCONNECT.
                    if self.links.remove(&link).is_some() {
                        self.links_changed = true;
                    }
                    if let Some(connect) = self.connecting.remove(&link) {
                        connect.abort();
                    }
                }
                Transmit::PublishSend { link, send, .. } => {
                    if let (Some(l), Some(s)) = (self.links.get(&link), self.sends.get(&send)) {
                        // Never waiting on a full link queue: the next
                        // resend tries again.
                        let result = l.try_publish(s.topic.as_bytes(), &s.packet);
                        tracing::trace!(broker = l.broker(), ok = result.is_ok(), "MSG published");
                    }
                }
                Transmit::PublishAck { link, to, len } => {
                    if let Some(l) = self.links.get(&link) {
                        let result = l.try_publish(hex(&to).as_bytes(), &buf[..len]);
                        tracing::debug!(broker = l.broker(), ok = result.is_ok(), "ACK published");
                    }
                }
            }
        }
    }

    /// Opens `link` to `broker` on a task of its own (bounded by the
    /// link's connect timeout); its outcome comes back as a [`LinkEvent`].
    fn connect(
        &mut self,
        now: keyway_core::time::Instant,
        unix: u64,
        link: LinkId,
        broker: BrokerId,
    ) {
        let address = self.brokers.get(broker).map(BrokerEntry::address);
        let (Some(address), false) = (address, self.closing) else {
            self.node
                .handle_link_down(now, unix, link, LinkDown::ConnectFailed);
            return;
        };
        let topic = self.topic.clone();
        let config = self.config.link.clone();
        let inbound = self.inbound_tx.clone();
        let number = usize::try_from(link.0).unwrap_or(usize::MAX);
        let task = tokio::spawn(async move {
            BrokerLink::connect(&address, topic.as_bytes(), number, &config, inbound).await
        });
        self.connecting.insert(link, task.abort_handle());
        self.link_events.push(Box::pin(async move {
            match task.await {
                Ok(result) => LinkEvent::Connected(link, result),
                Err(_) => LinkEvent::Abandoned,
            }
        }));
    }

    fn on_link(&mut self, event: LinkEvent) {
        let (now, unix) = self.clock();
        match event {
            LinkEvent::Abandoned => {}
            LinkEvent::Connected(link, result) => {
                if self.connecting.remove(&link).is_none() {
                    // The node gave up on it already: the handle drops.
                    return;
                }
                match result {
                    Ok(l) => {
                        self.link_events.push(Box::pin({
                            let down = l.down();
                            async move {
                                down.await;
                                LinkEvent::Down(link)
                            }
                        }));
                        self.links.insert(link, l);
                        self.links_changed = true;
                        self.node.handle_link_up(now, unix, link);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "broker unavailable");
                        self.node
                            .handle_link_down(now, unix, link, LinkDown::ConnectFailed);
                    }
                }
            }
            LinkEvent::Down(link) => {
                if let Some(l) = self.links.remove(&link) {
                    self.links_changed = true;
                    let how = LinkDown::of(l.stalled(), l.heard());
                    tracing::debug!(broker = l.broker(), ?how, "broker link down");
                    self.node.handle_link_down(now, unix, link, how);
                }
            }
        }
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let (now, unix) = self.clock();
        let link = LinkId(inbound.link as u64);
        let screened = self
            .node
            .handle_message(now, unix, link, &inbound.topic, &inbound.payload);
        if let Screened::Queued { ticket, evicted } = screened {
            if let Some(evicted) = evicted {
                self.queued.remove(&evicted);
            }
            if evicted != Some(ticket) {
                self.queued.insert(ticket, inbound);
            }
        }
    }

    /// Hands the node's most urgent packets to verifier tasks, at most
    /// one per core at once.
    fn start_checks(&mut self) {
        while self.verifying < self.verifiers {
            let Some((ticket, link)) = self.node.poll_verify() else {
                return;
            };
            let Some(inbound) = self.queued.remove(&ticket) else {
                continue;
            };
            self.verifying += 1;
            let (keys, done) = (self.keys.clone(), self.checked_tx.clone());
            tokio::spawn(async move {
                let from = AppPacket::decode(&inbound.payload).ok().and_then(|p| {
                    // Peers' keys recur, and parsing one costs a square root.
                    let from = keys
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&p.src_pk)?;
                    p.verify_as(&from).is_ok().then_some(from)
                });
                let _ = done
                    .send(Checked {
                        link,
                        inbound,
                        from,
                    })
                    .await;
            });
        }
    }

    /// Hands a delivered message to the handlers' thread; waits only when
    /// [`DELIVERY_QUEUE`] messages are already queued there. Called before
    /// the next `pump`, which signs the message's ACK: the thread wakes
    /// while the signature is made, not after.
    async fn deliver(&mut self, message: Message) {
        // An error means the thread is gone (it could not be started):
        // the message has no one to go to. A panicking handler does not end
        // it (`spawn_handlers`).
        let _ = self.deliveries.send(message).await;
    }

    /// The node's verdict on a checked packet; the message to deliver, if
    /// the node delivers it.
    fn on_checked(&mut self, checked: Checked) -> Option<Message> {
        self.verifying = self.verifying.saturating_sub(1);
        let (now, unix) = self.clock();
        let payload = &checked.inbound.payload;
        let delivery =
            self.node
                .handle_verified(now, unix, checked.link, payload, checked.from.is_some());
        let (Some(delivery), Some(from)) = (delivery, checked.from) else {
            return None;
        };
        Some(Message {
            from,
            data: payload.get(delivery.data).unwrap_or_default().to_vec(),
            queue_id: delivery.queue_id,
        })
    }

    fn on_send(&mut self, request: SendRequest) {
        if request.done.is_closed() {
            return;
        }
        let (now, unix) = self.clock();
        let dest = request.dest.to_string();
        let remembered = if request.use_cache {
            self.hints
                .hints(&dest, unix, request.cache_expiry.map(|d| d.as_secs()))
        } else {
            Vec::new()
        };
        let mut hints = Vec::with_capacity(MAX_HINTS);
        let node = &mut self.node;
        for entry in request.hints.iter().chain(&remembered) {
            if hints.len() == MAX_HINTS {
                break;
            }
            if let Some(id) = self.brokers.id(entry, |id| node.forget_broker(id))
                && !hints.contains(&id)
            {
                hints.push(id);
            }
        }
        let mut packet = vec![0u8; request.data.len().saturating_add(HEADER_LEN)];
        let sent = self.node.send(
            now,
            unix,
            request.dest.as_bytes(),
            &request.data,
            &hints,
            request.timeout,
            &mut UnwrapErr(getrandom::SysRng),
            &mut packet,
        );
        match sent {
            Ok((id, len)) => {
                packet.truncate(len);
                self.sends.insert(
                    id,
                    Sending {
                        packet,
                        topic: dest,
                        timeout: request.timeout,
                        done: request.done,
                    },
                );
            }
            Err(SendError::Full) => self.parked = Some(request),
            Err(SendError::TooLarge { len, max }) => {
                let _ = request.done.send(Err(RouterError::TooLarge { len, max }));
            }
            Err(SendError::BufferTooSmall { .. }) => {
                let max = self.config.max_message;
                let len = request.data.len();
                let _ = request.done.send(Err(RouterError::TooLarge { len, max }));
            }
        }
    }

    /// Forgets the sends whose caller stopped waiting.
    fn forget_abandoned(&mut self) {
        let node = &mut self.node;
        self.sends.retain(|id, s| {
            let live = !s.done.is_closed();
            if !live {
                node.cancel(*id);
            }
            live
        });
        if self.parked.as_ref().is_some_and(|p| p.done.is_closed()) {
            self.parked = None;
        }
    }

    fn events(&mut self, unix: u64) {
        let mut ended = Vec::new();
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::SendAcked(id) => ended.push((id, None)),
                Event::SendFailed(id, SendFailure::Timeout) => {
                    ended.push((id, Some(SendFailure::Timeout)));
                }
                Event::Reached { dest, broker } => self.remember(&dest, broker, unix),
            }
        }
        // After the hints: the sender may close the Router at once.
        for (id, failure) in ended {
            if let Some(s) = self.sends.remove(&id) {
                let result = match failure {
                    None => Ok(()),
                    Some(SendFailure::Timeout) => Err(RouterError::Timeout(s.timeout)),
                };
                let _ = s.done.send(result);
            }
        }
    }

    /// Remembers in the hint cache that `dest` answered through `broker`.
    fn remember(&mut self, dest: &[u8; 33], broker: BrokerId, unix: u64) {
        let Some(entry) = self.brokers.get(broker) else {
            return;
        };
        if self
            .hints
            .remember(&hex(dest), &entry.host, entry.port, unix)
            && let Some((path, bytes)) = self.hints.snapshot()
        {
            // Off the driver; a failed write only loses a hint.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = hint_cache::save(&path, &bytes) {
                    tracing::warn!(error = %e, path = %path.display(), "cannot save broker hints");
                }
            });
        }
    }

    fn publish_status(&mut self) {
        let links_changed = std::mem::take(&mut self.links_changed);
        let own = self.node.own_links();
        let ack_walks = self.node.ack_walks();
        let brokers = &self.brokers;
        let node = &self.node;
        self.status.send_if_modified(|s| {
            let mut modified = false;
            if links_changed {
                s.brokers = node
                    .links_up()
                    .filter_map(|(_, b)| brokers.get(b).map(BrokerEntry::address))
                    .collect();
                modified = true;
            }
            if s.own != own || s.ack_walks != ack_walks || !s.joined {
                s.own = own;
                s.ack_walks = ack_walks;
                s.joined = true;
                modified = true;
            }
            modified
        });
    }

    /// Every send ends ([`RouterError::Closed`]); packets being checked
    /// get their ACKs out within the grace; every link is dropped
    /// (DISCONNECT).
    async fn shutdown(mut self) {
        self.closing = true;
        for (_, s) in self.sends.drain() {
            let _ = s.done.send(Err(RouterError::Closed));
        }
        if let Some(p) = self.parked.take() {
            let _ = p.done.send(Err(RouterError::Closed));
        }
        self.commands.close();
        while let Ok(request) = self.commands.try_recv() {
            let _ = request.done.send(Err(RouterError::Closed));
        }
        let grace = *self.shared.grace.lock().unwrap_or_else(|e| e.into_inner());
        // A grace too long to add waits for the checks alone.
        let deadline = tokio::time::Instant::now().checked_add(grace);
        while self.verifying > 0 {
            let next = self.checked.recv();
            let checked = match deadline {
                Some(at) => tokio::time::timeout_at(at, next).await,
                None => Ok(next.await),
            };
            match checked {
                Ok(Some(checked)) => {
                    if let Some(message) = self.on_checked(checked) {
                        self.deliver(message).await;
                    }
                    let (now, unix) = self.clock();
                    self.transmit(now, unix);
                }
                _ => break,
            }
        }
        for (_, connect) in self.connecting.drain() {
            connect.abort();
        }
        self.links.clear();
        self.status.send_modify(|s| s.brokers.clear());
    }
}

/// Sleeps until `at`; for ever if `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A key as its topic: lowercase hex.
fn hex(key: &[u8; 33]) -> String {
    use std::fmt::Write;
    key.iter().fold(String::with_capacity(66), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The thread that calls the handlers, in delivery order. Handlers are
/// plain (blocking) callbacks — the Python wheel's take the GIL — so they
/// run on a thread of their own: never on the driver, whose timers, ACKs
/// and keep-alives must not wait for an application, nor on the runtime's
/// workers. It ends when the driver drops its sender.
fn spawn_handlers(shared: Arc<Shared>) -> mpsc::Sender<Message> {
    let (tx, mut rx) = mpsc::channel::<Message>(DELIVERY_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("sidewire-handlers".into())
        .spawn(move || {
            while let Some(message) = rx.blocking_recv() {
                let handlers = shared
                    .handlers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for handler in handlers {
                    // The message is already ACKed: a handler that panics
                    // must cost only its own call, not end this thread and
                    // with it every later delivery.
                    let call = std::panic::AssertUnwindSafe(|| handler(&message));
                    if std::panic::catch_unwind(call).is_err() {
                        tracing::error!(
                            "a sidewire handler panicked; later messages are still delivered"
                        );
                    }
                }
            }
        });
    if let Err(e) = spawned {
        // No thread, no handlers: deliveries fail (the receiver is gone)
        // and are dropped; say so once.
        tracing::error!(error = %e, "cannot start the sidewire handlers' thread");
    }
    tx
}

/// Stack for building the node. Its fixed tables are about 330 KB and
/// `Node::new` returns them by value (copied more than once in a debug
/// build): more than a caller's thread may have — JVM and Android threads
/// get 512 KiB to 1 MiB, and the Kotlin suite died of SIGSEGV in
/// `Router::new`.
const BUILD_STACK: usize = 16 << 20;

/// Runs `build` on a short-lived thread with [`BUILD_STACK`] (on the
/// caller's thread only if no thread can be started).
fn build_node(build: impl Fn() -> Box<RouterNode> + Sync) -> Box<RouterNode> {
    let built = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("sidewire-node-build".into())
            .stack_size(BUILD_STACK)
            .spawn_scoped(s, &build)
            .map(|t| t.join())
    });
    match built {
        Ok(Ok(node)) => node,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => build(),
    }
}
