//! The MQTT session machine driven directly in fake time: no sockets, no
//! sleeps. Every timing rule (handshake deadline, keep-alive, PINGRESP
//! deadline, write deadline) and every hostile-input rule (refusals,
//! oversize packets, garbage, chunking) is checked here.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use keyway_core::mqtt::session::{CONTROL_RESERVE, MAX_PENDING_SUBSCRIPTIONS};
use keyway_core::mqtt::{
    self, CloseReason, CommandError, Event, Packet, QoS, Refusal, Session, SessionConfig,
};
use keyway_core::rand_core;
use keyway_core::time::Instant;
use proptest::prelude::*;

const T0: Instant = Instant::ZERO;
const CLIENT: &[u8] = b"abcdefghijklmno";
const TOPIC: &[u8] = b"own-topic";

fn config() -> SessionConfig {
    SessionConfig {
        keep_alive: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(5),
        max_packet: 256,
    }
}

type Machine = Session<Vec<u8>>;

fn session_with(config: SessionConfig, inbox: usize, outbox: usize) -> Machine {
    Session::new(T0, config, CLIENT, vec![0; inbox], vec![0; outbox]).unwrap()
}

/// Everything the session has to send, as one byte string (each transmit
/// acknowledged as written at `now`).
fn sent(s: &mut Machine, now: Instant) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 100];
    for _ in 0..10_000 {
        let Some(t) = s.poll_transmit(now, &mut buf) else {
            break;
        };
        all.extend_from_slice(&buf[..t.len]);
        s.handle_written(now);
    }
    all
}

/// What a session reports, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Connected,
    Subscribed(u16, QoS),
    Message(Vec<u8>, Vec<u8>),
    Closed(CloseReason),
}

fn events(s: &mut Machine) -> Vec<Seen> {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let Some(event) = s.poll_event() else { break };
        all.push(match event {
            Event::Connected => Seen::Connected,
            Event::Subscribed { packet_id, qos } => Seen::Subscribed(packet_id, qos),
            Event::Message { topic, payload } => Seen::Message(topic.to_vec(), payload.to_vec()),
            Event::Closed(reason) => Seen::Closed(reason),
        });
    }
    all
}

/// Feeds `bytes` as a shell does: offer, drain events and transmits, and
/// again until a round does nothing (writing PUBACKs frees room to read
/// the packets behind them). Returns events and what was sent in reply.
fn feed(s: &mut Machine, now: Instant, bytes: &[u8]) -> (Vec<Seen>, Vec<u8>) {
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    let mut at = 0;
    for _ in 0..100_000 {
        let took = s.handle_received(now, &bytes[at..]);
        assert!(took <= bytes.len() - at);
        at += took;
        let events = events(s);
        let sent = sent(s, now);
        let idle = took == 0 && events.is_empty() && sent.is_empty();
        seen.extend(events);
        out.extend(sent);
        if idle {
            break;
        }
    }
    assert_eq!(at, bytes.len(), "the session stopped taking bytes");
    (seen, out)
}

fn packet(encode: impl Fn(&mut [u8]) -> Result<usize, mqtt::MqttError>) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn connack(code: u8) -> Vec<u8> {
    packet(|out| mqtt::encode_connack(false, code, out))
}

fn suback(id: u16, code: u8) -> Vec<u8> {
    packet(|out| mqtt::encode_suback(id, &[code], out))
}

fn publish(topic: &[u8], id: u16, payload: &[u8]) -> Vec<u8> {
    let qos = if id == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    packet(|out| mqtt::encode_publish(topic, qos, id, payload, out))
}

fn puback(id: u16) -> Vec<u8> {
    packet(|out| mqtt::encode_puback(id, out))
}

/// A session through CONNECT/CONNACK and SUBSCRIBE/SUBACK at `T0`.
fn established() -> Machine {
    let mut s = session_with(config(), 512, 4096);
    s.handle_subscribe(T0, TOPIC, QoS::AtLeastOnce).unwrap();
    s.handle_connected(T0);
    sent(&mut s, T0);
    feed(&mut s, T0, &connack(0));
    feed(&mut s, T0, &suback(1, 1));
    assert!(s.is_established());
    s
}

