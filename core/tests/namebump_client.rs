//! The namebump client exchange machine in fake time: a fake server opens
//! each transmit with its key and answers (or not) by hand. No sockets, no
//! sleeps: every timer is checked by the instant the machine asks for.
#![allow(clippy::unwrap_used)]

use core::time::Duration;

use keyway_core::namebump::client::{
    Behavior, ErrorKind, Event, Exchange, Failure, Families, Family, Leg, LegFault, Outcome,
    Policy, TRANSMIT_LEN, Target, Transport,
};
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::reply;
use keyway_core::namebump::usage::Usage;
use keyway_core::namebump::{DONT_BUMP, MAX_VALUE_LEN, Op, Packet};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::time::Instant;
use keyway_core::{Keypair, PublicKey, ecies};

const UNIX: f64 = 1_795_000_000.0;
const UDP4: Leg = Leg::new(Transport::Udp, Family::V4);
const TCP4: Leg = Leg::new(Transport::Tcp, Family::V4);
const UDP6: Leg = Leg::new(Transport::Udp, Family::V6);
const TCP6: Leg = Leg::new(Transport::Tcp, Family::V6);

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// The server side of the test: its key, and what it received.
struct Server {
    key: Keypair,
}

/// One request as the server decrypted it.
struct Sent {
    leg: Leg,
    plain: Vec<u8>,
}

impl Sent {
    fn packet(&self) -> Packet<'_> {
        Packet::decode(&self.plain).unwrap()
    }

    fn reply_key(&self) -> PublicKey {
        PublicKey::from_bytes(&self.packet().reply_pk.unwrap()).unwrap()
    }
}

impl Server {
    fn new() -> Self {
        Self {
            key: Keypair::generate(&mut rng()),
        }
    }

    fn target(&self, families: Families) -> Target {
        Target {
            key: *self.key.public(),
            families,
        }
    }

    /// Drains every transmit due at `now`.
    fn receive(&self, ex: &mut Exchange, now: Instant) -> Vec<Sent> {
        let mut out = Vec::new();
        let mut buf = [0u8; TRANSMIT_LEN];
        // Bounded: there are at most 4 legs.
        for _ in 0..8 {
            let Some(t) = ex.poll_transmit(now, UNIX, &mut rng(), &mut buf) else {
                break;
            };
            let mut plain = [0u8; TRANSMIT_LEN];
            let p = ecies::open(&self.key, &buf[..t.len], &mut plain).unwrap();
            out.push(Sent {
                leg: t.leg,
                plain: p.to_vec(),
            });
        }
        out
    }

    fn seal(&self, to: &PublicKey, packet: &Packet<'_>) -> Vec<u8> {
        let mut plain = [0u8; MAX_PACKET_LEN];
        let n = packet.encode(&mut plain).unwrap();
        let mut sealed = vec![0u8; ecies::sealed_len(n)];
        ecies::seal(to, &plain[..n], &mut rng(), &mut sealed).unwrap();
        sealed
    }

    fn echo(&self, sent: &Sent) -> Vec<u8> {
        self.seal(
            &sent.reply_key(),
            &reply::echo(&sent.packet(), self.key.public()),
        )
    }

    fn error(&self, sent: &Sent, server_time: f64) -> Vec<u8> {
        let e = reply::error(sent.packet().pkid, server_time, self.key.public());
        self.seal(&sent.reply_key(), &e)
    }
}

fn events(ex: &mut Exchange) -> Vec<Event> {
    let mut out = Vec::new();
    for _ in 0..16 {
        match ex.poll_event() {
            Some(e) => out.push(e),
            None => break,
        }
    }
    out
}

fn done(ex: &mut Exchange) -> Option<Outcome> {
    events(ex).into_iter().find_map(|e| match e {
        Event::Done(o) => Some(o),
        _ => None,
    })
}

fn policy() -> Policy {
    Policy {
        attempts: 3,
        retry_pause: Duration::from_millis(500),
        reply_timeout: Duration::from_secs(2),
        udp: true,
    }
}

fn owner() -> Keypair {
    Keypair::generate(&mut rng())
}

