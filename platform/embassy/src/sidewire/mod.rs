//! A sidewire node (spec §5–§6) on embassy-net: a shell around
//! [`keyway_core::sidewire::node::Node`], which decides which brokers to
//! link to (rendezvous ranking), what to publish where and when (sends,
//! resends, ACKs), backoff and reconnection, and what to deliver; each
//! link is one [`keyway_core::mqtt::Session`] (keep-alive, handshake and
//! write deadlines) over one embassy-net TCP socket.
//!
//! The shell runs the sockets and one timer, checks signatures inline (in
//! the order the node gives), and keeps each send's signed packet until
//! the send ends.
//!
//! Memory, all chosen by the application: the node's tables (inside the
//! [`Node`] it builds) and its inner capacities (`NB` brokers tracked,
//! `NT` brokers per publish, `NO` queued publishes, `NW` ACK walks: the
//! node's `B`, `T`, `O`, `W`, defaulting to a server's sizes; a device
//! with a few brokers picks small ones), `L` links each with a
//! [`SocketMemory`], an MQTT inbox and outbox of `B` bytes (the largest
//! packet a link takes or sends) and a write chunk ([`WRITE_CHUNK`]; the
//! session reads from the socket's buffer), and `S` send buffers of `B`
//! bytes.
//!
//! Files: `link` (one broker link), `happening` (what the application hears).

mod happening;
mod link;

use core::time::Duration;

use embassy_futures::select::{Either, select, select_array};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_time::Timer;
use keyway_core::PublicKey;
use keyway_core::mqtt::{Event as MqttEvent, QoS, Session, SessionConfig};
use keyway_core::rand_core::CryptoRng;
use keyway_core::sidewire::AppPacket;
use keyway_core::sidewire::node::ack_cache::{ACK_LEN, SourceAcks};
use keyway_core::sidewire::node::{
    ACK_WALKS, BROKERS_TRACKED, BrokerId, Event, LinkDown, LinkId, MAX_TARGETS, Node, OUTBOX,
    PoolView, Screened, SendError, SendId, Table, Transmit,
};
use keyway_core::sidewire::{Peer, Slot};
use keyway_core::time::{Clock, Instant};

pub use happening::Happening;
pub use link::{SocketMemory, WRITE_CHUNK};

use crate::clock::{now, to_embassy};
use link::{Io, Link, Phase, any_io};

/// Rounds of machine work one wake-up may do before waiting again: each
/// round moves at least one transmit or event, so this only bounds a
/// hostile flood's hold on the executor.
const ROUNDS: usize = 256;

/// A send's signed packet, kept until the send ends.
#[derive(Debug)]
struct SendSlot<const B: usize> {
    id: Option<SendId>,
    packet: [u8; B],
    len: usize,
}

/// The node and its links; see the module documentation.
pub struct Sidewire<
    'a,
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    C,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const NB: usize = BROKERS_TRACKED,
    const NT: usize = MAX_TARGETS,
    const NO: usize = OUTBOX,
    const NW: usize = ACK_WALKS,
> {
    node: Node<P, Sl, Wm, Pe, Ak, L, S, Q, NB, NT, NO, NW>,
    links: [Link<'a, B>; L],
    /// Where each [`BrokerId`] of the pool is reached (by index).
    endpoints: &'a [IpEndpoint],
    sends: [SendSlot<B>; S],
    session: SessionConfig,
    clock: C,
    ack: [u8; ACK_LEN],
    /// Set when the application's callback asked `run_until` to return.
    stop: bool,
    /// Set by [`Self::close`]: no new link opens.
    closing: bool,
}

impl<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    C,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const NB: usize,
    const NT: usize,
    const NO: usize,
    const NW: usize,
> core::fmt::Debug for Sidewire<'_, P, Sl, Wm, Pe, Ak, C, L, S, Q, B, NB, NT, NO, NW>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sidewire")
            .field("links", &L)
            .field("sends", &S)
            .finish_non_exhaustive()
    }
}