#[test]
fn the_handshake_sends_connect_then_subscribe_after_the_connack() {
    let mut s = session_with(config(), 512, 4096);
    assert_eq!(s.handle_subscribe(T0, TOPIC, QoS::AtLeastOnce), Ok(1));
    assert!(
        sent(&mut s, T0).is_empty(),
        "nothing before the transport is up"
    );
    s.handle_connected(T0);
    let expected_connect = packet(|out| mqtt::encode_connect(CLIENT, 10, out));
    assert_eq!(sent(&mut s, T0), expected_connect);
    assert_eq!(s.poll_timeout(), Some(T0 + Duration::from_secs(2)));

    let (seen, out) = feed(&mut s, Instant::from_millis(100), &connack(0));
    assert_eq!(seen, vec![Seen::Connected]);
    let expected_subscribe = packet(|out| mqtt::encode_subscribe(1, TOPIC, QoS::AtLeastOnce, out));
    assert_eq!(out, expected_subscribe);
    assert!(!s.is_established(), "the SUBACK is part of the handshake");

    let at = Instant::from_millis(200);
    let (seen, _) = feed(&mut s, at, &suback(1, 1));
    assert_eq!(seen, vec![Seen::Subscribed(1, QoS::AtLeastOnce)]);
    assert!(s.is_established());
    assert!(!s.heard(), "the handshake's packets do not count as heard");
    assert_eq!(
        s.poll_timeout(),
        Some(at + Duration::from_secs(10)),
        "first ping"
    );
}

#[test]
fn no_connack_by_the_deadline_closes_the_session() {
    let mut s = session_with(config(), 512, 4096);
    s.handle_connected(T0);
    sent(&mut s, T0);
    s.handle_timeout(Instant::from_millis(1999));
    assert!(!s.is_closed(), "closed before its deadline");
    assert_eq!(s.poll_timeout(), Some(Instant::from_secs(2)));
    s.handle_timeout(Instant::from_secs(2));
    assert_eq!(
        events(&mut s),
        vec![Seen::Closed(CloseReason::HandshakeTimeout)]
    );
    assert_eq!(s.poll_timeout(), None);
    assert!(sent(&mut s, Instant::from_secs(3)).is_empty());
}

#[test]
fn no_suback_by_the_same_deadline_closes_the_session() {
    let mut s = session_with(config(), 512, 4096);
    s.handle_subscribe(T0, TOPIC, QoS::AtLeastOnce).unwrap();
    s.handle_connected(T0);
    feed(&mut s, Instant::from_secs(1), &connack(0));
    s.handle_timeout(Instant::from_secs(2));
    assert_eq!(s.close_reason(), Some(CloseReason::HandshakeTimeout));
}

#[test]
fn refusals_close_the_session_with_their_codes() {
    for code in 1..=5u8 {
        let mut s = session_with(config(), 512, 4096);
        s.handle_connected(T0);
        let (seen, _) = feed(&mut s, T0, &connack(code));
        assert_eq!(
            seen,
            vec![Seen::Closed(CloseReason::Refused(Refusal::Connack {
                session_present: false,
                return_code: code
            }))]
        );
    }
    // A session we did not ask for is a refusal too (clean session).
    let mut s = session_with(config(), 512, 4096);
    s.handle_connected(T0);
    feed(
        &mut s,
        T0,
        &packet(|out| mqtt::encode_connack(true, 0, out)),
    );
    assert!(matches!(
        s.close_reason(),
        Some(CloseReason::Refused(Refusal::Connack {
            session_present: true,
            ..
        }))
    ));
    // SUBACK failure, and a granted QoS 2 we never asked for.
    for code in [0x80, 2] {
        let mut s = session_with(config(), 512, 4096);
        s.handle_subscribe(T0, TOPIC, QoS::AtLeastOnce).unwrap();
        s.handle_connected(T0);
        feed(&mut s, T0, &connack(0));
        feed(&mut s, T0, &suback(1, code));
        assert_eq!(
            s.close_reason(),
            Some(CloseReason::Refused(Refusal::Suback {
                packet_id: 1,
                return_code: code
            }))
        );
    }
    // Out of turn: a PUBLISH before the CONNACK, a SUBACK for another id.
    let mut s = session_with(config(), 512, 4096);
    s.handle_connected(T0);
    feed(&mut s, T0, &publish(TOPIC, 0, b"x"));
    assert_eq!(
        s.close_reason(),
        Some(CloseReason::Refused(Refusal::Unexpected { packet_type: 3 }))
    );
    let mut s = session_with(config(), 512, 4096);
    s.handle_subscribe(T0, TOPIC, QoS::AtLeastOnce).unwrap();
    s.handle_connected(T0);
    feed(&mut s, T0, &connack(0));
    feed(&mut s, T0, &suback(7, 1));
    assert_eq!(
        s.close_reason(),
        Some(CloseReason::Refused(Refusal::Unexpected { packet_type: 9 }))
    );
}