/// A bumping PUT of `n` = `v` by `key`, over IPv4 only.
fn put_n(server: &Server, key: &Keypair) -> Exchange {
    Exchange::put(
        b"n",
        b"v",
        key,
        Behavior::Bump,
        None,
        policy(),
        server.target(Families::V4),
    )
    .unwrap()
}

fn legs(sent: &[Sent]) -> Vec<Leg> {
    sent.iter().map(|s| s.leg).collect()
}

#[test]
fn attempts_are_paused_and_retried_on_the_policy_s_schedule() {
    let server = Server::new();
    let mut ex = Exchange::get(b"alice", policy(), server.target(Families::V4)).unwrap();
    let mut start = ms(0);
    let mut pkids = Vec::new();
    for attempt in 1..=3u32 {
        let sent = server.receive(&mut ex, start);
        assert_eq!(legs(&sent), [UDP4, TCP4], "attempt {attempt}");
        assert_eq!(ex.attempts(), attempt);
        pkids.push(sent[0].packet().pkid);
        let deadline = start + Duration::from_secs(2);
        assert_eq!(ex.poll_timeout(), Some(deadline));
        // Just before the deadline nothing happens.
        ex.handle_timeout(Instant::from_micros(deadline.as_micros() - 1));
        assert_eq!(events(&mut ex), []);
        ex.handle_timeout(deadline);
        let evs = events(&mut ex);
        assert!(evs.contains(&Event::CloseLeg(UDP4)) && evs.contains(&Event::CloseLeg(TCP4)));
        if attempt < 3 {
            assert!(!evs.iter().any(|e| matches!(e, Event::Done(_))));
            let next = deadline + Duration::from_millis(500);
            assert_eq!(ex.poll_timeout(), Some(next));
            // The pause holds: nothing is sent before it ends.
            assert!(
                server
                    .receive(&mut ex, Instant::from_micros(next.as_micros() - 1))
                    .is_empty()
            );
            start = next;
        } else {
            assert_eq!(
                evs.last(),
                Some(&Event::Done(Outcome::Failed(Failure::Timeout {
                    attempts: 3
                })))
            );
            assert_eq!(ex.poll_timeout(), None);
        }
    }
    // Every attempt has its own pkid (and reply key).
    assert!(pkids[0] != pkids[1] || pkids[1] != pkids[2]);
}

#[test]
fn zero_attempts_count_as_one() {
    let server = Server::new();
    let p = Policy {
        attempts: 0,
        ..policy()
    };
    let mut ex = Exchange::get(b"a", p, server.target(Families::V4)).unwrap();
    assert_eq!(server.receive(&mut ex, ms(0)).len(), 2);
    ex.handle_timeout(ms(2000));
    assert_eq!(
        done(&mut ex),
        Some(Outcome::Failed(Failure::Timeout { attempts: 1 }))
    );
}

#[test]
fn a_put_sends_one_signed_request_on_both_legs_of_the_first_family() {
    let server = Server::new();
    let key = owner();
    let mut ex = Exchange::put(
        b"alice",
        b"v",
        &key,
        Behavior::Bump,
        None,
        policy(),
        server.target(Families::BOTH),
    )
    .unwrap();
    let sent = server.receive(&mut ex, ms(0));
    assert_eq!(legs(&sent), [UDP4, TCP4]);
    // Bug 12: the same signed packet (pkid, time, signature) on both legs.
    assert_eq!(sent[0].plain, sent[1].plain);
    let p = sent[0].packet();
    assert_eq!(p.verify_self_signed().unwrap(), *key.public());
    assert_eq!((p.op, p.updated, p.ttl), (Op::Put, UNIX, 10.0));
    assert_ne!(p.pkid, 0);

    let mut ex = Exchange::delete(
        b"a",
        &key,
        Some(30.0),
        policy(),
        server.target(Families::V6),
    )
    .unwrap();
    let sent = server.receive(&mut ex, ms(0));
    assert_eq!(legs(&sent), [UDP6, TCP6]);
    assert_eq!(sent[0].packet().ttl, 30.0);

    let p = Policy {
        udp: false,
        ..policy()
    };
    let mut ex = Exchange::usage(&key, None, p, server.target(Families::BOTH)).unwrap();
    assert_eq!(legs(&server.receive(&mut ex, ms(0))), [TCP4]);
}

