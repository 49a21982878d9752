//! The firmware side of "namebump client + sidewire node with 3 broker
//! links" (issue 14's budget), statically sized and with no heap: the
//! core's machines (namebump client exchange, three MQTT sessions, the
//! sidewire node) and the buffers a firmware keeps for them, driven the way
//! a shell drives them. The network is a [`Network`]: the thumb image
//! (`src/bin/firmware.rs`) reads it from opaque memory so that every path
//! is linked, and the host measurement (`src/bin/stack.rs`) answers as a
//! namebump server, brokers and a peer node would.
//!
//! Until `keyway-embassy` lands this stands in for it (the brief of issue
//! 14 part B): the same machines, without embassy-net's own buffers.
#![no_std]
#![forbid(unsafe_code)]

use core::time::Duration;

use keyway_core::Keypair;
use keyway_core::PublicKey;
use keyway_core::mqtt::{self, Session, SessionConfig};
use keyway_core::namebump::client::{
    Behavior, Event as NbEvent, Exchange, Families, Outcome, Policy, TRANSMIT_LEN, Target,
};
use keyway_core::rand_core::CryptoRng;
use keyway_core::sidewire::node::ack_cache::SourceAcks;
use keyway_core::sidewire::node::{
    Event, LinkId, Node, NodeConfig, NodeTables, PoolBroker, PoolSlice, Screened, Transmit,
};
use keyway_core::sidewire::rendezvous::{AF_INET, Ranking};
use keyway_core::sidewire::{AppPacket, Peer, Slot};
use keyway_core::time::Instant;

/// Broker links the node keeps (issue 14: "3 broker links").
pub const LINKS: usize = 3;
/// Largest sidewire packet sent or accepted (the node checks it before
/// any signature work).
pub const MAX_MESSAGE: usize = 1024;
/// Each link's MQTT inbox and outbox: one largest packet, its topic and
/// MQTT header, with room for control packets.
pub const LINK_BUFFER: usize = MAX_MESSAGE + 192;
/// Sends waiting for their ACK at once (each keeps its signed packet).
pub const SENDS: usize = 2;
/// Packets queued per class for a signature check.
pub const QUEUED: usize = 4;
/// Sources whose signed ACKs are kept for re-sending: a device talks to a
/// few peers (each source's slot holds four ACKs, about 1.3 KB); a copy
/// from another source gets a freshly signed ACK instead.
pub const ACK_SOURCES: usize = 2;
/// Brokers tracked for backoff, and destinations whose hints are kept:
/// the three of the pool and a few hint brokers; a few peers (the node's
/// default, 64, is a server's).
pub const BROKERS_TRACKED: usize = 8;
/// Brokers one publish reaches: a destination's remembered hints (at most
/// 4) and the pool's three.
pub const TARGETS: usize = 8;
/// Publishes waiting for the shell: every send on every link, and an ACK
/// on each (one input's worth; the shell drains them after each input).
pub const OUTBOX: usize = LINKS * (SENDS + 1);
/// ACKs on their way to a sender's set waiting for connects.
pub const ACK_WALKS: usize = 4;

/// The sidewire node with the tables and capacities a small device chooses.
pub type FirmwareNode = Node<
    PoolSlice<'static>,
    [Slot; 64],
    [u64; 256],
    [Peer; 16],
    [SourceAcks; ACK_SOURCES],
    LINKS,
    SENDS,
    QUEUED,
    BROKERS_TRACKED,
    TARGETS,
    OUTBOX,
    ACK_WALKS,
>;
/// One broker link's MQTT session.
pub type Link = Session<[u8; LINK_BUFFER], [u8; LINK_BUFFER]>;

/// The brokers the measurement's node ranks (addresses of a device's LAN).
pub const POOL: [PoolBroker<'static>; 3] = [
    PoolBroker {
        host: "10.77.0.1",
        weight: 1.0,
        af: AF_INET,
    },
    PoolBroker {
        host: "10.77.0.3",
        weight: 1.0,
        af: AF_INET,
    },
    PoolBroker {
        host: "10.77.0.4",
        weight: 1.0,
        af: AF_INET,
    },
];

