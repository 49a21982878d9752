//! Calls every keyway-core API family from a `no_std` context.
//!
//! Built as a staticlib (`tests/run.sh`), it proves the machines need
//! neither std nor an allocator: a std or alloc dependency anywhere would
//! collide with this crate's own panic handler or fail to link. Its tests
//! (`cargo test --manifest-path tests/no-std-check/Cargo.toml`) then run
//! every function here, so each machine is not only compiled without a
//! heap but seen to work that way.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(not(test))]
use core::panic::PanicInfo;

mod sidewire_node;
pub use sidewire_node::node_round_trip;
#[cfg(feature = "link")]
mod link_session;
#[cfg(feature = "link")]
pub use link_session::link_round_trip;
#[cfg(feature = "registry")]
mod registry_codec;
#[cfg(feature = "registry")]
pub use registry_codec::registry_round_trip;

use keyway_core::Keypair;
use keyway_core::drayer;
use keyway_core::ecies;
use keyway_core::mqtt;
use keyway_core::namebump::freshness::check_freshness;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::tcp_framing::{MAX_SEALED_REQUEST, SealedStream};
use keyway_core::namebump::{Op, Packet, reply};
use keyway_core::rand_core::{TryCryptoRng, TryRng};
use keyway_core::rate::{RateLimit, TokenBucket};
use keyway_core::sidewire::rendezvous::{self, Broker, Ranked, Ranking};
use keyway_core::sidewire::screen::{Peer, Screen, ScreenLimits};
use keyway_core::sidewire::{AppPacket, MsgType, Receiver, Slot, Verdict};

/// The link machine needs a heap (its feature brings `alloc`): a bump
/// allocator over static memory, as small firmware would use. Only in the
/// `link` build, so the default build still proves the rest needs none.
#[cfg(all(any(feature = "link", feature = "registry"), not(test)))]
#[global_allocator]
static HEAP: static_alloc::Bump<[u8; 1 << 20]> = static_alloc::Bump::uninit();

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}

/// A firmware would read its hardware RNG here.
pub(crate) struct CounterRng(pub(crate) u64);

impl TryRng for CounterRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}

impl TryCryptoRng for CounterRng {}

/// Signs, seals, opens and verifies one PUT; returns 0 on success.
pub fn put_round_trip(seed: u64, now: f64) -> u8 {
    let mut rng = CounterRng(seed);
    let owner = Keypair::generate(&mut rng);
    let server = Keypair::generate(&mut rng);
    let mut put = Packet::new(Op::Put, 7, now, b"name", b"value");
    if put.sign(&owner).is_err() {
        return 1;
    }
    let mut plain = [0u8; MAX_PACKET_LEN];
    let Ok(n) = put.encode(&mut plain) else {
        return 2;
    };
    let mut sealed = [0u8; ecies::sealed_len(MAX_PACKET_LEN)];
    let Ok(m) = ecies::seal(server.public(), &plain[..n], &mut rng, &mut sealed) else {
        return 3;
    };
    let mut opened = [0u8; MAX_PACKET_LEN + ecies::BLOCK_LEN];
    let Ok(received) = ecies::open(&server, &sealed[..m], &mut opened) else {
        return 4;
    };
    let Ok(request) = Packet::decode(received) else {
        return 5;
    };
    if request.verify_self_signed().is_err() {
        return 6;
    }
    if check_freshness(now, request.updated, request.ttl).is_err() {
        return 7;
    }
    // The same request through the TCP stream reader, one ECDH per message.
    let mut stream = SealedStream::new();
    stream.push(&sealed[..m]);
    let mut out = [0u8; MAX_SEALED_REQUEST];
    if !matches!(stream.next_message(&server, &mut out), Ok(Some(_))) {
        return 8;
    }
    // A reply sealed with a reused ephemeral key, and a rate limit.
    let echo = reply::echo(&request, server.public());
    let Ok(n) = echo.encode(&mut plain) else {
        return 9;
    };
    let sealing = ecies::Sealing::new(owner.public(), &Keypair::generate(&mut rng));
    if sealing.seal(&plain[..n], &[7u8; 16], &mut sealed).is_err() {
        return 10;
    }
    let limit = RateLimit {
        rate: 1.0,
        burst: 1.0,
    };
    let mut bucket = TokenBucket::new(&limit, now);
    if !bucket.try_take(&limit, now) || bucket.try_take(&limit, now) {
        return 11;
    }
    0
}