#[test]
fn a_get_races_every_family_and_pads_only_udp() {
    let server = Server::new();
    let mut ex = Exchange::get(b"bob", policy(), server.target(Families::BOTH)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    assert_eq!(legs(&sent), [UDP4, TCP4, UDP6, TCP6]);
    for s in &sent {
        let p = s.packet();
        assert_eq!(p.pkid, sent[0].packet().pkid);
        // The vkc quirk: the reply key in vkc, as the reference client sends.
        assert_eq!(p.vkc, p.reply_pk);
        assert_eq!(p.sig, None);
        match s.leg.transport {
            Transport::Udp => assert_eq!(p.value, &[0u8; MAX_VALUE_LEN][..]),
            Transport::Tcp => assert!(p.value.is_empty()),
        }
    }
    let p = Policy {
        udp: false,
        ..policy()
    };
    let mut ex = Exchange::get(b"bob", p, server.target(Families::BOTH)).unwrap();
    assert_eq!(legs(&server.receive(&mut ex, ms(0))), [TCP4, TCP6]);
}

#[test]
fn a_one_stream_exchange_races_tcp_on_ipv4_only() {
    let server = Server::new();
    let mut ex = Exchange::<1>::get(b"bob", policy(), server.target(Families::BOTH)).unwrap();
    // The helpers take the default (two streams): this one is driven by hand.
    let mut buf = [0u8; TRANSMIT_LEN];
    let mut sent = Vec::new();
    while let Some(t) = ex.poll_transmit(ms(0), UNIX, &mut rng(), &mut buf) {
        let mut plain = [0u8; TRANSMIT_LEN];
        let p = ecies::open(&server.key, &buf[..t.len], &mut plain).unwrap();
        sent.push(Sent {
            leg: t.leg,
            plain: p.to_vec(),
        });
        assert!(sent.len() <= 4);
    }
    assert_eq!(legs(&sent), [UDP4, TCP4, UDP6]);
    // Bytes for a leg it never opened are not read.
    ex.handle_stream(ms(1), UNIX, TCP6, &server.echo(&sent[1]));
    assert_eq!(ex.poll_event(), None);
    // Its one framer takes the IPv4 stream, in pieces.
    let stream = server.echo(&sent[1]);
    let (head, tail) = stream.split_at(stream.len() / 2);
    ex.handle_stream(ms(2), UNIX, TCP4, head);
    assert_eq!(ex.poll_event(), None);
    ex.handle_stream(ms(3), UNIX, TCP4, tail);
    assert_eq!(ex.poll_event(), Some(Event::CloseLeg(UDP4)));
    assert_eq!(ex.poll_event(), Some(Event::CloseLeg(UDP6)));
    assert!(matches!(
        ex.poll_event(),
        Some(Event::Done(Outcome::NotFound | Outcome::Found))
    ));
}

#[test]
fn the_first_success_wins_and_the_losers_are_closed() {
    let server = Server::new();
    let key = owner();
    let mut ex = put_n(&server, &key);
    let sent = server.receive(&mut ex, ms(0));
    // TCP answers first here: whichever leg answers first wins.
    ex.handle_stream(ms(10), UNIX, TCP4, &server.echo(&sent[1]));
    assert_eq!(
        events(&mut ex),
        [Event::CloseLeg(UDP4), Event::Done(Outcome::Stored)]
    );
    let reply = ex.reply().unwrap();
    assert_eq!(
        (reply.op, reply.name, reply.value),
        (Op::Put, &b"n"[..], &b"v"[..])
    );
    // The loser's late reply changes nothing.
    ex.handle_datagram(ms(20), UNIX, UDP4, &server.echo(&sent[0]));
    assert_eq!(events(&mut ex), []);
    assert_eq!(ex.poll_timeout(), None);
}

#[test]
fn a_success_beats_an_earlier_error_reply_on_the_other_leg() {
    // Bug 14: the reference executes both legs; the second may fail.
    let server = Server::new();
    let key = owner();
    let mut ex = put_n(&server, &key);
    let sent = server.receive(&mut ex, ms(0));
    ex.handle_datagram(ms(5), UNIX, UDP4, &server.error(&sent[0], UNIX));
    assert_eq!(events(&mut ex), []);
    ex.handle_stream(ms(9), UNIX, TCP4, &server.echo(&sent[1]));
    assert_eq!(done(&mut ex), Some(Outcome::Stored));
}

fn put_with_error(skew: f64, op: Op) -> (Exchange, Keypair) {
    let server = Server::new();
    let key = owner();
    let mut ex = match op {
        Op::Put => Exchange::put(
            b"n",
            b"v",
            &key,
            Behavior::Bump,
            None,
            policy(),
            server.target(Families::V4),
        ),
        Op::Del => Exchange::delete(b"n", &key, None, policy(), server.target(Families::V4)),
        Op::Usage => Exchange::usage(&key, None, policy(), server.target(Families::V4)),
        _ => Exchange::get(b"n", policy(), server.target(Families::V4)),
    }
    .unwrap();
    let sent = server.receive(&mut ex, ms(0));
    ex.handle_datagram(ms(5), UNIX, UDP4, &server.error(&sent[0], UNIX + skew));
    // The other leg times out: the error reply is all there is.
    ex.handle_timeout(ms(2000));
    (ex, key)
}

#[test]
fn an_error_reply_dated_far_from_our_clock_is_clock_skew() {
    let (mut ex, _) = put_with_error(120.0, Op::Put);
    let Some(Outcome::Failed(Failure::ClockSkew { skew })) = done(&mut ex) else {
        panic!("not clock skew");
    };
    assert!((skew - 120.0).abs() < 1e-6, "{skew}");
    let (mut ex, _) = put_with_error(-40.0, Op::Usage);
    assert!(matches!(
        done(&mut ex),
        Some(Outcome::Failed(Failure::ClockSkew { .. }))
    ));
}

#[test]
fn an_error_reply_to_a_write_asks_who_owns_the_name() {
    for op in [Op::Put, Op::Del] {
        let (mut ex, key) = put_with_error(1.0, op);
        let evs = events(&mut ex);
        assert!(evs.contains(&Event::LookupOwner), "{op:?}");
        assert!(!evs.iter().any(|e| matches!(e, Event::Done(_))));
        assert_eq!(ex.name(), b"n");
        // No timer runs while the lookup is out, and no retry is sent.
        assert_eq!(ex.poll_timeout(), None);
        ex.handle_lookup(ms(3000), Some(*owner().public().as_bytes()));
        assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::NotOwner)));

        let (mut ex, key2) = put_with_error(1.0, op);
        events(&mut ex);
        ex.handle_lookup(ms(3000), Some(*key2.public().as_bytes()));
        assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::ServerError)));

        let (mut ex, _) = put_with_error(1.0, op);
        events(&mut ex);
        ex.handle_lookup(ms(3000), None);
        assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::ServerError)));
        drop(key);
    }
}