impl<
    'a,
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    C,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const NB: usize,
    const NT: usize,
    const NO: usize,
    const NW: usize,
> Sidewire<'a, P, Sl, Wm, Pe, Ak, C, L, S, Q, B, NB, NT, NO, NW>
where
    P: PoolView,
    Sl: Table<Slot>,
    Wm: Table<u64>,
    Pe: Table<Peer>,
    Ak: Table<SourceAcks>,
    C: Clock,
{
    /// A node on `stack`: `node` is the machine (its pool view names
    /// brokers by index into `endpoints`), `sockets` the links' TCP
    /// buffers, `session` each link's MQTT settings (its largest packet is
    /// lowered to `B`).
    pub fn new<const N: usize>(
        stack: Stack<'a>,
        node: Node<P, Sl, Wm, Pe, Ak, L, S, Q, NB, NT, NO, NW>,
        endpoints: &'a [IpEndpoint],
        sockets: &'a mut [SocketMemory<N>; L],
        session: SessionConfig,
        clock: C,
    ) -> Self {
        let links = sockets.each_mut().map(|memory| {
            let (rx, tx) = memory.buffers();
            Link::new(TcpSocket::new(stack, rx, tx))
        });
        Self {
            node,
            links,
            endpoints,
            sends: core::array::from_fn(|_| SendSlot {
                id: None,
                packet: [0; B],
                len: 0,
            }),
            session: SessionConfig {
                max_packet: session.max_packet.min(B),
                ..session
            },
            clock,
            ack: [0; ACK_LEN],
            stop: false,
            closing: false,
        }
    }

    pub fn public_key(&self) -> &PublicKey {
        self.node.public_key()
    }

    /// Links up now (each subscribed to the node's topic).
    pub fn links_up(&self) -> usize {
        self.node.links_up().count()
    }

    /// Links still connecting or in their MQTT handshake.
    pub fn links_joining(&self) -> usize {
        self.links.iter().filter(|l| !l.is_free() && !l.up).count()
    }

    /// The machine, for what this shell does not wrap.
    pub fn node(&self) -> &Node<P, Sl, Wm, Pe, Ak, L, S, Q, NB, NT, NO, NW> {
        &self.node
    }

    /// Signs `data` for `dest` and starts sending it; its end comes as
    /// [`Happening::SendAcked`] or [`Happening::SendFailed`] from
    /// [`Self::run_until`].
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        dest: &PublicKey,
        data: &[u8],
        timeout: Duration,
        rng: &mut R,
    ) -> Result<SendId, SendError> {
        let Some(slot) = self.sends.iter_mut().find(|s| s.id.is_none()) else {
            return Err(SendError::Full);
        };
        let unix = self.clock.unix_secs();
        let dest = dest.as_bytes();
        let (id, len) =
            self.node
                .send(now(), unix, dest, data, &[], timeout, rng, &mut slot.packet)?;
        slot.id = Some(id);
        slot.len = len;
        Ok(id)
    }

    /// Runs the node until `until` (or until `stop` says so after a
    /// happening), telling `on` what happens.
    pub async fn run_until<R: CryptoRng>(
        &mut self,
        until: embassy_time::Instant,
        rng: &mut R,
        on: &mut impl FnMut(Happening<'_>) -> bool,
    ) {
        self.stop = false;
        loop {
            self.work(rng, on);
            if core::mem::take(&mut self.stop) {
                return;
            }
            let now = now();
            if to_embassy(now) >= until {
                return;
            }
            let deadline = self.deadline().map_or(until, |d| to_embassy(d).min(until));
            let mut links = self.links.iter_mut();
            let io = select_array(core::array::from_fn::<_, L, _>(|_| any_io(links.next())));
            match select(io, Timer::at(deadline)).await {
                Either::First((io, index)) => self.handle_io(index, io, on),
                Either::Second(()) => self.handle_timeout(),
            }
        }
    }

    /// Says goodbye to every broker (MQTT DISCONNECT, then FIN) and runs
    /// until all links are closed or `until`. The node opens no link after
    /// this (it would replace the ones closing).
    pub async fn close<R: CryptoRng>(&mut self, until: embassy_time::Instant, rng: &mut R) {
        self.closing = true;
        let now = now();
        for link in &mut self.links {
            if let Some(session) = link.session.as_mut() {
                session.handle_disconnect(now);
            }
        }
        while self.links.iter().any(|l| !l.is_free()) && embassy_time::Instant::now() < until {
            let step = embassy_time::Instant::now() + embassy_time::Duration::from_millis(10);
            self.run_until(step.min(until), rng, &mut |_| false).await;
        }
        // A DISCONNECT counts as written once the socket holds it: wait
        // until the brokers have it (and the FIN), so that a device going
        // to sleep or a process exiting does not take it along.
        for link in &mut self.links {
            let _ = select(link.socket.flush(), Timer::at(until)).await;
        }
    }

    /// The earliest of the node's and the sessions' timers.
    fn deadline(&self) -> Option<Instant> {
        let sessions = self
            .links
            .iter()
            .filter_map(|l| l.session.as_ref().and_then(Session::poll_timeout));
        sessions.chain(self.node.poll_timeout()).min()
    }

    fn handle_timeout(&mut self) {
        let now = now();
        self.node.handle_timeout(now, self.clock.unix_secs());
        for link in &mut self.links {
            if let Some(session) = link.session.as_mut() {
                session.handle_timeout(now);
            }
        }
    }

    fn handle_io(&mut self, index: usize, io: Io, on: &mut impl FnMut(Happening<'_>) -> bool) {
        let now = now();
        let Some(link) = self.links.get_mut(index) else {
            return;
        };
        let Some(session) = link.session.as_mut() else {
            return;
        };
        match io {
            Io::Connected => {
                link.phase = Phase::Open;
                session.handle_connected(now);
            }
            Io::Wrote(n) => {
                link.stalled_read = false;
                link.written += n;
                if link.written >= link.write_len {
                    link.written = 0;
                    link.write_len = 0;
                    session.handle_written(now);
                }
            }
            Io::Lost => session.handle_closed(now),
            Io::Received(taken) => {
                let drained = self.drain_session(index, on);
                // A full inbox that gave nothing: wait for a write before
                // reading again (the bytes wait in the socket).
                self.links[index].stalled_read = taken == 0 && !drained;
            }
        }
    }

    /// Feeds a session's events to the node; whether there were any.
    fn drain_session(&mut self, index: usize, on: &mut impl FnMut(Happening<'_>) -> bool) -> bool {
        let mut any = false;
        for _ in 0..ROUNDS {
            let now = now();
            let unix = self.clock.unix_secs();
            let link = &mut self.links[index];
            let id = link.id;
            let Some(session) = link.session.as_mut() else {
                return any;
            };
            let Some(event) = session.poll_event() else {
                return any;
            };
            any = true;
            match event {
                MqttEvent::Connected => {}
                MqttEvent::Subscribed { .. } => {
                    if !link.up {
                        link.up = true;
                        self.node.handle_link_up(now, unix, id);
                    }
                }
                MqttEvent::Message { topic, payload } => {
                    self.stop |= screen(&mut self.node, now, unix, id, topic, payload, on);
                }
                MqttEvent::Closed(reason) => {
                    let how = link.finish(reason);
                    self.node.handle_link_down(now, unix, id, how);
                }
            }
        }
        any
    }

    /// Moves transmits and events between the node, the sessions and the
    /// application until nothing moves.
    fn work<R: CryptoRng>(&mut self, rng: &mut R, on: &mut impl FnMut(Happening<'_>) -> bool) {
        for _ in 0..ROUNDS {
            let mut moved = false;
            let now = now();
            let unix = self.clock.unix_secs();
            while let Some(transmit) = self.node.poll_transmit(now, &mut self.ack) {
                moved = true;
                self.transmit(now, unix, transmit, rng);
            }
            while let Some(event) = self.node.poll_event() {
                moved = true;
                self.stop |= self.event(event, on);
            }
            for index in 0..L {
                moved |= self.drain_session(index, on);
                let link = &mut self.links[index];
                if link.phase == Phase::Open
                    && link.write_len == 0
                    && let Some(session) = link.session.as_mut()
                    && let Some(t) = session.poll_transmit(now, &mut link.write)
                {
                    link.write_len = t.len;
                    link.written = 0;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn transmit<R: CryptoRng>(&mut self, now: Instant, unix: u64, transmit: Transmit, rng: &mut R) {
        match transmit {
            Transmit::Connect { link, .. } if self.closing => {
                self.node
                    .handle_link_down(now, unix, link, LinkDown::Closed);
            }
            Transmit::Connect { link, broker } => {
                if !self.open_link(now, link, broker, rng) {
                    // No slot, no address, or buffers too small: the
                    // broker backs off as if refused.
                    self.node
                        .handle_link_down(now, unix, link, LinkDown::ConnectFailed);
                }
            }
            Transmit::Disconnect { link } => {
                if let Some(session) = self.session_of(link) {
                    session.handle_disconnect(now);
                }
            }
            Transmit::PublishSend { link, to, send } => {
                let Some(slot) = self.sends.iter().position(|s| s.id == Some(send)) else {
                    return;
                };
                let topic = hex_topic(&to);
                let SendSlot { packet, len, .. } = &self.sends[slot];
                let payload = &packet[..*len];
                if let Some(l) = self.links.iter_mut().find(|l| l.id == link && !l.is_free())
                    && let Some(session) = l.session.as_mut()
                {
                    // A full outbox drops it: the next resend tries again.
                    let _ = session.handle_publish(now, &topic, QoS::AtLeastOnce, payload);
                }
            }
            Transmit::PublishAck { link, to, len } => {
                let topic = hex_topic(&to);
                let Some(ack) = self.ack.get(..len) else {
                    return;
                };
                if let Some(l) = self.links.iter_mut().find(|l| l.id == link && !l.is_free())
                    && let Some(session) = l.session.as_mut()
                {
                    // Copies are re-ACKed: a dropped ACK is not lost.
                    let _ = session.handle_publish(now, &topic, QoS::AtLeastOnce, ack);
                }
            }
        }
    }

    /// Takes a free slot for `link` to `broker`, with a new session
    /// subscribed to the node's topic; false when it cannot. Never
    /// inlined: the session is built here by value (kilobytes of buffers),
    /// and in the caller's frame that would sit under every deeper call
    /// (the node's routing, the signing).
    #[inline(never)]
    fn open_link<R: CryptoRng>(
        &mut self,
        now: Instant,
        link: LinkId,
        broker: BrokerId,
        rng: &mut R,
    ) -> bool {
        let endpoint = usize::try_from(broker.0)
            .ok()
            .and_then(|i| self.endpoints.get(i).copied());
        let slot = self.links.iter_mut().find(|l| l.is_free());
        let client_id = Session::<[u8; B]>::random_client_id(rng);
        let session = Session::new(now, self.session, &client_id, [0; B], [0; B]);
        let (Some(endpoint), Some(slot), Ok(mut session)) = (endpoint, slot, session) else {
            return false;
        };
        let subscribed = session.handle_subscribe(now, self.node.topic(), QoS::AtLeastOnce);
        if subscribed.is_ok() {
            slot.start(link, broker, endpoint, session);
        }
        subscribed.is_ok()
    }

    fn session_of(&mut self, link: LinkId) -> Option<&mut Session<[u8; B]>> {
        self.links
            .iter_mut()
            .find(|l| l.id == link && !l.is_free())
            .and_then(|l| l.session.as_mut())
    }

    fn event(&mut self, event: Event, on: &mut impl FnMut(Happening<'_>) -> bool) -> bool {
        match event {
            Event::SendAcked(id) => {
                self.release(id);
                on(Happening::SendAcked(id))
            }
            Event::SendFailed(id, why) => {
                self.release(id);
                on(Happening::SendFailed(id, why))
            }
            Event::Reached { dest, broker } => on(Happening::Reached { dest, broker }),
        }
    }

    fn release(&mut self, id: SendId) {
        for slot in &mut self.sends {
            if slot.id == Some(id) {
                slot.id = None;
                slot.len = 0;
            }
        }
    }
}

/// A PUBLISH on a link: the node screens it, the signature is checked
/// here at once (so the queue holds this packet alone), and a verified
/// MSG goes to the application; true when it asked to stop. Never
/// inlined: its frame is small, and the signature check below it.
#[inline(never)]
fn screen<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    const L: usize,
    const S: usize,
    const Q: usize,
    const NB: usize,
    const NT: usize,
    const NO: usize,
    const NW: usize,
>(
    node: &mut Node<P, Sl, Wm, Pe, Ak, L, S, Q, NB, NT, NO, NW>,
    now: Instant,
    unix: u64,
    link: LinkId,
    topic: &[u8],
    payload: &[u8],
    on: &mut impl FnMut(Happening<'_>) -> bool,
) -> bool
where
    P: PoolView,
    Sl: Table<Slot>,
    Wm: Table<u64>,
    Pe: Table<Peer>,
    Ak: Table<SourceAcks>,
{
    // The node's screening and its handling of the verdict each in a
    // frame of their own, beside the signature check, not under it: the
    // check is the deepest call of a device's task.
    if !out_of_line(|| {
        matches!(
            node.handle_message(now, unix, link, topic, payload),
            Screened::Queued { .. }
        )
    }) {
        return false;
    }
    let mut stop = false;
    while let Some((_, from)) = node.poll_verify() {
        let valid = verify(payload);
        stop |= out_of_line(|| {
            if let Some(delivery) = node.handle_verified(now, unix, from, payload, valid)
                && let Some(data) = payload.get(delivery.data)
            {
                on(Happening::Delivered {
                    from: delivery.from,
                    data,
                })
            } else {
                false
            }
        });
    }
    stop
}

/// Runs `f` in a frame of its own (never inlined), so that its
/// temporaries are not in its caller's frame under the caller's other
/// calls.
#[inline(never)]
fn out_of_line<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Whether `payload` is a signed packet whose signature holds. Never
/// inlined: the check's curve arithmetic takes kilobytes of stack, which
/// would otherwise stay in the caller's frame below the signing of the
/// ACK that follows (the deepest path of a device's stack).
#[inline(never)]
fn verify(payload: &[u8]) -> bool {
    AppPacket::decode(payload).is_ok_and(|p| p.verify().is_ok())
}

/// A key's topic: its 33 bytes in lowercase hex.
fn hex_topic(key: &[u8; 33]) -> [u8; 66] {
    let mut topic = [0u8; 66];
    // 66 bytes always hold 33 bytes of hex.
    let _ = base16ct::lower::encode(key, &mut topic);
    topic
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use core::time::Duration;

    use keyway_core::Keypair;
    use keyway_core::rand_core::UnwrapErr;
    use keyway_core::sidewire::node::{NodeConfig, NodeTables, PoolBroker, PoolSlice};
    use keyway_core::sidewire::rendezvous::{AF_INET, Ranking};

    use super::*;

    type TestNode =
        Node<PoolSlice<'static>, [Slot; 64], [u64; 256], [Peer; 16], [SourceAcks; 16], 2, 2, 4>;

    const POOL: [PoolBroker<'static>; 2] = [
        PoolBroker {
            host: "10.0.0.1",
            weight: 1.0,
            af: AF_INET,
        },
        PoolBroker {
            host: "10.0.0.2",
            weight: 1.0,
            af: AF_INET,
        },
    ];

    fn node(key: Keypair) -> TestNode {
        let tables = NodeTables {
            slots: [Slot::EMPTY; 64],
            watermarks: [0; 256],
            peers: [Peer::EMPTY; 16],
            acks: [SourceAcks::EMPTY; 16],
        };
        let pool = PoolSlice {
            brokers: &POOL,
            ranking: Ranking::Compatible,
        };
        let rng = &mut UnwrapErr(getrandom::SysRng);
        Node::new(key, pool, NodeConfig::default(), tables, rng, Instant::ZERO)
    }

    /// Brings up every link `n` asks for; returns one of them.
    fn join(n: &mut TestNode, unix: u64) -> LinkId {
        n.handle_timeout(Instant::ZERO, unix);
        let mut buf = [0u8; ACK_LEN];
        while let Some(t) = n.poll_transmit(Instant::ZERO, &mut buf) {
            if let Transmit::Connect { link, .. } = t {
                n.handle_link_up(Instant::ZERO, unix, link);
            }
        }
        n.links_up().next().unwrap().0
    }

    /// The inline check delivers a signed MSG once (of three copies) and
    /// ACKs it, and drops a forged one: the node's rules, driven the way
    /// the shell drives them.
    #[test]
    fn the_inline_check_delivers_once_acks_and_drops_forgeries() {
        let unix = 1_800_000_000;
        let rng = &mut UnwrapErr(getrandom::SysRng);
        let mut a = node(Keypair::generate(rng));
        let mut b = node(Keypair::generate(rng));
        let link = join(&mut b, unix);
        let b_pub = *b.public_key().as_bytes();
        let mut packet = [0u8; 256];
        let (_, len) = a
            .send(
                Instant::ZERO,
                unix,
                &b_pub,
                b"hi",
                &[],
                Duration::from_secs(5),
                rng,
                &mut packet,
            )
            .unwrap();
        let packet = &packet[..len];
        let topic = hex_topic(&b_pub);
        let (mut delivered, mut acks) = (0, 0);
        for _ in 0..3 {
            screen(
                &mut b,
                Instant::ZERO,
                unix,
                link,
                &topic,
                packet,
                &mut |h| {
                    if let Happening::Delivered { data, .. } = h {
                        assert_eq!(data, b"hi");
                        delivered += 1;
                    }
                    false
                },
            );
            let mut ack = [0u8; ACK_LEN];
            while let Some(t) = b.poll_transmit(Instant::ZERO, &mut ack) {
                acks += usize::from(matches!(t, Transmit::PublishAck { .. }));
            }
        }
        assert_eq!(delivered, 1, "delivered once");
        assert!(acks >= 1, "ACKed");

        // A new MSG (a new queue id) with its data changed after signing:
        // only the signature check can refuse it.
        let mut forged = [0u8; 256];
        let (_, len) = a
            .send(
                Instant::ZERO,
                unix,
                &b_pub,
                b"yo",
                &[],
                Duration::from_secs(5),
                rng,
                &mut forged,
            )
            .unwrap();
        forged[len - 1] ^= 1;
        let mut forged_delivered = 0;
        screen(
            &mut b,
            Instant::ZERO,
            unix,
            link,
            &topic,
            &forged[..len],
            &mut |h| {
                forged_delivered += usize::from(matches!(h, Happening::Delivered { .. }));
                false
            },
        );
        assert_eq!(forged_delivered, 0);
    }

    #[test]
    fn topics_are_the_keys_in_lowercase_hex() {
        let mut key = [0u8; 33];
        key[0] = 0x02;
        key[32] = 0xab;
        let topic = hex_topic(&key);
        assert_eq!(&topic[..2], b"02");
        assert_eq!(&topic[64..], b"ab");
        assert!(topic[2..64].iter().all(|&c| c == b'0'));
    }
}