/// A node on [`POOL`] with empty tables.
pub fn node<R: CryptoRng + ?Sized>(key: Keypair, rng: &mut R) -> FirmwareNode {
    let tables = NodeTables {
        slots: [Slot::EMPTY; 64],
        watermarks: [0; 256],
        peers: [Peer::EMPTY; 16],
        acks: [SourceAcks::EMPTY; ACK_SOURCES],
    };
    let pool = PoolSlice {
        brokers: &POOL,
        ranking: Ranking::Compatible,
    };
    let config = NodeConfig {
        max_message: MAX_MESSAGE,
        ..NodeConfig::default()
    };
    Node::new(key, pool, config, tables, rng, Instant::ZERO)
}

/// The bytes of each part of [`Firmware`] on the target it is built for:
/// the whole state, the node (with its tables), one MQTT link, the
/// namebump exchange, and the node's four caller-sized tables.
pub const STATE_SIZES: [u32; 5] = [
    size_of::<Firmware>() as u32,
    size_of::<FirmwareNode>() as u32,
    size_of::<Link>() as u32,
    size_of::<Exchange>() as u32,
    (size_of::<[Slot; 64]>()
        + size_of::<[u64; 256]>()
        + size_of::<[Peer; 16]>()
        + size_of::<[SourceAcks; ACK_SOURCES]>()) as u32,
];

/// Everything the firmware keeps: the machines and their buffers.
pub struct Firmware {
    pub key: Keypair,
    pub node: FirmwareNode,
    pub links: [Option<(LinkId, Link)>; LINKS],
    pub exchange: Option<Exchange>,
    /// A namebump request going out, or its reply coming in.
    pub datagram: [u8; TRANSMIT_LEN],
    /// The packet of the send in flight (the node names it, the shell keeps it).
    pub sending: [u8; MAX_MESSAGE],
    /// A payload being checked, or an ACK going out.
    pub scratch: [u8; MAX_MESSAGE],
    /// Bytes a link wrote, or the broker's answer.
    pub wire: [u8; LINK_BUFFER],
}

impl core::fmt::Debug for Firmware {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Firmware").finish_non_exhaustive()
    }
}

/// What the firmware exchanges bytes with.
pub trait Network {
    /// A sealed namebump request goes out; the sealed reply is written to
    /// `reply` and its length returned.
    fn namebump(&mut self, request: &[u8], reply: &mut [u8]) -> usize;
    /// Link `link` wrote `written` (MQTT); whatever its broker sends back
    /// is written to `reply` and its length returned.
    fn mqtt(&mut self, link: u64, written: &[u8], reply: &mut [u8]) -> usize;
}

/// Where a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    NamebumpEncode,
    NamebumpNoReply,
    NamebumpOutcome,
    LinkOpen,
    LinkHandshake,
    Send,
    SendNotAcked,
    NothingDelivered,
}

impl Firmware {
    pub fn new<R: CryptoRng + ?Sized>(key: Keypair, rng: &mut R) -> Self {
        Self {
            node: node(key.clone(), rng),
            key,
            links: [None, None, None],
            exchange: None,
            datagram: [0; TRANSMIT_LEN],
            sending: [0; MAX_MESSAGE],
            scratch: [0; MAX_MESSAGE],
            wire: [0; LINK_BUFFER],
        }
    }