/// The lookup run in the write's own exchange ends as `handle_lookup`
/// would decide: another owner, our own key, no such name, no answer.
#[test]
fn a_write_s_lookup_run_in_place_ends_with_the_write_s_outcome() {
    let server = Server::new();
    let other = owner();
    for op in [Op::Put, Op::Del] {
        for found in [Some(&other), None] {
            let key = owner();
            let mut ex = match op {
                Op::Put => Exchange::put(
                    b"n",
                    b"v",
                    &key,
                    Behavior::Bump,
                    None,
                    policy(),
                    server.target(Families::V4),
                ),
                _ => Exchange::delete(b"n", &key, None, policy(), server.target(Families::V4)),
            }
            .unwrap();
            assert!(!ex.start_lookup(), "no lookup was asked yet");
            let sent = server.receive(&mut ex, ms(0));
            ex.handle_datagram(ms(5), UNIX, UDP4, &server.error(&sent[0], UNIX));
            ex.handle_timeout(ms(2000));
            assert!(events(&mut ex).contains(&Event::LookupOwner));
            assert!(ex.start_lookup());
            assert!(!ex.start_lookup(), "once");
            assert_eq!(ex.name(), b"n");
            // The GET goes out at once, on a fresh attempt.
            let sent = server.receive(&mut ex, ms(2001));
            assert!(!sent.is_empty());
            let get = sent[0].packet();
            assert_eq!((get.op, get.name), (Op::Get, &b"n"[..]));
            assert_eq!(ex.attempts(), 1);
            let ours = key.public().as_bytes();
            let reply = match found {
                Some(k) => {
                    reply::found(&get, server.key.public(), b"x", UNIX, k.public().as_bytes())
                }
                None => reply::not_found(&get, server.key.public()),
            };
            ex.handle_datagram(
                ms(2003),
                UNIX,
                UDP4,
                &server.seal(&sent[0].reply_key(), &reply),
            );
            let want = match found {
                Some(k) if k.public().as_bytes() != ours => Failure::NotOwner,
                _ => Failure::ServerError,
            };
            assert_eq!(done(&mut ex), Some(Outcome::Failed(want)), "{op:?}");
        }
        // Our own key found: the refusal stays unexplained.
        let key = owner();
        let mut ex =
            Exchange::delete(b"n", &key, None, policy(), server.target(Families::V4)).unwrap();
        let sent = server.receive(&mut ex, ms(0));
        ex.handle_datagram(ms(5), UNIX, UDP4, &server.error(&sent[0], UNIX));
        ex.handle_timeout(ms(2000));
        events(&mut ex);
        assert!(ex.start_lookup());
        let sent = server.receive(&mut ex, ms(2001));
        let get = sent[0].packet();
        let reply = reply::found(
            &get,
            server.key.public(),
            b"x",
            UNIX,
            key.public().as_bytes(),
        );
        ex.handle_datagram(
            ms(2003),
            UNIX,
            UDP4,
            &server.seal(&sent[0].reply_key(), &reply),
        );
        assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::ServerError)));
        // A lookup that never gets an answer: no owner found.
        let mut ex = put_n(&server, &key);
        let sent = server.receive(&mut ex, ms(0));
        ex.handle_datagram(ms(5), UNIX, UDP4, &server.error(&sent[0], UNIX));
        ex.handle_timeout(ms(2000));
        events(&mut ex);
        assert!(ex.start_lookup());
        let mut now = 2001;
        // Bounded: three attempts, each a reply timeout and a pause.
        for _ in 0..16 {
            server.receive(&mut ex, ms(now));
            let Some(at) = ex.poll_timeout() else { break };
            now = (at.as_micros() / 1000).max(now + 1);
            ex.handle_timeout(ms(now));
        }
        assert_eq!(ex.attempts(), 3);
        assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::ServerError)));
    }
}