#[test]
fn keep_alive_pings_every_period_and_a_pingresp_keeps_the_session() {
    let mut s = established();
    let k = Duration::from_secs(10);
    s.handle_timeout(Instant::from_micros(9_999_999));
    assert!(sent(&mut s, T0 + k).is_empty(), "pinged early");
    s.handle_timeout(T0 + k);
    assert_eq!(sent(&mut s, T0 + k), [0xc0, 0x00]);
    // The PINGRESP deadline (T0 + 2k) and the next ping coincide.
    assert_eq!(s.poll_timeout(), Some(T0 + k + k));
    let (_, out) = feed(&mut s, T0 + k + Duration::from_secs(1), &[0xd0, 0x00]);
    assert!(out.is_empty());
    assert!(s.heard());
    s.handle_timeout(T0 + k + k);
    assert!(!s.is_closed(), "answered ping closed the session");
    assert_eq!(sent(&mut s, T0 + k + k), [0xc0, 0x00], "pings go on");
    assert_eq!(s.poll_timeout(), Some(T0 + k * 3));
}

#[test]
fn an_unanswered_ping_closes_the_session_one_keep_alive_later() {
    let mut s = established();
    let k = Duration::from_secs(10);
    s.handle_timeout(T0 + k);
    sent(&mut s, T0 + k);
    s.handle_timeout(Instant::from_micros(19_999_999));
    assert!(!s.is_closed());
    s.handle_timeout(T0 + k + k);
    assert_eq!(events(&mut s), vec![Seen::Closed(CloseReason::PingTimeout)]);
}

#[test]
fn a_pingresp_already_received_counts_before_its_deadline_is_judged() {
    let mut s = established();
    let k = Duration::from_secs(10);
    s.handle_timeout(T0 + k);
    sent(&mut s, T0 + k);
    // The PINGRESP arrives; the shell fires the timer before polling events.
    assert_eq!(s.handle_received(T0 + k + k, &[0xd0, 0x00]), 2);
    s.handle_timeout(T0 + k + k);
    assert!(!s.is_closed());
}

#[test]
fn a_write_not_finished_by_its_deadline_closes_the_session_as_stalled() {
    let mut s = established();
    s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"x").unwrap();
    let mut buf = [0u8; 64];
    let at = Instant::from_secs(1);
    assert!(s.poll_transmit(at, &mut buf).is_some());
    assert_eq!(s.poll_timeout(), Some(at + Duration::from_secs(5)));
    s.handle_timeout(at + Duration::from_millis(4999));
    assert!(!s.is_closed());
    s.handle_timeout(at + Duration::from_secs(5));
    assert_eq!(s.close_reason(), Some(CloseReason::WriteStalled));

    // Written in time: no deadline left.
    let mut s = established();
    s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"x").unwrap();
    assert!(s.poll_transmit(at, &mut buf).is_some());
    s.handle_written(at + Duration::from_secs(4));
    s.handle_timeout(at + Duration::from_secs(6));
    assert!(!s.is_closed());
}