    /// Puts `name` = `value` at the namebump server `server`.
    pub fn put<N: Network, R: CryptoRng + ?Sized>(
        &mut self,
        net: &mut N,
        rng: &mut R,
        server: PublicKey,
        name: &[u8],
        value: &[u8],
        unix: f64,
    ) -> Result<(), Step> {
        self.start_put(server, name, value)?;
        let Some(exchange) = self.exchange.as_mut() else {
            return Err(Step::NamebumpEncode);
        };
        let now = Instant::ZERO;
        let transmit = exchange
            .poll_transmit(now, unix, rng, &mut self.datagram)
            .ok_or(Step::NamebumpEncode)?;
        let n = net.namebump(&self.datagram[..transmit.len], &mut self.scratch);
        exchange.handle_datagram(now, unix, transmit.leg, &self.scratch[..n]);
        for _ in 0..8 {
            match exchange.poll_event() {
                Some(NbEvent::Done(Outcome::Stored)) => return Ok(()),
                Some(NbEvent::Done(_)) => return Err(Step::NamebumpOutcome),
                Some(_) => {}
                None => return Err(Step::NamebumpNoReply),
            }
        }
        Err(Step::NamebumpNoReply)
    }

    /// Builds the PUT's exchange into [`Self::exchange`]. A frame of its
    /// own: the exchange passes through temporaries on its way there (a
    /// few KiB each), which must not stay on the stack under the
    /// signature and ECIES work that follows.
    #[inline(never)]
    fn start_put(&mut self, server: PublicKey, name: &[u8], value: &[u8]) -> Result<(), Step> {
        let target = Target {
            key: server,
            families: Families::V4,
        };
        self.exchange = None;
        match Exchange::put(
            name,
            value,
            &self.key,
            Behavior::Bump,
            None,
            Policy::default(),
            target,
        ) {
            Ok(exchange) => {
                self.exchange = Some(exchange);
                Ok(())
            }
            Err(_) => Err(Step::NamebumpEncode),
        }
    }

    /// Opens every link the node asks for: MQTT CONNECT and SUBSCRIBE to
    /// the node's topic, then the node hears the link is up.
    pub fn connect<N: Network, R: CryptoRng>(
        &mut self,
        net: &mut N,
        rng: &mut R,
        unix: u64,
    ) -> Result<(), Step> {
        let now = Instant::ZERO;
        self.node.handle_timeout(now, unix);
        for _ in 0..4 * LINKS {
            let Some(Transmit::Connect { link, .. }) =
                self.node.poll_transmit(now, &mut self.scratch)
            else {
                break;
            };
            let index = self.open_link(link, rng)?;
            let Some((_, session)) = self.links[index].as_mut() else {
                return Err(Step::LinkOpen);
            };
            // CONNECT, then SUBSCRIBE once the CONNACK is in.
            let mut subscribed = false;
            for _ in 0..4 {
                let n = flush(session, &mut self.wire);
                let m = net.mqtt(link.0, &self.wire[..n], &mut self.scratch);
                session.handle_received(now, &self.scratch[..m]);
                while let Some(event) = session.poll_event() {
                    subscribed |= matches!(event, mqtt::Event::Subscribed { .. });
                }
                if subscribed {
                    break;
                }
            }
            if !subscribed {
                return Err(Step::LinkHandshake);
            }
            self.node.handle_link_up(now, unix, link);
        }
        Ok(())
    }

    /// Builds link `link`'s session in a free place of [`Self::links`],
    /// subscribed to the node's topic. A frame of its own, for the same
    /// reason as [`Self::start_put`]: the session's buffers pass through
    /// temporaries on their way there.
    #[inline(never)]
    fn open_link<R: CryptoRng>(&mut self, link: LinkId, rng: &mut R) -> Result<usize, Step> {
        let now = Instant::ZERO;
        let index = self
            .links
            .iter()
            .position(Option::is_none)
            .ok_or(Step::LinkOpen)?;
        let id = Link::random_client_id(rng);
        let mut session = Session::new(
            now,
            SessionConfig::default(),
            &id,
            [0; LINK_BUFFER],
            [0; LINK_BUFFER],
        )
        .map_err(|_| Step::LinkOpen)?;
        session
            .handle_subscribe(now, self.node.topic(), mqtt::QoS::AtLeastOnce)
            .map_err(|_| Step::LinkOpen)?;
        session.handle_connected(now);
        self.links[index] = Some((link, session));
        Ok(index)
    }