/// Signs a sidewire message, frames it as an MQTT PUBLISH, reads it back,
/// ranks a pool and runs the receiver; returns 0 on success.
pub fn sidewire_round_trip(seed: u64, now: u64) -> u8 {
    let mut rng = CounterRng(seed);
    let sender = Keypair::generate(&mut rng);
    let dest = Keypair::generate(&mut rng);
    let mut packet = AppPacket::new([1; 32], 0, now, MsgType::Msg, b"hello");
    packet.sign(&sender);
    let mut app = [0u8; 256];
    let Ok(n) = packet.encode(&mut app) else {
        return 1;
    };
    let mut topic = [0u8; 66];
    // The topic is the destination key's lower-case hex.
    let Ok(topic) = base16ct::lower::encode(dest.public().as_bytes(), &mut topic) else {
        return 2;
    };
    let mut frame = [0u8; 512];
    let Ok(m) = mqtt::encode_publish(topic, mqtt::QoS::AtLeastOnce, 1, &app[..n], &mut frame)
    else {
        return 3;
    };
    let Ok(Some((mqtt::Packet::Publish { payload, .. }, _))) = mqtt::decode(&frame[..m], 1024)
    else {
        return 4;
    };
    let Ok(received) = AppPacket::decode(payload) else {
        return 5;
    };
    let mut screen = Screen::new([Peer::EMPTY; 4], [0x5a; 16], ScreenLimits::default(), 0.0);
    if screen.admit(&received.src_pk, 0.0).is_none() {
        return 6;
    }
    if received.verify().is_err() {
        screen.failed(&received.src_pk, 0.0);
        return 6;
    }
    screen.verified(&received.src_pk, 0.0);
    let mut receiver = Receiver::new([Slot::EMPTY; 8], [0u64; 16], [0x5a; 16]);
    if !matches!(receiver.on_packet(&received, now), Verdict::Deliver { .. }) {
        return 7;
    }
    let pool = [
        Broker {
            host: "a",
            weight: 1.0,
        },
        Broker {
            host: "b",
            weight: 1.0,
        },
    ];
    let mut scratch = [Ranked::default(); 2];
    let ranked = rendezvous::rank(
        rendezvous::AF_INET,
        dest.public().as_bytes(),
        &pool,
        Ranking::Compatible,
        &mut scratch,
    );
    if ranked.len() != 2 || rendezvous::set_size(pool.len()) != 1 {
        return 8;
    }
    // Drayer: sign and verify a record's 136-byte string.
    let owner = drayer::SigningKey::from_bytes(&[7u8; 32]);
    let value = b"world";
    let mut record = drayer::Meta::new(1, 10, 10, 0, 0, "hello", "obj", drayer::hash(value));
    record.sign(&owner);
    if record.verify(&owner.verifying_key()).is_err() || record.check_value(value).is_err() {
        return 9;
    }
    0
}

/// Drives the MQTT session machine through a handshake and one QoS 1
/// delivery with array buffers and no allocator; returns 0 on success.
pub fn mqtt_session_round_trip(seed: u64) -> u8 {
    use keyway_core::mqtt::{Event, Session, SessionConfig};
    use keyway_core::time::Instant;
    let mut rng = CounterRng(seed);
    let now = Instant::ZERO;
    let client_id = Session::<[u8; 256], [u8; 128]>::random_client_id(&mut rng);
    let Ok(mut session) = Session::new(
        now,
        SessionConfig::default(),
        &client_id,
        [0u8; 256],
        [0u8; 128],
    ) else {
        return 1;
    };
    if session.handle_subscribe(now, b"own", mqtt::QoS::AtLeastOnce) != Ok(1) {
        return 2;
    }
    session.handle_connected(now);
    let mut out = [0u8; 128];
    let Some(connect) = session.poll_transmit(now, &mut out) else {
        return 3;
    };
    if out[0] != 0x10 || connect.len < 12 {
        return 3;
    }
    session.handle_written(now);
    let mut broker = [0u8; 64];
    let mut n = 0;
    for encode in [
        |o: &mut [u8]| mqtt::encode_connack(false, 0, o),
        |o: &mut [u8]| mqtt::encode_suback(1, &[1], o),
        |o: &mut [u8]| mqtt::encode_publish(b"own", mqtt::QoS::AtLeastOnce, 7, b"hi", o),
    ] {
        let Ok(m) = encode(&mut broker[n..]) else {
            return 4;
        };
        n += m;
    }
    if session.handle_received(now, &broker[..n]) != n {
        return 5;
    }
    let mut delivered = false;
    while let Some(event) = session.poll_event() {
        if let Event::Message { payload, .. } = event {
            delivered = payload == b"hi";
        }
    }
    // SUBSCRIBE, then the PUBACK of packet 7.
    let mut sent = 0;
    while let Some(t) = session.poll_transmit(now, &mut out[sent..]) {
        sent += t.len;
        session.handle_written(now);
    }
    if !delivered || !session.is_established() || sent < 4 || out[sent - 4..sent] != [0x40, 2, 0, 7]
    {
        return 6;
    }
    0
}