#[test]
fn an_error_reply_to_usage_is_a_server_error_and_to_get_a_bad_reply() {
    let (mut ex, _) = put_with_error(0.0, Op::Usage);
    let evs = events(&mut ex);
    assert!(!evs.contains(&Event::LookupOwner));
    assert_eq!(
        evs.last(),
        Some(&Event::Done(Outcome::Failed(Failure::ServerError)))
    );
    let (mut ex, _) = put_with_error(0.0, Op::Get);
    assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::BadReply)));
}

#[test]
fn quota_rejections_read_by_behavior() {
    for (behavior, expected) in [
        (Behavior::DontBump, Failure::RejectedAtQuota),
        (Behavior::Throw, Failure::WouldBump),
        (Behavior::Bump, Failure::RejectedAtQuota),
    ] {
        let server = Server::new();
        let key = owner();
        let mut ex = Exchange::put(
            b"n",
            b"v",
            &key,
            behavior,
            None,
            policy(),
            server.target(Families::V4),
        )
        .unwrap();
        let sent = server.receive(&mut ex, ms(0));
        if behavior != Behavior::Bump {
            assert_eq!(sent[0].packet().behavior, DONT_BUMP);
        }
        let rejected = reply::rejected(&sent[0].packet(), server.key.public());
        ex.handle_datagram(
            ms(1),
            UNIX,
            UDP4,
            &server.seal(&sent[0].reply_key(), &rejected),
        );
        assert_eq!(done(&mut ex), Some(Outcome::Failed(expected)));
    }
}

