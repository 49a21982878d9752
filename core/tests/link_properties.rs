//! Properties of the link's parsers and reassembly (issue 16): frames and
//! wire prefixes decode any bytes without panicking and round-trip, any
//! split of a connected stream delivers the same messages, and hostile
//! bytes never grow a link past its caps.
#![cfg(feature = "link")]
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;

use keyway_core::Keypair;
use keyway_core::link::frame::{Frame, MAX_CHUNK};
use keyway_core::link::wire::{self, MAX_WIRE_FRAME};
use keyway_core::link::{
    AllowList, Capability, Event, Limits, Link, LinkConfig, NetworkKey, Service,
};
use keyway_core::rand_core::{TryCryptoRng, TryRng};
use keyway_core::time::Instant;
use proptest::prelude::*;

/// A deterministic RNG (splitmix64), so a failing case replays exactly.
struct TestRng(u64);

impl TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}

const T0: Instant = Instant::from_secs(50);

fn configs(seed: u64, limits: Limits) -> (Arc<LinkConfig>, Arc<LinkConfig>, Keypair) {
    let mut rng = TestRng(seed);
    let a = Keypair::generate(&mut rng);
    let b = Keypair::generate(&mut rng);
    let psk = NetworkKey::generate(&mut rng);
    let mut allow = AllowList::new();
    allow.allow(a.public(), [Capability::Message]);
    let ca = Arc::new(LinkConfig {
        identity: a,
        network_key: psk.clone(),
        allow: AllowList::new(),
        limits,
    });
    let cb = Arc::new(LinkConfig {
        identity: b.clone(),
        network_key: psk,
        allow,
        limits,
    });
    (ca, cb, b)
}

fn drain(link: &mut Link) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_WIRE_FRAME];
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match link.poll_transmit(T0, &mut buf) {
            Some(n) => out.extend_from_slice(&buf[..n]),
            None => break,
        }
    }
    out
}

/// Feeds `bytes` to `link` in pieces whose sizes cycle through `cuts`.
fn feed(link: &mut Link, bytes: &[u8], cuts: &[usize]) {
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = cuts[i % cuts.len()].clamp(1, bytes.len() - at);
        link.handle_input(T0, &bytes[at..at + n]);
        at += n;
        i += 1;
    }
}

fn frame_strategy() -> impl Strategy<Value = (u8, u32, u8, bool, Vec<u8>)> {
    (
        0u8..4,
        any::<u32>(),
        any::<u8>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn frame_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(frame) = Frame::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes.
            let mut out = vec![0u8; bytes.len()];
            let n = frame.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &bytes[..]);
        }
    }

    #[test]
    fn frames_round_trip((kind, id, byte, last, chunk) in frame_strategy()) {
        let key = [2u8; 33];
        let sig = [byte; 64];
        let frame = match kind {
            0 => Frame::Proof { key: &key, signature: &sig },
            1 => Frame::Request { id, service: byte, last, chunk: &chunk },
            2 => Frame::Response { id, last, chunk: &chunk },
            _ => Frame::Refused { id, reason: byte },
        };
        let mut out = vec![0u8; frame.encoded_len()];
        let n = frame.encode(&mut out).unwrap();
        prop_assert_eq!(Frame::decode(&out[..n]).unwrap(), frame);
        prop_assert!(chunk.len() <= MAX_CHUNK);
    }

    #[test]
    fn wire_prefixes_split_any_stream(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 0..8),
        garbage in proptest::collection::vec(any::<u8>(), 0..10),
    ) {
        let mut stream = Vec::new();
        for m in &messages {
            stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
            stream.extend_from_slice(m);
        }
        stream.extend_from_slice(&garbage);
        let mut at = 0;
        for m in &messages {
            let (got, used) = wire::split_frame(&stream[at..], 65_535).unwrap().unwrap();
            prop_assert_eq!(got, &m[..]);
            at += used;
        }
        // The trailing garbage is an incomplete or bad frame, never a panic.
        let _ = wire::split_frame(&stream[at..], 100);
    }
}

