//! The sidewire node machine with no allocator: two nodes on a two-broker
//! pool, one message and its ACK, all on the stack.

use core::time::Duration;

use keyway_core::Keypair;
use keyway_core::sidewire::node::ack_cache::SourceAcks;
use keyway_core::sidewire::node::{
    Event, Node, NodeConfig, NodeTables, PoolBroker, PoolSlice, Screened, Transmit,
};
use keyway_core::sidewire::rendezvous::{AF_INET, Ranking};
use keyway_core::sidewire::{AppPacket, Peer, Slot};
use keyway_core::time::Instant;

use crate::CounterRng;

type FirmwareNode<'p> =
    Node<PoolSlice<'p>, [Slot; 64], [u64; 256], [Peer; 16], [SourceAcks; 16], 4, 2, 4>;

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

fn node(key: Keypair, rng: &mut CounterRng) -> FirmwareNode<'static> {
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
    Node::new(key, pool, NodeConfig::default(), tables, rng, Instant::ZERO)
}

/// Brings every link the node asks for up at once.
fn connect_all(n: &mut FirmwareNode<'_>, now: Instant, unix: u64) {
    let mut buf = [0u8; 256];
    for _ in 0..16 {
        match n.poll_transmit(now, &mut buf) {
            Some(Transmit::Connect { link, .. }) => n.handle_link_up(now, unix, link),
            Some(_) => {}
            None => return,
        }
    }
}

/// A sends B a message through the machine; returns 0 on success.
pub fn node_round_trip(seed: u64, unix: u64) -> u8 {
    let mut rng = CounterRng(seed);
    let (a_key, b_key) = (Keypair::generate(&mut rng), Keypair::generate(&mut rng));
    let b_pub = *b_key.public().as_bytes();
    let mut a = node(a_key, &mut rng);
    let mut b = node(b_key, &mut rng);
    let now = Instant::ZERO;
    a.handle_timeout(now, unix);
    b.handle_timeout(now, unix);
    connect_all(&mut b, now, unix);
    let mut packet = [0u8; 256];
    let Ok((send, len)) = a.send(
        now,
        unix,
        &b_pub,
        b"hello",
        &[],
        Duration::from_secs(4),
        &mut rng,
        &mut packet,
    ) else {
        return 1;
    };
    // A's own links, and the ones to B's set, come up; the packet goes out.
    let mut buf = [0u8; 256];
    let mut published = false;
    for _ in 0..32 {
        match a.poll_transmit(now, &mut buf) {
            Some(Transmit::Connect { link, .. }) => a.handle_link_up(now, unix, link),
            Some(Transmit::PublishSend { send: s, .. }) => published |= s == send,
            Some(_) => {}
            None => break,
        }
    }
    if !published {
        return 2;
    }
    let Some((b_link, _)) = b.links_up().next() else {
        return 3;
    };
    let topic_b = *b.topic().first_chunk::<66>().unwrap_or(&[0; 66]);
    if !matches!(
        b.handle_message(now, unix, b_link, &topic_b, &packet[..len]),
        Screened::Queued { .. }
    ) {
        return 4;
    }
    let Some((_, link)) = b.poll_verify() else {
        return 5;
    };
    let valid = AppPacket::decode(&packet[..len]).is_ok_and(|p| p.verify().is_ok());
    let Some(delivery) = b.handle_verified(now, unix, link, &packet[..len], valid) else {
        return 6;
    };
    if packet.get(delivery.data) != Some(&b"hello"[..]) {
        return 7;
    }
    let Some(Transmit::PublishAck { len: ack_len, .. }) = b.poll_transmit(now, &mut buf) else {
        return 8;
    };
    let Some((a_link, _)) = a.links_up().next() else {
        return 9;
    };
    let topic_a = *a.topic().first_chunk::<66>().unwrap_or(&[0; 66]);
    let ack = &buf[..ack_len];
    if !matches!(
        a.handle_message(now, unix, a_link, &topic_a, ack),
        Screened::Queued { .. }
    ) {
        return 10;
    }
    let Some((_, link)) = a.poll_verify() else {
        return 11;
    };
    let valid = AppPacket::decode(ack).is_ok_and(|p| p.verify().is_ok());
    a.handle_verified(now, unix, link, ack, valid);
    if a.poll_event() != Some(Event::SendAcked(send)) {
        return 12;
    }
    0
}
