//! The link machine driven against itself (and against hand-built hostile
//! peers) in memory: no sockets, fake time (issue 16, item 9).
#![cfg(feature = "link")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::link::frame::Frame;
use keyway_core::link::noise::{self, KEY_LEN};
use keyway_core::link::snow::{HandshakeState, TransportState};
use keyway_core::link::wire::{self, MAX_WIRE_FRAME};
use keyway_core::link::{
    AllowList, BlockKey, Blocklist, BlocklistPolicy, Capability, CloseReason, Event, Limit, Limits,
    Link, LinkConfig, NetworkKey, Refusal, Service,
};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::time::Instant;

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

const T0: Instant = Instant::from_secs(1_000);

fn config(
    identity: &Keypair,
    psk: &NetworkKey,
    allow: AllowList,
    limits: Limits,
) -> Arc<LinkConfig> {
    Arc::new(LinkConfig {
        identity: identity.clone(),
        network_key: psk.clone(),
        allow,
        limits,
    })
}

/// Two nodes: `a` dials `b`. `b` lets `a` send messages.
struct Net {
    a_id: Keypair,
    b_id: Keypair,
    psk: NetworkKey,
}

impl Net {
    fn new() -> Self {
        Self {
            a_id: Keypair::generate(&mut rng()),
            b_id: Keypair::generate(&mut rng()),
            psk: NetworkKey::generate(&mut rng()),
        }
    }

    fn b_allows(&self, caps: &[Capability]) -> AllowList {
        let mut allow = AllowList::new();
        if !caps.is_empty() {
            allow.allow(self.a_id.public(), caps.iter().copied());
        }
        allow
    }

    fn pair(&self, caps: &[Capability], limits: Limits) -> (Link, Link) {
        self.pair_with(caps, limits, limits)
    }

    /// [`Self::pair`] with limits of each side's own.
    fn pair_with(&self, caps: &[Capability], a_limits: Limits, b_limits: Limits) -> (Link, Link) {
        let a = Link::new_initiator(
            config(&self.a_id, &self.psk, AllowList::new(), a_limits),
            *self.b_id.public(),
            T0,
            &mut rng(),
        );
        let b = Link::new_responder(
            config(&self.b_id, &self.psk, self.b_allows(caps), b_limits),
            T0,
            &mut rng(),
        );
        (a, b)
    }
}

/// Every frame `from` has to send now, each as its own wire frame.
fn drain(from: &mut Link, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; MAX_WIRE_FRAME];
    let mut frames = Vec::new();
    for _ in 0..100_000 {
        match from.poll_transmit(now, &mut buf) {
            Some(n) => frames.push(buf[..n].to_vec()),
            None => return frames,
        }
    }
    panic!("poll_transmit never ran dry");
}

/// Moves frames both ways until neither side has anything to send;
/// returns how many frames went a→b and b→a.
fn pump(a: &mut Link, b: &mut Link, now: Instant) -> (usize, usize) {
    let (mut ab, mut ba) = (0, 0);
    for _ in 0..10_000 {
        let to_b = drain(a, now);
        let to_a = drain(b, now);
        if to_b.is_empty() && to_a.is_empty() {
            return (ab, ba);
        }
        ab += to_b.len();
        ba += to_a.len();
        for f in &to_b {
            b.handle_input(now, f);
        }
        for f in &to_a {
            a.handle_input(now, f);
        }
    }
    panic!("links never went quiet");
}

fn events(link: &mut Link) -> Vec<Event> {
    std::iter::from_fn(|| link.poll_event())
        .take(100_000)
        .collect()
}

fn connected(net: &Net, caps: &[Capability], limits: Limits) -> (Link, Link) {
    let (mut a, mut b) = net.pair(caps, limits);
    pump(&mut a, &mut b, T0);
    assert_eq!(
        events(&mut a),
        [Event::Connected {
            peer: *net.b_id.public()
        }]
    );
    assert_eq!(
        events(&mut b),
        [Event::Connected {
            peer: *net.a_id.public()
        }]
    );
    (a, b)
}