proptest! {
    // Each case runs a handshake with two ECDSA proofs: fewer cases.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_the_stream_delivers_the_same_messages(
        seed in any::<u64>(),
        bodies in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..100),
                (0usize..200_000).prop_map(|n| vec![0x5a; n]),
            ],
            1..4,
        ),
        cuts in proptest::collection::vec(1usize..70_000, 1..6),
    ) {
        let (ca, cb, b_id) = configs(seed, Limits::DEFAULT);
        let mut rng = TestRng(seed ^ 1);
        let mut a = Link::new_initiator(ca, *b_id.public(), T0, &mut rng);
        let mut b = Link::new_responder(cb, T0, &mut rng);
        let ids: Vec<u32> = bodies
            .iter()
            .map(|body| a.send_request(Service::Message, body.clone()).unwrap())
            .collect();
        for _ in 0..10 {
            let to_b = drain(&mut a);
            let to_a = drain(&mut b);
            if to_b.is_empty() && to_a.is_empty() {
                break;
            }
            feed(&mut b, &to_b, &cuts);
            feed(&mut a, &to_a, &cuts);
        }
        let requests: Vec<(u32, Vec<u8>)> = std::iter::from_fn(|| b.poll_event())
            .filter_map(|e| match e {
                Event::Request { id, body, .. } => Some((id, body)),
                _ => None,
            })
            .collect();
        let expected: Vec<(u32, Vec<u8>)> = ids.into_iter().zip(bodies).collect();
        prop_assert_eq!(requests, expected);
        prop_assert!(!b.is_closed());
    }

    #[test]
    fn hostile_bytes_after_the_handshake_stay_within_the_caps(
        seed in any::<u64>(),
        junk in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(1usize..500, 1..6),
    ) {
        let limits = Limits { max_buffered_bytes: 64 * 1024, ..Limits::DEFAULT };
        let (ca, cb, b_id) = configs(seed, limits);
        let mut rng = TestRng(seed ^ 2);
        let mut a = Link::new_initiator(ca, *b_id.public(), T0, &mut rng);
        let mut b = Link::new_responder(cb, T0, &mut rng);
        for _ in 0..4 {
            let to_b = drain(&mut a);
            feed(&mut b, &to_b, &[usize::MAX]);
            let to_a = drain(&mut b);
            feed(&mut a, &to_a, &[usize::MAX]);
        }
        prop_assert!(b.is_connected());
        feed(&mut b, &junk, &cuts);
        prop_assert!(b.buffered_bytes() <= limits.max_buffered_bytes);
        // Junk that is not a valid Noise message closes the link, and only
        // a request can reach the application (none here: forging one needs
        // the session keys).
        let delivered = std::iter::from_fn(|| b.poll_event())
            .filter(|e| matches!(e, Event::Request { .. } | Event::Response { .. }))
            .count();
        prop_assert_eq!(delivered, 0);
        if junk.len() > 2 + 16 {
            // Only a whole frame can fail; shorter junk may still be waiting.
            let len = u16::from_be_bytes([junk[0], junk[1]]) as usize;
            if len > 0 && junk.len() >= 2 + len {
                prop_assert!(b.is_closed());
            }
        }
    }

    #[test]
    fn hostile_bytes_to_an_acceptor_never_pass_the_pre_proof_cap(
        seed in any::<u64>(),
        junk in proptest::collection::vec(any::<u8>(), 0..6000),
        cuts in proptest::collection::vec(1usize..700, 1..6),
    ) {
        let (_, cb, _) = configs(seed, Limits::DEFAULT);
        let mut b = Link::new_responder(cb, T0, &mut TestRng(seed));
        feed(&mut b, &junk, &cuts);
        let _ = drain(&mut b);
        prop_assert!(b.buffered_bytes() <= Limits::DEFAULT.pre_proof_bytes);
        prop_assert!(b.peer_identity().is_none());
        prop_assert!(!b.is_connected());
    }
}