#[test]
fn get_reads_found_and_missing_names() {
    let server = Server::new();
    let owner_key = owner();
    let mut ex = Exchange::get(b"bob", policy(), server.target(Families::V4)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    let found = reply::found(
        &sent[1].packet(),
        server.key.public(),
        b"hello",
        UNIX - 7.0,
        owner_key.public().as_bytes(),
    );
    ex.handle_stream(
        ms(3),
        UNIX,
        TCP4,
        &server.seal(&sent[1].reply_key(), &found),
    );
    assert_eq!(done(&mut ex), Some(Outcome::Found));
    let r = ex.reply().unwrap();
    assert_eq!(
        (r.value, r.updated, r.vkc),
        (
            &b"hello"[..],
            UNIX - 7.0,
            Some(*owner_key.public().as_bytes())
        )
    );

    let mut ex = Exchange::get(b"bob", policy(), server.target(Families::V4)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    let missing = reply::not_found(&sent[0].packet(), server.key.public());
    ex.handle_datagram(
        ms(3),
        UNIX,
        UDP4,
        &server.seal(&sent[0].reply_key(), &missing),
    );
    assert_eq!(done(&mut ex), Some(Outcome::NotFound));

    // A reply for another name is not an answer.
    let mut ex = Exchange::get(b"bob", policy(), server.target(Families::V4)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    let p = sent[0].packet();
    let other = reply::not_found(&Packet { name: b"eve", ..p }, server.key.public());
    ex.handle_datagram(
        ms(3),
        UNIX,
        UDP4,
        &server.seal(&sent[0].reply_key(), &other),
    );
    assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::BadReply)));
}

#[test]
fn usage_decodes_the_quota_object_or_calls_it_a_bad_reply() {
    let server = Server::new();
    let key = owner();
    for (value, expected) in [
        (
            &br#"{"af": 2, "names_used": 3, "name_limit": 20}"#[..],
            Outcome::Usage(Usage {
                af: 2,
                names_used: 3,
                name_limit: 20,
            }),
        ),
        (&b"not json"[..], Outcome::Failed(Failure::BadReply)),
    ] {
        let mut ex = Exchange::usage(&key, None, policy(), server.target(Families::V4)).unwrap();
        let sent = server.receive(&mut ex, ms(0));
        let r = Packet {
            value,
            ..reply::echo(&sent[0].packet(), server.key.public())
        };
        ex.handle_datagram(ms(1), UNIX, UDP4, &server.seal(&sent[0].reply_key(), &r));
        assert_eq!(done(&mut ex), Some(expected));
    }
}

#[test]
fn hostile_datagrams_are_ignored_and_the_real_reply_still_wins() {
    let server = Server::new();
    let key = owner();
    let mut ex = put_n(&server, &key);
    let sent = server.receive(&mut ex, ms(0));
    let p = sent[0].packet();
    let to = sent[0].reply_key();
    let echo = reply::echo(&p, server.key.public());
    let hostile: Vec<Vec<u8>> = vec![
        // Wrong pkid.
        server.seal(
            &to,
            &Packet {
                pkid: p.pkid ^ 1,
                ..echo
            },
        ),
        // Wrong op.
        server.seal(
            &to,
            &Packet {
                op: Op::Del,
                ..echo
            },
        ),
        // Garbage.
        vec![0xa5; 200],
        vec![],
        // Oversize: more than any reply.
        vec![0u8; TRANSMIT_LEN + 16],
        // Sealed to a key that is not the attempt's reply key.
        server.seal(owner().public(), &echo),
        // Authentic but not a packet.
        {
            let mut sealed = vec![0u8; ecies::sealed_len(5)];
            ecies::seal(&to, b"hello", &mut rng(), &mut sealed).unwrap();
            sealed
        },
    ];
    for (i, h) in hostile.iter().enumerate() {
        ex.handle_datagram(ms(1), UNIX, UDP4, h);
        assert_eq!(ex.ignored(), i as u32 + 1);
        assert_eq!(events(&mut ex), [], "hostile {i}");
    }
    // The same hostile bytes on the other transport's leg id are not read.
    ex.handle_datagram(ms(2), UNIX, TCP4, &server.echo(&sent[0]));
    assert_eq!(events(&mut ex), []);
    ex.handle_datagram(ms(3), UNIX, UDP4, &server.echo(&sent[0]));
    assert_eq!(done(&mut ex), Some(Outcome::Stored));
}

