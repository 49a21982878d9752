//! The acceptor side of a link against a hostile dialer (issue 16).
//!
//! First byte even: the rest is raw bytes, cut into chunks, straight into
//! a fresh acceptor (the handshake parser and the pre-proof cap). Odd: the
//! harness completes a real handshake (it knows the network key), sends a
//! valid identity proof if the second byte is odd, then encrypts each
//! length-prefixed piece of the rest as one application frame — so the
//! fuzzer drives the frame handling, reassembly, authorization and limits
//! behind the encryption. The acceptor never panics, never holds more than
//! its caps, never connects without a valid proof, and hands the
//! application only requests the allow-list grants.
#![no_main]

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};

use keyway_core::Keypair;
use keyway_core::link::frame::Frame;
use keyway_core::link::noise::{self, KEY_LEN};
use keyway_core::link::proof::{self, Role};
use keyway_core::link::{
    AllowList, Capability, Event, Limits, Link, LinkConfig, MAX_WIRE_FRAME, NetworkKey, Service,
};
use keyway_core::rand_core::{TryCryptoRng, TryRng};
use keyway_core::time::Instant;
use libfuzzer_sys::fuzz_target;

/// Deterministic randomness (splitmix64), so every input replays exactly.
struct FuzzRng(u64);

impl TryRng for FuzzRng {
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
impl TryCryptoRng for FuzzRng {}

const LIMITS: Limits = Limits {
    max_message_len: 100_000,
    max_buffered_bytes: 200_000,
    ..Limits::DEFAULT
};

static DIALER: LazyLock<Keypair> =
    LazyLock::new(|| Keypair::from_secret_bytes(&[0x11; 32]).expect("valid scalar"));
static CONFIG: LazyLock<Arc<LinkConfig>> = LazyLock::new(|| {
    let mut allow = AllowList::new();
    allow.allow(DIALER.public(), [Capability::Message, Capability::Sync([7; 32])]);
    Arc::new(LinkConfig {
        identity: Keypair::from_secret_bytes(&[0x22; 32]).expect("valid scalar"),
        network_key: NetworkKey::from_bytes([0x33; 32]),
        allow,
        limits: LIMITS,
    })
});

const T0: Instant = Instant::from_secs(10);

fn drain(link: &mut Link) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; MAX_WIRE_FRAME];
    let mut out = Vec::new();
    while let Some(n) = link.poll_transmit(T0, &mut buf) {
        out.push(buf[..n].to_vec());
        assert!(out.len() < 10_000, "poll_transmit never runs dry");
    }
    out
}

fn check(link: &mut Link, proven: bool) {
    assert!(link.buffered_bytes() <= LIMITS.max_buffered_bytes);
    if !proven {
        assert!(link.peer_identity().is_none());
    }
    while let Some(event) = link.poll_event() {
        match event {
            Event::Connected { peer } => assert_eq!(&peer, DIALER.public()),
            Event::Request { service, body, .. } => {
                assert!(proven);
                assert!(
                    service == Service::Message || (service == Service::Sync && body[..32] == [7; 32]),
                    "unauthorized request delivered"
                );
            }
            _ => {}
        }
    }
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut rng = FuzzRng(u64::from(mode));
    let mut acceptor = Link::new_responder(CONFIG.clone(), T0, &mut rng);
    if mode % 2 == 0 {
        for chunk in rest.chunks(usize::from(mode / 2).max(1)) {
            acceptor.handle_input(T0, chunk);
            let _ = drain(&mut acceptor);
            check(&mut acceptor, false);
            assert!(acceptor.buffered_bytes() <= LIMITS.pre_proof_bytes);
        }
        acceptor.handle_timeout(T0 + LIMITS.handshake_timeout);
        assert!(acceptor.is_closed() && !acceptor.is_connected());
        return;
    }
    let Some((&prove, mut rest)) = rest.split_first() else {
        return;
    };
    // A real dialer's handshake.
    let mut secret = [0u8; KEY_LEN];
    let mut eph = [0u8; KEY_LEN];
    rng.try_fill_bytes(&mut secret).expect("infallible");
    rng.try_fill_bytes(&mut eph).expect("infallible");
    let mut hs = noise::handshake_with(true, noise::PROLOGUE, &secret, eph, &[0x33; 32])
        .expect("handshake state");
    let mut buf = vec![0u8; MAX_WIRE_FRAME];
    let mut plain = vec![0u8; MAX_WIRE_FRAME];
    let n = hs.write_message(&[], &mut buf).expect("msg1");
    acceptor.handle_input(T0, &framed(&buf[..n]));
    let msg2 = drain(&mut acceptor);
    hs.read_message(&msg2[0][2..], &mut plain).expect("msg2");
    let n = hs.write_message(&[], &mut buf).expect("msg3");
    acceptor.handle_input(T0, &framed(&buf[..n]));
    let hash: [u8; 32] = hs.get_handshake_hash().try_into().expect("32 bytes");
    let mut transport = hs.into_transport_mode().expect("transport");
    let acceptor_proof = drain(&mut acceptor);
    assert_eq!(acceptor_proof.len(), 1);
    let proven = prove % 2 == 1;
    if proven {
        let static_public = noise::static_public(&secret).expect("static key");
        let sig = proof::sign_proof(&DIALER, Role::Initiator, &hash, &static_public);
        let mut frame = [0u8; 128];
        let k = Frame::Proof { key: DIALER.public().as_bytes(), signature: &sig }
            .encode(&mut frame)
            .expect("proof frame");
        let m = transport.write_message(&frame[..k], &mut buf).expect("encrypt");
        acceptor.handle_input(T0, &framed(&buf[..m]));
        assert!(acceptor.is_connected());
    }
    // Each piece: u16 length, then that many plaintext bytes.
    while rest.len() >= 2 && !acceptor.is_closed() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let piece = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if piece.len() + 16 > 65_535 {
            break;
        }
        let m = transport.write_message(piece, &mut buf).expect("encrypt");
        acceptor.handle_input(T0, &framed(&buf[..m]));
        let _ = drain(&mut acceptor);
        check(&mut acceptor, proven);
    }
});