#[test]
fn peers_connect_and_exchange_fragmented_messages() {
    let net = Net::new();
    let (mut a, mut b) = connected(&net, &[Capability::Message], Limits::DEFAULT);
    assert_eq!(a.peer_identity(), Some(net.b_id.public()));
    assert_eq!(b.peer_identity(), Some(net.a_id.public()));
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    assert_ne!(a.handshake_hash(), &[0; 32]);

    // 300 kB needs five Noise messages each way.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let id = a.send_request(Service::Message, body.clone()).unwrap();
    let (ab, _) = pump(&mut a, &mut b, T0);
    assert_eq!(ab, 5);
    let Some(Event::Request {
        id: got,
        service,
        body: received,
    }) = b.poll_event()
    else {
        panic!("no request");
    };
    assert_eq!((got, service), (id, Service::Message));
    assert_eq!(received, body);
    let reply: Vec<u8> = received.iter().rev().copied().collect();
    b.send_response(got, reply.clone()).unwrap();
    pump(&mut a, &mut b, T0);
    assert_eq!(events(&mut a), [Event::Response { id, body: reply }]);
    // An answered request cannot be answered twice.
    assert!(b.send_response(got, vec![]).is_err());
    // Small messages both ways, including an empty body.
    let id2 = a.send_request(Service::Message, Vec::new()).unwrap();
    pump(&mut a, &mut b, T0);
    assert!(
        matches!(b.poll_event(), Some(Event::Request { id, ref body, .. }) if id == id2 && body.is_empty())
    );
    assert_eq!(a.buffered_bytes(), 0);
}

#[test]
fn input_split_into_single_bytes_is_the_same_stream() {
    let net = Net::new();
    let (mut a, mut b) = net.pair(&[Capability::Message], Limits::DEFAULT);
    let now = T0;
    for _ in 0..10 {
        let to_b: Vec<u8> = drain(&mut a, now).concat();
        let to_a: Vec<u8> = drain(&mut b, now).concat();
        if to_b.is_empty() && to_a.is_empty() {
            break;
        }
        for byte in to_b {
            b.handle_input(now, &[byte]);
        }
        for byte in to_a {
            a.handle_input(now, &[byte]);
        }
    }
    assert!(a.is_connected() && b.is_connected());
}

#[test]
fn a_wrong_network_key_fails_before_any_application_byte() {
    let net = Net::new();
    let other_psk = NetworkKey::generate(&mut rng());
    let mut a = Link::new_initiator(
        config(&net.a_id, &other_psk, AllowList::new(), Limits::DEFAULT),
        *net.b_id.public(),
        T0,
        &mut rng(),
    );
    let mut b = Link::new_responder(
        config(
            &net.b_id,
            &net.psk,
            net.b_allows(&[Capability::Message]),
            Limits::DEFAULT,
        ),
        T0,
        &mut rng(),
    );
    a.send_request(Service::Message, b"secret".to_vec())
        .unwrap();
    let (ab, ba) = pump(&mut a, &mut b, T0);
    // Only the three handshake messages moved: no proof, no request.
    assert_eq!((ab, ba), (2, 1));
    assert_eq!(b.close_reason(), Some(CloseReason::HandshakeFailed));
    assert!(b.close_reason().unwrap().penalised());
    assert_eq!(
        events(&mut b),
        [Event::Closed(CloseReason::HandshakeFailed)]
    );
    // The acceptor hangs up; the dialer reports a failed handshake.
    a.handle_eof(T0);
    assert_eq!(
        events(&mut a),
        [Event::Closed(CloseReason::HandshakeFailed)]
    );
    assert_eq!(a.close_reason().unwrap().to_string(), "handshake failed");
}