#[test]
fn a_reference_error_reply_with_a_random_pkid_is_still_read() {
    // Bug 31: reference servers give error replies a random pkid.
    let server = Server::new();
    let key = owner();
    let mut ex = Exchange::usage(&key, None, policy(), server.target(Families::V4)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    let e = reply::error(
        sent[0].packet().pkid.wrapping_add(7),
        UNIX,
        server.key.public(),
    );
    ex.handle_datagram(ms(1), UNIX, UDP4, &server.seal(&sent[0].reply_key(), &e));
    ex.handle_stream(ms(1), UNIX, TCP4, &server.seal(&sent[1].reply_key(), &e));
    assert_eq!(done(&mut ex), Some(Outcome::Failed(Failure::ServerError)));
}

#[test]
fn a_stale_reply_from_an_earlier_attempt_cannot_be_read() {
    let server = Server::new();
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    let first = server.receive(&mut ex, ms(0));
    ex.handle_timeout(ms(2000));
    assert_eq!(events(&mut ex).len(), 2);
    let second = server.receive(&mut ex, ms(2500));
    assert_eq!(second.len(), 2);
    let stale = reply::not_found(&first[0].packet(), server.key.public());
    ex.handle_datagram(
        ms(2600),
        UNIX,
        UDP4,
        &server.seal(&first[0].reply_key(), &stale),
    );
    assert_eq!((ex.ignored(), events(&mut ex)), (1, vec![]));
}

#[test]
fn tcp_replies_are_framed_byte_by_byte_and_garbage_ends_the_leg() {
    let server = Server::new();
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    let bytes = server.seal(
        &sent[1].reply_key(),
        &reply::not_found(&sent[1].packet(), server.key.public()),
    );
    for (i, b) in bytes.iter().enumerate() {
        ex.handle_stream(ms(1), UNIX, TCP4, &[*b]);
        if i + 1 < bytes.len() {
            assert_eq!(ex.outcome(), None, "early at {i}");
        }
    }
    assert_eq!(done(&mut ex), Some(Outcome::NotFound));

    // Garbage: the TCP leg ends at once; the attempt goes on over UDP.
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    ex.handle_stream(ms(1), UNIX, TCP4, &[0xffu8; 64]);
    assert_eq!(events(&mut ex), [Event::CloseLeg(TCP4)]);
    assert_eq!(ex.poll_timeout(), Some(ms(2000)));
    let missing = reply::not_found(&sent[0].packet(), server.key.public());
    ex.handle_datagram(
        ms(2),
        UNIX,
        UDP4,
        &server.seal(&sent[0].reply_key(), &missing),
    );
    assert_eq!(done(&mut ex), Some(Outcome::NotFound));

    // A stream sealed to another key never frames: once more bytes than
    // any reply have come, the leg ends instead of buffering forever.
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    let sent = server.receive(&mut ex, ms(0));
    let foreign = server.seal(
        owner().public(),
        &reply::not_found(&sent[1].packet(), server.key.public()),
    );
    let mut fed = 0;
    while ex.outcome().is_none() && fed < 4 * TRANSMIT_LEN {
        ex.handle_stream(ms(1), UNIX, TCP4, &foreign);
        fed += foreign.len();
        if events(&mut ex).contains(&Event::CloseLeg(TCP4)) {
            break;
        }
    }
    assert!(fed >= TRANSMIT_LEN, "closed after {fed} bytes");
    assert!(
        fed < TRANSMIT_LEN + 2 * foreign.len(),
        "closed after {fed} bytes"
    );
}

#[test]
fn a_network_error_is_reported_over_a_timeout_and_retried() {
    let server = Server::new();
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    let mut start = ms(0);
    for attempt in 1..=3 {
        assert_eq!(server.receive(&mut ex, start).len(), 2);
        ex.handle_leg_failed(start + Duration::from_millis(1), TCP4);
        assert_eq!(events(&mut ex), [Event::CloseLeg(TCP4)]);
        // UDP still waits: the attempt ends at its deadline.
        let deadline = start + Duration::from_secs(2);
        assert_eq!(ex.poll_timeout(), Some(deadline));
        ex.handle_timeout(deadline);
        if attempt < 3 {
            assert_eq!(events(&mut ex), [Event::CloseLeg(UDP4)]);
            start = deadline + Duration::from_millis(500);
        }
    }
    let outcome = done(&mut ex).unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed(Failure::Network {
            leg: TCP4,
            fault: LegFault::Io
        })
    );
    assert_eq!(outcome.error_kind(), Some(ErrorKind::Network));
}

