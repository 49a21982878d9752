//! The link machine (feature `link`) with `alloc` but no std: two links
//! complete the Noise handshake and identity proofs and exchange one
//! request and its response. Built only with this crate's `link` feature,
//! which also brings the global allocator; the default build keeps proving
//! that every other machine needs no heap at all.

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec;

use keyway_core::Keypair;
use keyway_core::link::{
    AllowList, Capability, Event, Limits, Link, LinkConfig, MAX_WIRE_FRAME, NetworkKey, Service,
};
use keyway_core::time::Instant;

use crate::CounterRng;

/// Returns 0 on success, else the number of the step that failed.
pub fn link_round_trip(seed: u64) -> u32 {
    let mut rng = CounterRng(seed);
    let a = Keypair::generate(&mut rng);
    let b = Keypair::generate(&mut rng);
    let psk = NetworkKey::generate(&mut rng);
    let mut allow = AllowList::new();
    allow.allow(a.public(), [Capability::Message]);
    let now = Instant::from_secs(1);
    let b_public = *b.public();
    let config = |identity: Keypair, allow: AllowList| {
        Arc::new(LinkConfig {
            identity,
            network_key: psk.clone(),
            allow,
            limits: Limits::DEFAULT,
        })
    };
    let mut dialer = Link::new_initiator(config(a, AllowList::new()), b_public, now, &mut rng);
    let mut acceptor = Link::new_responder(config(b, allow), now, &mut rng);
    let Ok(id) = dialer.send_request(Service::Message, vec![1, 2, 3]) else {
        return 1;
    };
    let mut buf = vec![0u8; MAX_WIRE_FRAME];
    for _ in 0..8 {
        while let Some(n) = dialer.poll_transmit(now, &mut buf) {
            acceptor.handle_input(now, &buf[..n]);
        }
        while let Some(n) = acceptor.poll_transmit(now, &mut buf) {
            dialer.handle_input(now, &buf[..n]);
        }
        while let Some(event) = acceptor.poll_event() {
            if let Event::Request { id, body, .. } = event {
                if body != [1, 2, 3] || acceptor.send_response(id, vec![4]).is_err() {
                    return 2;
                }
            }
        }
        while let Some(event) = dialer.poll_event() {
            if let Event::Response { id: got, body } = event {
                return if got == id && body == [4] { 0 } else { 3 };
            }
        }
    }
    4
}