/// A raw Noise initiator (the network's PSK, but no Link around it).
fn raw_initiator(psk: &NetworkKey) -> HandshakeState {
    let mut secret = [0u8; KEY_LEN];
    let mut eph = [0u8; KEY_LEN];
    getrandom::fill(&mut secret).unwrap();
    getrandom::fill(&mut eph).unwrap();
    noise::handshake_with(true, noise::PROLOGUE, &secret, eph, psk.as_bytes()).unwrap()
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// Runs a raw initiator's handshake against `b`, returning its transport.
fn raw_handshake(psk: &NetworkKey, b: &mut Link) -> (TransportState, Vec<Vec<u8>>) {
    let mut hs = raw_initiator(psk);
    let mut buf = vec![0u8; 1024];
    let mut sent = Vec::new();
    let n = hs.write_message(&[], &mut buf).unwrap();
    sent.push(framed(&buf[..n]));
    b.handle_input(T0, &sent[0]);
    let msg2 = drain(b, T0);
    assert_eq!(msg2.len(), 1);
    let mut payload = [0u8; 64];
    hs.read_message(&msg2[0][2..], &mut payload).unwrap();
    let n = hs.write_message(&[], &mut buf).unwrap();
    sent.push(framed(&buf[..n]));
    b.handle_input(T0, &sent[1]);
    (hs.into_transport_mode().unwrap(), sent)
}

#[test]
fn a_replayed_handshake_is_rejected() {
    let net = Net::new();
    let (mut a, mut b) = net.pair(&[Capability::Message], Limits::DEFAULT);
    let mut recorded = Vec::new();
    for _ in 0..4 {
        let to_b = drain(&mut a, T0);
        recorded.extend(to_b.iter().cloned());
        for f in &to_b {
            b.handle_input(T0, f);
        }
        for f in drain(&mut b, T0) {
            a.handle_input(T0, &f);
        }
    }
    assert!(b.is_connected());
    // recorded: msg1, msg3, a's proof. Replay them to a fresh acceptor.
    assert_eq!(recorded.len(), 3);
    let mut fresh = Link::new_responder(
        config(
            &net.b_id,
            &net.psk,
            net.b_allows(&[Capability::Message]),
            Limits::DEFAULT,
        ),
        T0,
        &mut rng(),
    );
    fresh.handle_input(T0, &recorded[0]);
    assert_eq!(drain(&mut fresh, T0).len(), 1, "msg2 with a new ephemeral");
    fresh.handle_input(T0, &recorded[1]);
    assert_eq!(fresh.close_reason(), Some(CloseReason::HandshakeFailed));
    assert!(
        !events(&mut fresh)
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
    );
}

#[test]
fn a_proof_from_another_session_is_refused() {
    let net = Net::new();
    let (mut a, mut b) = net.pair(&[Capability::Message], Limits::DEFAULT);
    pump(&mut a, &mut b, T0);
    assert!(b.is_connected());
    // An insider (right PSK) replays a's identity proof in its own session.
    let mut victim = Link::new_responder(
        config(
            &net.b_id,
            &net.psk,
            net.b_allows(&[Capability::Message]),
            Limits::DEFAULT,
        ),
        T0,
        &mut rng(),
    );
    let (mut transport, _) = raw_handshake(&net.psk, &mut victim);
    assert_eq!(drain(&mut victim, T0).len(), 1, "victim's own proof");
    let sig = keyway_core::link::proof::sign_proof(
        &net.a_id,
        keyway_core::link::proof::Role::Initiator,
        a.handshake_hash(),
        &[0u8; 32],
    );
    let mut plain = [0u8; 128];
    let n = Frame::Proof {
        key: net.a_id.public().as_bytes(),
        signature: &sig,
    }
    .encode(&mut plain)
    .unwrap();
    let mut out = vec![0u8; 256];
    let m = transport.write_message(&plain[..n], &mut out).unwrap();
    victim.handle_input(T0, &framed(&out[..m]));
    assert_eq!(victim.close_reason(), Some(CloseReason::BadProof));
    assert!(victim.peer_identity().is_none());
}

#[test]
fn a_relay_terminating_noise_cannot_pass_on_the_proofs() {
    // R knows the network key and has its own statics: it accepts A's
    // dial (A means to reach B) and dials B itself, then forwards B's
    // identity proof to A.
    let net = Net::new();
    let (mut a, mut b) = net.pair_with(&[Capability::Message], Limits::DEFAULT, Limits::DEFAULT);
    // R ↔ B: R is the raw initiator.
    let (mut r_to_b, _) = raw_handshake(&net.psk, &mut b);
    let b_proof = drain(&mut b, T0);
    assert_eq!(b_proof.len(), 1);
    let mut plain = vec![0u8; 256];
    let n = r_to_b.read_message(&b_proof[0][2..], &mut plain).unwrap();
    let proof_plain = plain[..n].to_vec();
    assert!(matches!(
        Frame::decode(&proof_plain),
        Ok(Frame::Proof { .. })
    ));
    // A ↔ R: R is a raw responder.
    let mut secret = [0u8; KEY_LEN];
    let mut eph = [0u8; KEY_LEN];
    getrandom::fill(&mut secret).unwrap();
    getrandom::fill(&mut eph).unwrap();
    let mut r_hs =
        noise::handshake_with(false, noise::PROLOGUE, &secret, eph, net.psk.as_bytes()).unwrap();
    let mut buf = vec![0u8; 1024];
    let msg1 = drain(&mut a, T0);
    r_hs.read_message(&msg1[0][2..], &mut buf).unwrap();
    let n = r_hs.write_message(&[], &mut buf).unwrap();
    a.handle_input(T0, &framed(&buf[..n]));
    let msg3 = drain(&mut a, T0);
    assert_eq!(msg3.len(), 1, "A sends msg3 and waits for the proof");
    r_hs.read_message(&msg3[0][2..], &mut plain).unwrap();
    let mut r_to_a = r_hs.into_transport_mode().unwrap();
    let m = r_to_a.write_message(&proof_plain, &mut buf).unwrap();
    a.handle_input(T0, &framed(&buf[..m]));
    assert_eq!(a.close_reason(), Some(CloseReason::BadProof));
    // A never proved itself to anyone.
    assert!(drain(&mut a, T0).is_empty());
    // B, waiting for a proof that never comes, times out.
    b.handle_timeout(T0 + Limits::DEFAULT.handshake_timeout);
    assert_eq!(b.close_reason(), Some(CloseReason::Timeout));
}

#[test]
fn a_relay_forwarding_bytes_reaches_the_wrong_identity() {
    // A means to reach C; the relay forwards its bytes to B. B proves B,
    // A hangs up without proving itself, and B does not penalise A.
    let net = Net::new();
    let c = Keypair::generate(&mut rng());
    let mut a = Link::new_initiator(
        config(&net.a_id, &net.psk, AllowList::new(), Limits::DEFAULT),
        *c.public(),
        T0,
        &mut rng(),
    );
    let mut b = Link::new_responder(
        config(
            &net.b_id,
            &net.psk,
            net.b_allows(&[Capability::Message]),
            Limits::DEFAULT,
        ),
        T0,
        &mut rng(),
    );
    a.send_request(Service::Message, b"for C only".to_vec())
        .unwrap();
    pump(&mut a, &mut b, T0);
    assert_eq!(
        a.close_reason(),
        Some(CloseReason::WrongPeerIdentity {
            expected: *c.public(),
            proved: *net.b_id.public()
        })
    );
    assert!(!a.close_reason().unwrap().penalised());
    assert!(
        a.close_reason()
            .unwrap()
            .to_string()
            .starts_with("wrong peer identity")
    );
    assert!(b.peer_identity().is_none());
    assert!(
        !events(&mut b)
            .iter()
            .any(|e| matches!(e, Event::Request { .. }))
    );
    b.handle_eof(T0);
    assert_eq!(b.close_reason(), Some(CloseReason::PeerClosed));
    assert!(!b.close_reason().unwrap().penalised());
}

#[test]
fn a_peer_without_the_capability_is_refused_with_no_data() {
    let net = Net::new();
    let stream = [7u8; 32];
    let (mut a, mut b) = connected(&net, &[Capability::Sync(stream)], Limits::DEFAULT);
    let msg = a.send_request(Service::Message, b"hello".to_vec()).unwrap();
    let mut other = vec![8u8; 32];
    other.extend_from_slice(b"page 0");
    let wrong_stream = a.send_request(Service::Sync, other).unwrap();
    let reg = a
        .send_request(Service::RegistryWrite, b"x".to_vec())
        .unwrap();
    let mut mine = stream.to_vec();
    mine.extend_from_slice(b"page 0");
    let ok = a.send_request(Service::Sync, mine.clone()).unwrap();
    pump(&mut a, &mut b, T0);
    // Only the authorized request reaches B's application.
    assert_eq!(
        events(&mut b),
        [Event::Request {
            id: ok,
            service: Service::Sync,
            body: mine
        }]
    );
    assert_eq!(
        events(&mut a),
        [
            Event::Refused {
                id: msg,
                reason: Refusal::NotAuthorized
            },
            Event::Refused {
                id: wrong_stream,
                reason: Refusal::NotAuthorized
            },
            Event::Refused {
                id: reg,
                reason: Refusal::NotAuthorized
            },
        ]
    );
    assert_eq!(Refusal::NotAuthorized.to_string(), "not authorized");
}

#[test]
fn a_peer_not_on_the_allow_list_is_refused() {
    let net = Net::new();
    let (mut a, mut b) = connected(&net, &[], Limits::DEFAULT);
    let id = a.send_request(Service::Message, b"hi".to_vec()).unwrap();
    pump(&mut a, &mut b, T0);
    assert!(events(&mut b).is_empty());
    assert_eq!(
        events(&mut a),
        [Event::Refused {
            id,
            reason: Refusal::NotAuthorized
        }]
    );
    // And a dialer serves nothing to an acceptor it has not listed.
    let back = b.send_request(Service::Message, b"hi".to_vec()).unwrap();
    pump(&mut a, &mut b, T0);
    assert_eq!(
        events(&mut b),
        [Event::Refused {
            id: back,
            reason: Refusal::NotAuthorized
        }]
    );
}

#[test]
fn sync_star_grants_every_stream() {
    let net = Net::new();
    let (mut a, mut b) = connected(&net, &[Capability::SyncAll], Limits::DEFAULT);
    let id = a.send_request(Service::Sync, vec![3u8; 40]).unwrap();
    let short = a.send_request(Service::Sync, vec![3u8; 10]).unwrap();
    pump(&mut a, &mut b, T0);
    assert!(matches!(&events(&mut b)[..], [Event::Request { id: got, .. }] if *got == id));
    assert_eq!(
        events(&mut a),
        [Event::Refused {
            id: short,
            reason: Refusal::NotAuthorized
        }]
    );
}

#[test]
fn concurrent_requests_and_rate_are_capped() {
    let net = Net::new();
    let limits = Limits {
        concurrent_requests: 2,
        request_rate: keyway_core::rate::RateLimit {
            rate: 1.0,
            burst: 4.0,
        },
        ..Limits::DEFAULT
    };
    let generous = Limits {
        concurrent_requests: 100,
        ..Limits::DEFAULT
    };
    let (mut a, mut b) = net.pair_with(&[Capability::Message], generous, limits);
    let ids: Vec<u32> = (0..6)
        .map(|i| a.send_request(Service::Message, vec![i]).unwrap())
        .collect();
    pump(&mut a, &mut b, T0);
    let got: Vec<Event> = events(&mut b);
    assert_eq!(got.len(), 3, "connected + two requests: {got:?}");
    let refused = events(&mut a);
    assert_eq!(
        refused[1..],
        [
            Event::Refused {
                id: ids[2],
                reason: Refusal::Busy
            },
            Event::Refused {
                id: ids[3],
                reason: Refusal::Busy
            },
            Event::Refused {
                id: ids[4],
                reason: Refusal::RateLimited
            },
            Event::Refused {
                id: ids[5],
                reason: Refusal::RateLimited
            },
        ]
    );
    // Answering frees a slot; a second later the bucket has a token.
    b.send_response(ids[0], vec![]).unwrap();
    let later = T0 + Duration::from_secs(1);
    pump(&mut a, &mut b, later);
    let again = a.send_request(Service::Message, vec![9]).unwrap();
    pump(&mut a, &mut b, later);
    assert!(matches!(&events(&mut b)[..], [Event::Request { id, .. }] if *id == again));
    // The sender's own cap stops it before the peer has to.
    let small = Limits {
        concurrent_requests: 1,
        ..Limits::DEFAULT
    };
    let (mut c, _) = net.pair(&[], small);
    c.send_request(Service::Message, vec![]).unwrap();
    assert_eq!(
        c.send_request(Service::Message, vec![]),
        Err(keyway_core::link::SendError::TooManyRequests)
    );
}

#[test]
fn an_oversize_message_closes_the_link() {
    let net = Net::new();
    let strict = Limits {
        max_message_len: 100_000,
        ..Limits::DEFAULT
    };
    let (mut a, mut b) = net.pair_with(&[Capability::Message], Limits::DEFAULT, strict);
    a.send_request(Service::Message, vec![0; 100_001]).unwrap();
    pump(&mut a, &mut b, T0);
    assert_eq!(
        b.close_reason(),
        Some(CloseReason::LimitExceeded(Limit::MessageSize))
    );
    assert!(b.close_reason().unwrap().penalised());
    assert!(
        !events(&mut b)
            .iter()
            .any(|e| matches!(e, Event::Request { .. }))
    );
    // Its own cap stops a sender from queueing such a message.
    assert_eq!(
        b.send_request(Service::Message, vec![0; 100_001]),
        Err(keyway_core::link::SendError::Closed)
    );
    let (mut c, _) = net.pair(&[], strict);
    assert_eq!(
        c.send_request(Service::Message, vec![0; 100_001]),
        Err(keyway_core::link::SendError::TooLarge)
    );
}

#[test]
fn an_oversize_handshake_frame_is_refused_at_its_prefix() {
    let net = Net::new();
    let (_, mut b) = net.pair(&[], Limits::DEFAULT);
    // Announces 60,000 bytes; only the prefix arrives.
    b.handle_input(T0, &60_000u16.to_be_bytes());
    assert_eq!(b.close_reason(), Some(CloseReason::HandshakeFailed));
    let (_, mut b) = net.pair(&[], Limits::DEFAULT);
    b.handle_input(T0, &[0, 0]);
    assert_eq!(b.close_reason(), Some(CloseReason::HandshakeFailed));
}

#[test]
fn the_pre_proof_cap_holds_after_the_handshake() {
    let net = Net::new();
    let (_, mut b) = net.pair(&[Capability::Message], Limits::DEFAULT);
    let _transport = raw_handshake(&net.psk, &mut b);
    assert!(!b.is_closed());
    // A frame announcing more than the rest of the 4 KiB budget is refused
    // as soon as its length arrives.
    b.handle_input(T0, &4000u16.to_be_bytes());
    assert_eq!(b.close_reason(), Some(CloseReason::PreProofCap));
    assert!(b.close_reason().unwrap().penalised());
    // Within the budget, anything but a proof first is a violation.
    let (_, mut b) = net.pair(&[Capability::Message], Limits::DEFAULT);
    let (mut t2, _) = raw_handshake(&net.psk, &mut b);
    let mut plain = [0u8; 64];
    let n = Frame::Request {
        id: 1,
        service: 1,
        last: true,
        chunk: b"hi",
    }
    .encode(&mut plain)
    .unwrap();
    let mut out = [0u8; 128];
    let m = t2.write_message(&plain[..n], &mut out).unwrap();
    b.handle_input(T0, &framed(&out[..m]));
    assert_eq!(b.close_reason(), Some(CloseReason::Protocol));
    // The budget covers the handshake too: after ~100 handshake bytes, a
    // 250-byte frame overruns a 300-byte cap.
    let (_, mut b) = net.pair(
        &[Capability::Message],
        Limits {
            pre_proof_bytes: 300,
            ..Limits::DEFAULT
        },
    );
    let (_, sent) = raw_handshake(&net.psk, &mut b);
    let handshake_bytes: usize = sent.iter().map(Vec::len).sum();
    assert!(handshake_bytes < 300);
    let big = framed(&[0u8; 250]);
    b.handle_input(T0, &big);
    assert_eq!(b.close_reason(), Some(CloseReason::PreProofCap));
}

#[test]
fn a_peer_stalling_mid_handshake_hits_the_deadline() {
    let net = Net::new();
    let (mut a, mut b) = net.pair(&[], Limits::DEFAULT);
    let msg1 = drain(&mut a, T0);
    b.handle_input(T0, &msg1[0]);
    assert_eq!(drain(&mut b, T0).len(), 1);
    // The dialer never sends msg3.
    let deadline = b.poll_timeout().unwrap();
    assert_eq!(deadline, T0 + Limits::DEFAULT.handshake_timeout);
    b.handle_timeout(Instant::from_micros(deadline.as_micros() - 1));
    assert!(!b.is_closed());
    b.handle_timeout(deadline);
    assert_eq!(events(&mut b), [Event::Closed(CloseReason::Timeout)]);
    assert!(b.close_reason().unwrap().penalised());
    assert_eq!(b.poll_timeout(), None);
    // Bytes trickling in do not move the handshake deadline.
    let (mut a, mut b) = net.pair(&[], Limits::DEFAULT);
    let msg1 = drain(&mut a, T0);
    b.handle_input(T0 + Duration::from_secs(9), &msg1[0][..1]);
    b.handle_timeout(T0 + Duration::from_secs(10));
    assert_eq!(b.close_reason(), Some(CloseReason::Timeout));
}

#[test]
fn a_connected_link_times_out_when_idle() {
    let net = Net::new();
    let (mut a, _b) = connected(&net, &[], Limits::DEFAULT);
    let idle = Limits::DEFAULT.idle_timeout.unwrap();
    assert_eq!(a.poll_timeout(), Some(T0 + idle));
    a.handle_timeout(T0 + idle);
    assert_eq!(a.close_reason(), Some(CloseReason::IdleTimeout));
    assert!(!CloseReason::IdleTimeout.penalised());
}

#[test]
fn a_slow_application_is_protected_by_the_buffer_cap() {
    let net = Net::new();
    let limits = Limits {
        max_buffered_bytes: 200_000,
        ..Limits::DEFAULT
    };
    let (mut a, mut b) = net.pair_with(&[Capability::Message], Limits::DEFAULT, limits);
    pump(&mut a, &mut b, T0);
    assert!(b.wants_input());
    for _ in 0..3 {
        a.send_request(Service::Message, vec![1; 90_000]).unwrap();
    }
    // B's application polls no events: after two requests B asks the shell
    // to stop reading; a peer that keeps sending anyway breaks the cap.
    let frames = drain(&mut a, T0);
    let mut stopped_at = None;
    for (i, f) in frames.iter().enumerate() {
        if !b.wants_input() && stopped_at.is_none() {
            stopped_at = Some(i);
        }
        b.handle_input(T0, f);
    }
    assert!(stopped_at.is_some());
    assert_eq!(
        b.close_reason(),
        Some(CloseReason::LimitExceeded(Limit::BufferedBytes))
    );
}

#[test]
fn failures_feed_an_exponential_blocklist_in_fake_time() {
    let net = Net::new();
    let wrong = NetworkKey::generate(&mut rng());
    let policy = BlocklistPolicy {
        base: Duration::from_secs(1),
        max: Duration::from_secs(8),
        forget_after: Duration::from_secs(60),
        capacity: 16,
    };
    let mut blocklist = Blocklist::new(policy);
    let source = BlockKey::Address("192.0.2.7".parse().unwrap());
    let mut now = T0;
    let mut blocks = Vec::new();
    for _ in 0..5 {
        assert!(!blocklist.is_blocked(&source, now));
        let mut a = Link::new_initiator(
            config(&net.a_id, &wrong, AllowList::new(), Limits::DEFAULT),
            *net.b_id.public(),
            now,
            &mut rng(),
        );
        let mut b = Link::new_responder(
            config(&net.b_id, &net.psk, AllowList::new(), Limits::DEFAULT),
            now,
            &mut rng(),
        );
        pump(&mut a, &mut b, now);
        let reason = b.close_reason().unwrap();
        assert!(reason.penalised());
        // Before a proof, the source address is what gets blocked.
        let key = b.peer_identity().map_or(source, BlockKey::identity);
        let until = blocklist.penalise(key, now);
        blocks.push(until.saturating_duration_since(now).as_secs());
        assert!(blocklist.is_blocked(&source, now));
        now = until;
    }
    assert_eq!(blocks, [1, 2, 4, 8, 8]);
    // A minute after the last block ends, the record is gone.
    let later = now + Duration::from_secs(60);
    assert_eq!(blocklist.strikes(&source, later), 0);
    blocklist.expire(later);
    assert!(blocklist.is_empty());
}

#[test]
fn wire_frames_round_trip_the_length_prefix() {
    let msg = framed(&[5u8; 300]);
    let (body, used) = wire::split_frame(&msg, 65_535).unwrap().unwrap();
    assert_eq!((body.len(), used), (300, 302));
}

#[test]
fn refusals_to_a_peer_that_does_not_read_count_against_the_cap() {
    // A floods requests it is not authorized for and never reads the
    // refusals (B's transmit queue is never drained): B must not queue
    // refusals without bound.
    let net = Net::new();
    let generous = Limits {
        concurrent_requests: 1000,
        ..Limits::DEFAULT
    };
    let tight = Limits {
        max_buffered_bytes: 1000,
        ..Limits::DEFAULT
    };
    let mut a = Link::new_initiator(
        config(&net.a_id, &net.psk, AllowList::new(), generous),
        *net.b_id.public(),
        T0,
        &mut rng(),
    );
    let mut b = Link::new_responder(
        config(&net.b_id, &net.psk, AllowList::new(), tight),
        T0,
        &mut rng(),
    );
    pump(&mut a, &mut b, T0);
    assert!(b.is_connected());
    for _ in 0..100 {
        a.send_request(Service::Message, Vec::new()).unwrap();
    }
    let mut fed = 0;
    for frame in drain(&mut a, T0) {
        if b.is_closed() {
            break;
        }
        b.handle_input(T0, &frame);
        fed += 1;
    }
    assert_eq!(
        b.close_reason(),
        Some(CloseReason::LimitExceeded(Limit::BufferedBytes))
    );
    assert!(fed < 100, "closed after {fed} refusals");
}