#[test]
fn qos1_deliveries_are_acknowledged_and_lent_to_the_caller() {
    let mut s = established();
    let mut stream = publish(TOPIC, 0x1234, b"hello");
    stream.extend(publish(TOPIC, 0, b"datagram"));
    let (seen, out) = feed(&mut s, T0, &stream);
    assert_eq!(
        seen,
        vec![
            Seen::Message(TOPIC.to_vec(), b"hello".to_vec()),
            Seen::Message(TOPIC.to_vec(), b"datagram".to_vec()),
        ]
    );
    assert_eq!(out, puback(0x1234), "QoS 0 needs no PUBACK");
    assert!(s.heard());
}

#[test]
fn an_oversize_publish_is_skipped_unbuffered_and_still_acknowledged() {
    // Inbox 300 bytes, cap 256: a 5000-byte PUBLISH streams past.
    let mut s = established();
    let big = publish(TOPIC, 0x0777, &[0xaa; 5000]);
    let mut stream = big.clone();
    stream.extend(publish(TOPIC, 9, b"after"));
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for chunk in stream.chunks(97) {
        let (e, o) = feed(&mut s, T0, chunk);
        seen.extend(e);
        out.extend(o);
    }
    assert_eq!(seen, vec![Seen::Message(TOPIC.to_vec(), b"after".to_vec())]);
    let mut expected = puback(0x0777);
    expected.extend(puback(9));
    assert_eq!(out, expected);
    assert!(!s.is_closed());
}

#[test]
fn an_oversize_publish_whose_id_never_fits_is_skipped_without_a_puback() {
    // The topic alone is longer than the whole inbox: no id to read.
    let mut s = Session::new(T0, config(), CLIENT, vec![0; 64], vec![0; 4096]).unwrap();
    s.handle_connected(T0);
    feed(&mut s, T0, &connack(0));
    let mut stream = publish(&[b'x'; 200], 5, b"p");
    stream.extend(publish(b"t", 6, b"ok"));
    let (seen, out) = feed(&mut s, T0, &stream);
    assert_eq!(seen, vec![Seen::Message(b"t".to_vec(), b"ok".to_vec())]);
    assert_eq!(out, puback(6));
}

#[test]
fn a_malformed_packet_closes_the_session() {
    let mut s = established();
    let (seen, _) = feed(&mut s, T0, &[0x41, 0x02, 0, 1]);
    assert_eq!(
        seen,
        vec![Seen::Closed(CloseReason::Malformed(
            mqtt::MqttError::Malformed("PUBACK")
        ))]
    );
    assert_eq!(
        s.handle_received(T0, &[1, 2, 3]),
        3,
        "a closed session discards"
    );
}

#[test]
fn packet_ids_count_from_one_and_skip_zero_on_wrap() {
    let mut s = established();
    for expected in 1..=3u16 {
        assert_eq!(
            s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"x"),
            Ok(expected)
        );
        let (packet, _) = {
            let bytes = sent(&mut s, T0);
            let (p, n) = match mqtt::decode(&bytes, 64).unwrap().unwrap() {
                (Packet::Publish { packet_id, .. }, n) => (packet_id, n),
                other => panic!("{other:?}"),
            };
            assert_eq!(n, bytes.len());
            (p, n)
        };
        assert_eq!(packet, Some(expected));
    }
    assert_eq!(s.handle_publish(T0, b"t", QoS::AtMostOnce, b"x"), Ok(0));
    for _ in 4..=u16::MAX {
        s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"x").unwrap();
        sent(&mut s, T0);
    }
    assert_eq!(s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"x"), Ok(1));
}