/// Runs one namebump GET through the client exchange machine against a
/// hand-made server reply, in fake time, with no heap; returns 0 on success.
pub fn namebump_client_exchange(seed: u64, unix: f64) -> u8 {
    use keyway_core::namebump::client::{
        Event, Exchange, Families, Outcome, Policy, TRANSMIT_LEN, Target,
    };
    use keyway_core::time::Instant;

    let mut rng = CounterRng(seed);
    let server = Keypair::generate(&mut rng);
    let target = Target {
        key: *server.public(),
        families: Families::V4,
    };
    let Ok(mut exchange) = Exchange::get(b"name", Policy::default(), target) else {
        return 1;
    };
    let mut buf = [0u8; TRANSMIT_LEN];
    let Some(transmit) = exchange.poll_transmit(Instant::ZERO, unix, &mut rng, &mut buf) else {
        return 2;
    };
    let mut plain = [0u8; MAX_SEALED_REQUEST];
    let Ok(request) = ecies::open(&server, &buf[..transmit.len], &mut plain) else {
        return 3;
    };
    let Ok(request) = Packet::decode(request) else {
        return 4;
    };
    let Some(reply_pk) = request.reply_pk else {
        return 5;
    };
    let Ok(reply_pk) = keyway_core::PublicKey::from_bytes(&reply_pk) else {
        return 6;
    };
    let mut encoded = [0u8; MAX_PACKET_LEN];
    let Ok(n) = reply::not_found(&request, server.public()).encode(&mut encoded) else {
        return 7;
    };
    let mut sealed = [0u8; MAX_SEALED_REQUEST];
    let Ok(m) = ecies::seal(&reply_pk, &encoded[..n], &mut rng, &mut sealed) else {
        return 8;
    };
    let now = Instant::from_millis(5);
    exchange.handle_datagram(now, unix, transmit.leg, &sealed[..m]);
    // Bounded: one close per leg and one outcome.
    for _ in 0..8 {
        match exchange.poll_event() {
            Some(Event::Done(Outcome::NotFound)) => return 0,
            Some(Event::Done(_)) | None => return 9,
            Some(_) => {}
        }
    }
    10
}

/// The Drayer pull machine with no heap: a whole mirror takes two pages
/// (the second after the first's last record) and stops at an empty one;
/// returns 0 on success.
pub fn drayer_pull(start_micros: u64) -> u8 {
    use drayer::pull::{Event, Mode, PageRecord, Pull, PullLimits, Request};
    use keyway_core::time::Instant;
    let now = Instant::from_micros(start_micros);
    let mut pull = Pull::new(now, 0, Mode::Whole, PullLimits::default());
    let mut path = [0u8; 48];
    let page = |after: i64| {
        (1..=3).map(move |i| PageRecord {
            modified: after + i,
            size: drayer::pull::record_size(5, 3, 5),
        })
    };
    for expected_after in [0, 3] {
        let Some(transmit) = pull.poll_transmit(now, &mut path) else {
            return 1;
        };
        if transmit.request
            != (Request::Page {
                after: expected_after,
            })
            || transmit.len == 0
        {
            return 2;
        }
        if pull.handle_page(now, page(expected_after)) != Ok(3)
            || pull.handle_verified(now, 3, None).is_err()
            || pull.poll_event() != Some(Event::Apply { from: 0, to: 3 })
            || pull.handle_applied(now, 3, 3, None).is_err()
        {
            return 3;
        }
    }
    if pull.poll_transmit(now, &mut path).is_none()
        || pull.handle_page(now, page(6).take(0)).is_err()
    {
        return 4;
    }
    match pull.poll_event() {
        Some(Event::Done(pulled)) if pulled.inserted == 6 => 0,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    //! The test harness links std; the functions under test do not use it.
    extern crate std;

    const UNIX: u64 = 1_800_000_000;

    #[test]
    fn every_machine_runs_without_a_heap() {
        assert_eq!(super::put_round_trip(1, UNIX as f64), 0, "namebump packet");
        assert_eq!(super::sidewire_round_trip(2, UNIX), 0, "sidewire packet");
        assert_eq!(super::mqtt_session_round_trip(3), 0, "MQTT session");
        assert_eq!(
            super::namebump_client_exchange(4, UNIX as f64),
            0,
            "namebump client exchange"
        );
        assert_eq!(super::drayer_pull(5), 0, "Drayer pull");
        assert_eq!(super::node_round_trip(6, UNIX), 0, "sidewire node");
    }

    #[cfg(feature = "link")]
    #[test]
    fn the_link_machine_runs_with_alloc_and_no_std() {
        assert_eq!(super::link_round_trip(7), 0, "link round trip");
    }

    #[cfg(feature = "registry")]
    #[test]
    fn the_registry_codecs_run_with_no_std() {
        assert_eq!(
            super::registry_round_trip(8, UNIX * 1000),
            0,
            "registry round trip"
        );
    }
}