    /// Sends `data` to `dest` and waits for its ACK; then takes the
    /// messages the brokers hold for us and ACKs them. Returns how many
    /// were delivered.
    pub fn exchange_messages<N: Network, R: CryptoRng + ?Sized>(
        &mut self,
        net: &mut N,
        rng: &mut R,
        dest: &[u8; 33],
        data: &[u8],
        unix: u64,
    ) -> Result<usize, Step> {
        let now = Instant::ZERO;
        let (send, len) = self
            .node
            .send(
                now,
                unix,
                dest,
                data,
                &[],
                Duration::from_secs(4),
                rng,
                &mut self.sending,
            )
            .map_err(|_| Step::Send)?;
        let mut acked = false;
        let mut delivered = 0;
        for _ in 0..16 {
            self.pump(net, now, unix, len, &mut delivered);
            while let Some(event) = self.node.poll_event() {
                acked |= event == Event::SendAcked(send);
            }
            if acked && delivered > 0 {
                return Ok(delivered);
            }
        }
        Err(if acked {
            Step::NothingDelivered
        } else {
            Step::SendNotAcked
        })
    }

    /// Drains the node's transmits onto the links, and what the brokers
    /// answer back into the node.
    fn pump<N: Network>(
        &mut self,
        net: &mut N,
        now: Instant,
        unix: u64,
        sending: usize,
        delivered: &mut usize,
    ) {
        let mut topic = [0u8; 66];
        for _ in 0..16 {
            let Some(transmit) = self.node.poll_transmit(now, &mut self.scratch) else {
                break;
            };
            let (link, to, payload) = match transmit {
                Transmit::PublishSend { link, to, .. } => (link, to, &self.sending[..sending]),
                Transmit::PublishAck { link, to, len } => (link, to, &self.scratch[..len]),
                Transmit::Connect { .. } | Transmit::Disconnect { .. } => continue,
            };
            let Ok(topic) = base16ct::lower::encode(&to, &mut topic) else {
                continue;
            };
            if let Some((_, session)) = self.links.iter_mut().flatten().find(|(l, _)| *l == link) {
                let _ = session.handle_publish(now, topic, mqtt::QoS::AtLeastOnce, payload);
            }
        }
        for i in 0..LINKS {
            let Some((link, session)) = &mut self.links[i] else {
                continue;
            };
            let link = *link;
            let n = flush(session, &mut self.wire);
            let m = net.mqtt(link.0, &self.wire[..n], &mut self.scratch);
            session.handle_received(now, &self.scratch[..m]);
            // Each PUBLISH for us: screened, checked, then applied.
            while let Some(event) = session.poll_event() {
                let mqtt::Event::Message { topic, payload } = event else {
                    continue;
                };
                let Some(kept) = self.wire.get_mut(..payload.len()) else {
                    continue;
                };
                kept.copy_from_slice(payload);
                if !matches!(
                    self.node.handle_message(now, unix, link, topic, kept),
                    Screened::Queued { .. }
                ) {
                    continue;
                }
                while let Some((_, link)) = self.node.poll_verify() {
                    let valid = AppPacket::decode(kept).is_ok_and(|p| p.verify().is_ok());
                    if let Some(d) = self.node.handle_verified(now, unix, link, kept, valid) {
                        *delivered += usize::from(!d.data.is_empty());
                    }
                }
            }
        }
    }
}

/// Everything `session` has to write, into `out`; returns the length.
fn flush(session: &mut Link, out: &mut [u8]) -> usize {
    let now = Instant::ZERO;
    let mut n = 0;
    while let Some(t) = session.poll_transmit(now, out.get_mut(n..).unwrap_or_default()) {
        n += t.len;
        session.handle_written(now);
        if n >= out.len() {
            break;
        }
    }
    n
}