#[test]
fn an_attempt_whose_legs_all_fail_retries_without_waiting_for_the_deadline() {
    let server = Server::new();
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    server.receive(&mut ex, ms(0));
    ex.handle_leg_failed(ms(3), UDP4);
    ex.handle_leg_failed(ms(4), TCP4);
    assert_eq!(ex.poll_timeout(), Some(ms(504)));
    assert_eq!(server.receive(&mut ex, ms(504)).len(), 2);
    assert_eq!(ex.attempts(), 2);
}

#[test]
fn oversized_input_and_a_small_buffer_are_invalid_input() {
    let server = Server::new();
    let long = [b'x'; 51];
    assert!(Exchange::<2>::get(&long, policy(), server.target(Families::V4)).is_err());
    let big = [0u8; MAX_VALUE_LEN + 1];
    assert!(
        Exchange::<2>::put(
            b"n",
            &big,
            &owner(),
            Behavior::Bump,
            None,
            policy(),
            server.target(Families::V4)
        )
        .is_err()
    );
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    let mut small = [0u8; 64];
    assert_eq!(ex.poll_transmit(ms(0), UNIX, &mut rng(), &mut small), None);
    let outcome = done(&mut ex).unwrap();
    assert_eq!(outcome.error_kind(), Some(ErrorKind::InvalidInput));
}

#[test]
fn error_kinds_have_stable_words() {
    let words: Vec<&str> = [
        ErrorKind::RejectedAtQuota,
        ErrorKind::WouldBump,
        ErrorKind::NotOwner,
        ErrorKind::ClockSkew,
        ErrorKind::Timeout,
        ErrorKind::InvalidInput,
        ErrorKind::Network,
        ErrorKind::ServerError,
        ErrorKind::BadReply,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect();
    assert_eq!(
        words,
        [
            "rejected_at_quota",
            "would_bump",
            "not_owner",
            "clock_skew",
            "timeout",
            "invalid_input",
            "network",
            "server_error",
            "bad_reply"
        ]
    );
}

#[test]
fn the_reply_deadline_runs_from_the_last_transmit() {
    let server = Server::new();
    let mut ex = Exchange::get(b"n", policy(), server.target(Families::V4)).unwrap();
    let mut buf = [0u8; TRANSMIT_LEN];
    let first = ex.poll_transmit(ms(0), UNIX, &mut rng(), &mut buf).unwrap();
    assert_eq!(first.leg, UDP4);
    assert_eq!(ex.poll_timeout(), Some(ms(2000)));
    // Sealing the second leg took 300 ms (a busy CPU).
    let second = ex
        .poll_transmit(ms(300), UNIX, &mut rng(), &mut buf)
        .unwrap();
    assert_eq!(second.leg, TCP4);
    assert_eq!(ex.poll_timeout(), Some(ms(2300)));
    ex.handle_timeout(ms(2000));
    assert_eq!(events(&mut ex), []);
    ex.handle_timeout(ms(2300));
    assert_eq!(events(&mut ex).len(), 2);
    assert_eq!(ex.poll_timeout(), Some(ms(2800)));
}