#[test]
fn a_full_queue_refuses_publishes_without_spending_ids_and_keeps_room_for_control() {
    let mut s = session_with(config(), 512, 256);
    s.handle_connected(T0);
    sent(&mut s, T0);
    feed(&mut s, T0, &connack(0));
    let payload = [1u8; 40];
    let mut accepted = 0;
    let refused = loop {
        match s.handle_publish(T0, b"t", QoS::AtLeastOnce, &payload) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100);
    };
    assert_eq!(refused, CommandError::Full);
    assert_eq!(accepted, (256 - CONTROL_RESERVE) / 47);
    // The reserve still takes the PUBACK of a delivery.
    let (seen, _) = {
        let took = s.handle_received(T0, &publish(b"in", 3, b"m"));
        assert_eq!(took, 9);
        (events(&mut s), ())
    };
    assert_eq!(seen, vec![Seen::Message(b"in".to_vec(), b"m".to_vec())]);
    let out = sent(&mut s, T0);
    assert_eq!(out.len(), accepted * 47 + 4);
    assert_eq!(&out[out.len() - 4..], puback(3));
    // Drained: the next id is the one the refusal did not spend.
    assert_eq!(
        s.handle_publish(T0, b"t", QoS::AtLeastOnce, &payload),
        Ok(accepted as u16 + 1)
    );
    // Larger than the queue can ever hold: not Full but Invalid.
    assert!(matches!(
        s.handle_publish(T0, b"t", QoS::AtLeastOnce, &[0; 300]),
        Err(CommandError::Invalid(_))
    ));
}

#[test]
fn pubacks_that_find_no_room_hold_their_publish_until_the_queue_drains() {
    // Outbox: CONNECT fits, then room for few PUBACKs.
    let mut s = Session::new(T0, config(), CLIENT, vec![0; 512], vec![0; 40]).unwrap();
    s.handle_connected(T0);
    sent(&mut s, T0);
    feed(&mut s, T0, &connack(0));
    let stream: Vec<u8> = (1..=20u16).flat_map(|id| publish(b"t", id, b"m")).collect();
    // Without transmitting, only so many are read.
    let mut at = 0;
    let mut delivered = 0;
    for _ in 0..100 {
        at += s.handle_received(T0, &stream[at..]);
        let n = events(&mut s).len();
        if n == 0 {
            break;
        }
        delivered += n;
    }
    assert_eq!(delivered, (40 - 4) / 4);
    // The shell writes; the rest follows.
    let (seen, out) = {
        let mut out = sent(&mut s, T0);
        let (seen, more) = feed(&mut s, T0, &stream[at..]);
        out.extend(more);
        (seen, out)
    };
    assert_eq!(delivered + seen.len(), 20);
    let expected: Vec<u8> = (1..=20u16).flat_map(puback).collect();
    assert_eq!(out, expected);
}

#[test]
fn disconnect_goes_after_the_queue_then_closes() {
    let mut s = established();
    s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"x").unwrap();
    s.handle_disconnect(T0);
    assert_eq!(
        s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"y"),
        Err(CommandError::Closed)
    );
    let out = sent(&mut s, T0);
    assert_eq!(&out[out.len() - 2..], [0xe0, 0x00]);
    assert_eq!(
        events(&mut s),
        vec![Seen::Closed(CloseReason::Disconnected)]
    );
}

#[test]
fn only_so_many_subscriptions_wait_for_their_suback() {
    let mut s = established();
    for _ in 0..MAX_PENDING_SUBSCRIPTIONS {
        s.handle_subscribe(T0, b"more", QoS::AtLeastOnce).unwrap();
    }
    assert_eq!(
        s.handle_subscribe(T0, b"more", QoS::AtLeastOnce),
        Err(CommandError::TooManySubscriptions)
    );
    let (seen, _) = feed(&mut s, T0, &suback(2, 0));
    assert_eq!(seen, vec![Seen::Subscribed(2, QoS::AtMostOnce)]);
    assert!(s.handle_subscribe(T0, b"more", QoS::AtLeastOnce).is_ok());
}

#[test]
fn a_shell_that_never_polls_still_learns_that_the_session_closed() {
    let mut s = established();
    for id in 2..40u16 {
        s.handle_subscribe(T0, b"more", QoS::AtLeastOnce).unwrap();
        assert_eq!(s.handle_received(T0, &suback(id, 1)), 5);
    }
    s.handle_closed(T0);
    let seen = events(&mut s);
    assert_eq!(
        seen.last(),
        Some(&Seen::Closed(CloseReason::ConnectionLost))
    );
    assert!(seen.len() <= MAX_PENDING_SUBSCRIPTIONS + 2, "{seen:?}");
}

#[test]
fn a_lost_transport_closes_the_session() {
    let mut s = established();
    s.handle_closed(T0);
    assert_eq!(
        events(&mut s),
        vec![Seen::Closed(CloseReason::ConnectionLost)]
    );
    assert_eq!(
        s.handle_publish(T0, b"t", QoS::AtLeastOnce, b"x"),
        Err(CommandError::Closed)
    );
}

#[test]
fn client_ids_are_15_alphanumerics() {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let id = Machine::random_client_id(&mut rng);
    assert!(id.iter().all(u8::is_ascii_alphanumeric));
    assert_ne!(id, Machine::random_client_id(&mut rng));
}

/// A broker's whole conversation: CONNACK, SUBACK, deliveries of both
/// QoS, an oversize delivery, a PINGRESP, a stray PUBACK.
fn conversation() -> Vec<u8> {
    let mut stream = connack(0);
    stream.extend(suback(1, 1));
    stream.extend(publish(TOPIC, 1, b"one"));
    stream.extend(publish(TOPIC, 0, b"two"));
    stream.extend(publish(TOPIC, 2, &[3u8; 400]));
    stream.extend([0xd0, 0x00]);
    stream.extend(puback(9));
    stream.extend(publish(b"other", 3, &[4u8; 200]));
    stream
}

fn fresh() -> Machine {
    let mut s = session_with(config(), 300, 4096);
    s.handle_subscribe(T0, TOPIC, QoS::AtLeastOnce).unwrap();
    s.handle_connected(T0);
    sent(&mut s, T0);
    s
}

fn run_chunked(stream: &[u8], cuts: &[usize]) -> (Vec<Seen>, Vec<u8>) {
    let mut s = fresh();
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    let mut from = 0;
    for &cut in cuts.iter().chain([stream.len()].iter()) {
        let (e, o) = feed(&mut s, T0, &stream[from..cut]);
        seen.extend(e);
        out.extend(o);
        from = cut;
    }
    (seen, out)
}

#[test]
fn every_split_point_gives_the_same_events_and_replies() {
    let stream = conversation();
    let whole = run_chunked(&stream, &[]);
    assert_eq!(whole.0.len(), 5, "{:?}", whole.0);
    for cut in 0..=stream.len() {
        assert_eq!(run_chunked(&stream, &[cut]), whole, "split at {cut}");
    }
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events_and_replies(
        mut cuts in proptest::collection::vec(0usize..1400, 0..40)
    ) {
        let stream = conversation();
        for cut in &mut cuts {
            *cut %= stream.len() + 1;
        }
        cuts.sort_unstable();
        prop_assert_eq!(run_chunked(&stream, &cuts), run_chunked(&stream, &[]));
    }

    #[test]
    fn hostile_bytes_never_panic_and_never_stall(
        garbage in proptest::collection::vec(any::<u8>(), 0..3000),
        chunk in 1usize..300,
        valid_prefix in any::<bool>(),
        script in proptest::collection::vec(0u8..6, 1..40),
    ) {
        let mut s = fresh();
        let mut stream = if valid_prefix { conversation() } else { Vec::new() };
        stream.extend(garbage);
        let mut now = T0;
        let mut buf = [0u8; 64];
        for (piece, step) in stream.chunks(chunk).zip(script.iter().cycle()) {
            // feed() asserts the session always takes bytes once drained.
            feed(&mut s, now, piece);
            now += Duration::from_millis(700);
            match step {
                0 => s.handle_timeout(now),
                1 => {
                    let _ = s.handle_publish(now, b"dest", QoS::AtLeastOnce, &[7; 100]);
                }
                2 => {
                    let _ = s.handle_subscribe(now, b"more", QoS::AtMostOnce);
                }
                // A write the broker never finishes.
                3 => {
                    let _ = s.poll_transmit(now, &mut buf);
                }
                4 => s.handle_disconnect(now),
                _ => {
                    sent(&mut s, now);
                }
            }
            events(&mut s);
            // Memory is the two buffers given at creation; a live session
            // always has a timer that will end or advance it.
            prop_assert!(s.is_closed() || s.poll_timeout().is_some());
        }
    }
}
