//! Two Keyway routers talking through a pool of three private mosquitto
//! brokers on 127.0.0.2–4, with ACKs, a broker killed mid-conversation and
//! brought back.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_sidewire::{BrokerEntry, Message, Pool, Router, RouterConfig, system_time};
use keyway_tests::inbox::{count, inbox, payloads};
use keyway_tests::mosquitto::{Mosquitto, sidewire_pool as pool};

fn key() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

/// A started router on the system clock.
async fn join(key: Keypair, pool: Pool, config: RouterConfig) -> Router {
    let router = Router::with_config(key, None, system_time, pool, config);
    router.start().await.unwrap();
    router
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_exchange_messages_both_ways_through_failures() {
    let mut brokers: Vec<Mosquitto> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let pool = pool(&brokers);
    let (a, b) = (key(), key());
    let (a_pk, b_pk) = (*a.public(), *b.public());
    // The lean setting (the set and one spare) is enough among Keyway
    // peers, through broker failures too.
    let config = RouterConfig {
        resend_every: Duration::from_millis(300),
        spare_subscriptions: 1,
        ..RouterConfig::default()
    };
    let ra = join(a, pool.clone(), config.clone()).await;
    let rb = join(b, pool.clone(), config).await;
    let (inbox_a, inbox_b) = (inbox(&ra), inbox(&rb));
    let (to_b, to_a) = (ra.pipe(b_pk), rb.pipe(a_pk));

    // Binary payloads arrive intact, both ways, each send acknowledged.
    for i in 0..5u8 {
        to_b.send(&[i, 0, 0xff, 0xfe], Duration::from_secs(4))
            .await
            .unwrap();
        to_a.send(&[i; 100], Duration::from_secs(4)).await.unwrap();
    }
    // The same bytes again are a new message, delivered again.
    to_b.send(&[0, 0, 0xff, 0xfe], Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(count(&inbox_b, 6).await, 6);
    let delivered_to_b: Vec<Vec<u8>> = inbox_b
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.data.clone())
        .collect();
    assert_eq!(delivered_to_b.len(), 6);
    assert_eq!(delivered_to_b[0], vec![0, 0, 0xff, 0xfe]);
    assert!(inbox_b.lock().unwrap().iter().all(|m| m.from == a_pk));
    assert_eq!(count(&inbox_a, 5).await, 5);

    // Kill each broker in turn: delivery continues through the others.
    for (victim, broker) in (0u8..).zip(brokers.iter_mut()) {
        broker.kill();
        for i in 0..3u8 {
            to_b.send(&[victim, i], Duration::from_secs(6))
                .await
                .unwrap();
            to_a.send(&[victim, i], Duration::from_secs(6))
                .await
                .unwrap();
        }
        broker.restart().unwrap();
        // Give the routers a resubscription cycle to notice it is back.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(count(&inbox_b, 6 + 9).await, 6 + 9);
    assert_eq!(count(&inbox_a, 5 + 9).await, 5 + 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_costs_one_connect_timeout_then_backs_off() {
    // Accepts TCP, never answers MQTT: the costly kind of dead broker.
    let silent = std::net::TcpListener::bind("127.0.0.8:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    let live: Vec<Mosquitto> = ["127.0.0.9", "127.0.0.10"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let mut pool = pool(&live);
    pool.brokers.push(BrokerEntry::new(
        &silent_addr.ip().to_string(),
        silent_addr.port(),
    ));
    let mut config = RouterConfig {
        resubscribe_every: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    config.link.connect_timeout = Duration::from_millis(500);
    let (a, b) = (key(), key());
    let b_pk = *b.public();
    let started = std::time::Instant::now();
    let ra = join(a, pool.clone(), config.clone()).await;
    let rb = join(b, pool, config).await;
    // Each start pays at most one short timeout for the silent broker.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let got = inbox(&rb);
    let pipe = ra.pipe(b_pk);
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let mut sent = 0;
    while std::time::Instant::now() < deadline {
        pipe.send(b"through the live ones", Duration::from_secs(3))
            .await
            .unwrap();
        sent += 1;
    }
    assert_eq!(count(&got, sent).await, sent);
    // Over ~5 s of walks every 200 ms (two routers), backoff (1 s, 2 s, 4 s)
    // keeps the attempts on the silent broker to a handful.
    let attempts = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(attempts <= 8, "{attempts} connects to the silent broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_garbage_and_oversize_publishes_are_dropped() {
    use keyway_core::sidewire::{AppPacket, MsgType};
    use keyway_sidewire::link::{BrokerLink, LinkConfig};

    let brokers: Vec<Mosquitto> = ["127.0.0.11", "127.0.0.12"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let (a, b) = (key(), key());
    let b_topic = b.public().to_string();
    let rb = join(b, pool(&brokers), RouterConfig::default()).await;
    let got = inbox(&rb);
    // A raw client on every broker, publishing straight onto B's topic.
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let mut raw = Vec::new();
    for (i, broker) in brokers.iter().enumerate() {
        raw.push(
            BrokerLink::connect(
                &broker.addr().to_string(),
                b"raw",
                i,
                &LinkConfig::default(),
                tx.clone(),
            )
            .await
            .unwrap(),
        );
    }
    let publish = |bytes: Vec<u8>| {
        let raw = raw.clone();
        let topic = b_topic.clone();
        async move {
            for link in &raw {
                link.publish(topic.as_bytes(), &bytes).await.unwrap();
            }
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let packet = |queue: u8, msg: &[u8], ts: u64, signer: &Keypair| {
        let mut p = AppPacket::new([queue; 32], 0, ts, MsgType::Msg, msg);
        p.sign(signer);
        let mut out = vec![0u8; p.encoded_len()];
        p.encode(&mut out).unwrap();
        out
    };
    let settle = || tokio::time::sleep(Duration::from_millis(400));

    let first = packet(1, b"same bytes", now, &a);
    publish(first.clone()).await; // arrives once per broker: delivered once
    settle().await;
    publish(first).await; // a replay of the captured packet
    settle().await;
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "a replay is not delivered again"
    );
    publish(packet(2, b"same bytes", now, &a)).await; // new message, identical payload
    settle().await;
    assert_eq!(
        got.lock().unwrap().len(),
        2,
        "identical payloads in new messages are delivered"
    );

    // Garbage, a bad signature, a stale and an oversize packet: all dropped.
    publish(vec![0x42; 300]).await;
    let mut forged = packet(3, b"forged", now, &a);
    forged[40] ^= 1;
    publish(forged).await;
    publish(packet(4, b"stale", now - 1000, &a)).await;
    publish(packet(5, &vec![7u8; 70 * 1024], now, &a)).await;
    settle().await;
    assert_eq!(got.lock().unwrap().len(), 2);
    // And the node still works.
    publish(packet(6, b"still here", now, &a)).await;
    settle().await;
    let all: Vec<Vec<u8>> = got.lock().unwrap().iter().map(|m| m.data.clone()).collect();
    assert_eq!(
        all,
        vec![
            b"same bytes".to_vec(),
            b"same bytes".to_vec(),
            b"still here".to_vec()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hint_brokers_reach_a_peer_outside_the_senders_pool_and_idle_links_close() {
    let brokers: Vec<Mosquitto> = ["127.0.0.13", "127.0.0.14", "127.0.0.15"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    // The sender knows brokers 0 and 1; the receiver listens only on 2.
    let sender_pool = pool(&brokers[..2]);
    let receiver_pool = pool(&brokers[2..]);
    let (a, b) = (key(), key());
    let b_pk = *b.public();
    let sender_config = RouterConfig {
        idle_timeout: Duration::from_millis(800),
        resubscribe_every: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    let ra = join(a, sender_pool, sender_config).await;
    let rb = join(b, receiver_pool.clone(), RouterConfig::default()).await;
    let got = inbox(&rb);
    let hinted = brokers[2].addr().to_string();
    // Without hints there is no shared broker: no acknowledgement.
    assert!(
        ra.pipe(b_pk)
            .send(b"lost", Duration::from_millis(1500))
            .await
            .is_err()
    );
    // With the receiver's broker as a hint, delivered and acknowledged.
    ra.pipe_with_hints(b_pk, receiver_pool.brokers.clone())
        .send(b"found", Duration::from_secs(4))
        .await
        .unwrap();
    assert!(ra.brokers().contains(&hinted));
    // Opened only to send: closed once idle, reopened by the next send.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!ra.brokers().contains(&hinted), "idle outbound link closed");
    assert_eq!(ra.brokers().len(), 2, "the node's own subscriptions stay");
    ra.pipe_with_hints(b_pk, receiver_pool.brokers.clone())
        .send(b"again", Duration::from_secs(4))
        .await
        .unwrap();
    let data = payloads(&got, 2).await;
    assert_eq!(data, vec![b"found".to_vec(), b"again".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_hints_survive_a_restart() {
    let brokers: Vec<Mosquitto> = ["127.0.0.16", "127.0.0.17"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hints.json");
    let config = RouterConfig {
        hint_cache: Some(cache.clone()),
        ..RouterConfig::default()
    };
    // The receiver is only on broker 1; the sender's pool has only broker 0.
    let (a, b) = (key(), key());
    let b_pk = *b.public();
    let rb = join(b, pool(&brokers[1..]), RouterConfig::default()).await;
    let got = inbox(&rb);
    let ra = join(a.clone(), pool(&brokers[..1]), config.clone()).await;
    ra.pipe_with_hints(b_pk, pool(&brokers[1..]).brokers)
        .send(b"one", Duration::from_secs(4))
        .await
        .unwrap();
    ra.close(Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the file is written off the inbound path
    assert!(std::fs::metadata(&cache).is_ok(), "hints saved");

    // A new router with the same cache needs no hint any more.
    let again = join(a, pool(&brokers[..1]), config).await;
    // Without the cache the pool alone cannot reach B.
    assert!(
        again
            .pipe(b_pk)
            .use_cache(false)
            .send(b"uncached", Duration::from_millis(1500))
            .await
            .is_err()
    );
    again
        .pipe(b_pk)
        .send(b"two", Duration::from_secs(4))
        .await
        .unwrap();
    let data = payloads(&got, 2).await;
    assert_eq!(data, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injected_clock_stamps_and_judges_messages_and_close_ends_sends() {
    let broker = Mosquitto::start("127.0.0.18").unwrap();
    let (a, b, c) = (key(), key(), key());
    let (b_pk, c_pk) = (*b.public(), *c.public());
    let config = RouterConfig {
        resend_every: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    let start = |key, get_time: fn() -> u64, inbox: Arc<Mutex<Vec<Message>>>| {
        let router = Router::with_config(
            key,
            Some(Arc::new(move |m: &Message| {
                inbox.lock().unwrap().push(m.clone())
            })),
            get_time,
            pool(std::slice::from_ref(&broker)),
            config.clone(),
        );
        async move {
            router.start().await.unwrap();
            router
        }
    };
    // 1,000 s: well outside the 120 s freshness window.
    let ahead: fn() -> u64 = || system_time() + 1_000;
    let (at_b, at_c) = (Arc::default(), Arc::default());
    let ra = start(a, ahead, Arc::default()).await;
    let _rb = start(b, system_time, Arc::clone(&at_b)).await;
    let _rc = start(c, ahead, Arc::clone(&at_c)).await;

    // A's clock runs 1,000 s ahead: B, on the system clock, refuses its
    // packets as not fresh, so the send times out.
    let refused = ra
        .pipe(b_pk)
        .send(b"from the future", Duration::from_secs(1))
        .await;
    assert!(
        matches!(refused, Err(keyway_sidewire::RouterError::Timeout(_))),
        "{refused:?}"
    );
    assert!(at_b.lock().unwrap().is_empty());

    // C's clock agrees with A's: C accepts the message, and A accepts C's
    // ACK, stamped by C's clock.
    ra.pipe(c_pk)
        .send(b"same time here", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(count(&at_c, 1).await, 1);
    let got: Vec<Message> = at_c.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"same time here");
    assert_eq!(got[0].from, *ra.public_key());
    assert_ne!(got[0].queue_id, [0u8; 32], "the sender's random queue id");

    // After close, every clone of the router refuses to send.
    let clone = ra.clone();
    ra.close(Duration::from_secs(1)).await;
    let closed = clone
        .pipe(c_pk)
        .send(b"too late", Duration::from_secs(5))
        .await;
    assert!(
        matches!(closed, Err(keyway_sidewire::RouterError::Closed)),
        "{closed:?}"
    );
    assert!(clone.brokers().is_empty());
}

/// A reference node subscribes wherever its connects finished first (spec
/// §10 item 10): anywhere in the top 10 of its ranking. Modelled here by a
/// destination whose own pool is only the broker its key ranks 10th of 11
/// (the bundled pool's size): the sender's first publishes miss it, and
/// its resends must widen down the ranking until they reach it, within
/// the default one-second resend cadence and a 5 s timeout (publishing one
/// broker further per resend would need 7 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resends_widen_until_they_reach_a_destination_listening_low_in_its_ranking() {
    let brokers: Vec<Mosquitto> = (19..30)
        .map(|i| Mosquitto::start(&format!("127.0.0.{i}")).unwrap())
        .collect();
    let full = pool(&brokers);
    let (a, b) = (key(), key());
    let b_pk = *b.public();
    let only_tenth = Pool {
        brokers: vec![full.ranked(&b_pk)[0][9].clone()],
        ..full.clone()
    };
    let ra = join(a, full, RouterConfig::default()).await;
    let rb = join(b, only_tenth, RouterConfig::default()).await;
    let got = inbox(&rb);
    ra.pipe(b_pk)
        .send(b"found you", Duration::from_secs(5))
        .await
        .unwrap();
    let delivered = payloads(&got, 1).await;
    assert_eq!(delivered, vec![b"found you".to_vec()]);
}

/// The other direction: a sidewire 0.1.9 sender publishes on whichever of
/// the destination's top 10 brokers connected first, possibly its last.
/// Modelled by a raw client publishing a signed MSG only at the broker the
/// receiver's key ranks last of 5 (set size 2): the default configuration
/// subscribes there (`start` connects the set and the spares at once), one
/// spare does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_reachable_on_every_broker_a_reference_sender_may_pick() {
    use keyway_core::sidewire::{AppPacket, MsgType};
    use keyway_sidewire::link::{BrokerLink, LinkConfig};

    let brokers: Vec<Mosquitto> = (30..35)
        .map(|i| Mosquitto::start(&format!("127.0.0.{i}")).unwrap())
        .collect();
    let full = pool(&brokers);
    let sender = key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // What reaches `receiver` if it listens at the last broker of its ranking.
    let reached = |receiver: Keypair, config: RouterConfig| {
        let full = full.clone();
        let sender = &sender;
        async move {
            let pk = *receiver.public();
            let last = full.ranked(&pk)[0][4];
            let address = format!("{}:{}", last.host, last.port);
            let router = join(receiver, full.clone(), config).await;
            let got = inbox(&router);
            let (tx, _rx) = tokio::sync::mpsc::channel(16);
            let raw = BrokerLink::connect(&address, b"raw", 0, &LinkConfig::default(), tx)
                .await
                .unwrap();
            let mut packet = AppPacket::new([9; 32], 0, now, MsgType::Msg, b"from the last broker");
            packet.sign(sender);
            let mut bytes = vec![0u8; packet.encoded_len()];
            packet.encode(&mut bytes).unwrap();
            // As the reference retransmits: every 500 ms for 3 s.
            for _ in 0..6 {
                raw.publish(pk.to_string().as_bytes(), &bytes)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let delivered: Vec<Vec<u8>> =
                got.lock().unwrap().iter().map(|m| m.data.clone()).collect();
            router.close(Duration::ZERO).await;
            delivered
        }
    };
    assert_eq!(
        reached(key(), RouterConfig::default()).await,
        vec![b"from the last broker".to_vec()]
    );
    let lean = RouterConfig {
        spare_subscriptions: 1,
        ..RouterConfig::default()
    };
    assert!(reached(key(), lean).await.is_empty());
}

/// Issue 11 item 2: junk claiming to come from A (a valid MSG with A's key
/// and a bad signature), sent all the time, cannot keep A's genuine
/// messages from being delivered and acknowledged. The per-source limit
/// is set very low to show that junk cannot spend A's allowance: before,
/// the bucket was keyed on the unverified claim, so the junk emptied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_claiming_a_peers_key_does_not_silence_it() {
    use keyway_core::rate::RateLimit;
    use keyway_core::sidewire::{AppPacket, MsgType};
    use keyway_sidewire::link::{BrokerLink, LinkConfig};

    let brokers = vec![Mosquitto::start("127.0.0.21").unwrap()];
    let (a, b) = (key(), key());
    let (a_pk, b_pk) = (*a.public(), *b.public());
    let config = RouterConfig {
        per_source: RateLimit {
            rate: 0.1,
            burst: 2.0,
        },
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let rb = join(b, pool(&brokers), config).await;
    let got = inbox(&rb);
    let ra = join(a, pool(&brokers), RouterConfig::default()).await;
    let to_b = ra.pipe(b_pk);
    to_b.send(b"before", Duration::from_secs(10)).await.unwrap();

    // About 50 junk packets a second claiming A, until the test ends.
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let raw = BrokerLink::connect(
        &brokers[0].addr().to_string(),
        b"raw",
        99,
        &LinkConfig::default(),
        tx,
    )
    .await
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let junk = tokio::spawn({
        let stop = stop.clone();
        let topic = b_pk.to_string();
        async move {
            for i in 0u32..2_000 {
                let mut p = AppPacket::new([7; 32], i, system_time(), MsgType::Msg, b"junk");
                p.src_pk = *a_pk.as_bytes();
                p.sig = [0x11; 64];
                p.sig[..4].copy_from_slice(&i.to_be_bytes());
                let mut bytes = vec![0u8; p.encoded_len()];
                p.encode(&mut bytes).unwrap();
                let _ = raw.publish(topic.as_bytes(), &bytes).await;
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..3 {
        let data = format!("during {n}");
        let sent = to_b.send(data.as_bytes(), Duration::from_secs(8)).await;
        assert!(sent.is_ok(), "message {n} under junk: {sent:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    junk.await.unwrap();
    let all = payloads(&got, 4).await;
    assert_eq!(all, [&b"before"[..], b"during 0", b"during 1", b"during 2"]);
}

/// Issue 11 item 1 through the whole inbound pipeline: validly signed
/// messages from throwaway keys, stamped near the +120 s edge, overflow
/// the replay table (made small here so the test stays cheap; the core
/// test `a_flood_from_other_keys_does_not_silence_a_peer` floods the
/// default size), and A's next message is still delivered and ACKed.
/// Before, the first eviction raised one node-wide watermark past every
/// fresh message, and A's send timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_future_stamped_messages_does_not_silence_a_peer() {
    use keyway_core::sidewire::{AppPacket, MsgType};
    use keyway_sidewire::link::{BrokerLink, LinkConfig};

    let brokers = vec![Mosquitto::start("127.0.0.22").unwrap()];
    let (a, b) = (key(), key());
    let b_pk = *b.public();
    let config = RouterConfig {
        replay_slots: 32,
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let rb = join(b, pool(&brokers), config).await;
    let got = inbox(&rb);
    let ra = join(a, pool(&brokers), RouterConfig::default()).await;

    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let raw = BrokerLink::connect(
        &brokers[0].addr().to_string(),
        b"raw",
        99,
        &LinkConfig::default(),
        tx,
    )
    .await
    .unwrap();
    let topic = b_pk.to_string();
    let flooders: Vec<Keypair> = (0..12).map(|_| key()).collect();
    let now = system_time();
    for round in 0..16u32 {
        for (i, k) in flooders.iter().enumerate() {
            let ahead = 110 + u64::from(round % 8);
            // A payload per round: the same one renumbered in its queue
            // is a duplicate by content (the core receiver's rule).
            let body = format!("flood {round}");
            let mut p = AppPacket::new(
                [i as u8; 32],
                round,
                now + ahead,
                MsgType::Msg,
                body.as_bytes(),
            );
            p.sign(k);
            let mut bytes = vec![0u8; p.encoded_len()];
            p.encode(&mut bytes).unwrap();
            raw.publish(topic.as_bytes(), &bytes).await.unwrap();
        }
    }
    // The flood is judged before A sends: wait until deliveries stop.
    let mut last = usize::MAX;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let count = got.lock().unwrap().len();
        if count == last {
            break;
        }
        last = count;
    }
    assert!(got.lock().unwrap().len() >= 32, "the table overflowed");
    ra.pipe(b_pk)
        .send(b"from A", Duration::from_secs(8))
        .await
        .unwrap();
    assert!(got.lock().unwrap().iter().any(|m| m.data == b"from A"));
}

/// A raw MQTT client subscribed to `topic` on `broker`, and what it hears.
async fn raw_client(
    broker: &Mosquitto,
    topic: &[u8],
    id: usize,
) -> (
    keyway_sidewire::link::BrokerLink,
    tokio::sync::mpsc::Receiver<keyway_sidewire::link::Inbound>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let link = keyway_sidewire::link::BrokerLink::connect(
        &broker.addr().to_string(),
        topic,
        id,
        &keyway_sidewire::link::LinkConfig::default(),
        tx,
    )
    .await
    .unwrap();
    (link, rx)
}

fn signed(queue: [u8; 32], seq: u32, ts: u64, msg: &[u8], signer: &Keypair) -> Vec<u8> {
    use keyway_core::sidewire::{AppPacket, MsgType};
    let mut p = AppPacket::new(queue, seq, ts, MsgType::Msg, msg);
    p.sign(signer);
    let mut bytes = vec![0u8; p.encoded_len()];
    p.encode(&mut bytes).unwrap();
    bytes
}

/// ACKs heard on `rx` for `queue` within about `wait`.
async fn acks_heard(
    rx: &mut tokio::sync::mpsc::Receiver<keyway_sidewire::link::Inbound>,
    queue: [u8; 32],
    wait: Duration,
) -> usize {
    use keyway_core::sidewire::{AppPacket, MsgType};
    let mut count = 0;
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Some(inbound)) = tokio::time::timeout_at(until, rx.recv()).await {
        if let Ok(p) = AppPacket::decode(&inbound.payload)
            && p.msg_type == MsgType::Ack
            && p.queue_id == queue
        {
            count += 1;
        }
    }
    count
}

/// Review of issue 11 item 1: a flood evicts A's replay entry (it expires
/// first in its bucket), which raises A's watermark past A's message, so
/// A's resend (the same signed bytes) is `TooOld`. If B's first ACK was
/// lost, A's send used to fail though B delivered the message. Now B
/// keeps the signed ACK and re-sends it for an exact copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ack_is_resent_after_a_flood_evicted_the_message() {
    let brokers = vec![Mosquitto::start("127.0.0.23").unwrap()];
    let (a, b) = (key(), key());
    let (a_pk, b_pk) = (*a.public(), *b.public());
    let config = RouterConfig {
        replay_slots: 8,
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let rb = join(b, pool(&brokers), config).await;
    let got = inbox(&rb);
    let topic = b_pk.to_string();
    // A's first publish: nobody listens on A's topic yet, so B's ACK is lost.
    let (raw, _) = raw_client(&brokers[0], b"raw", 98).await;
    let now = system_time();
    let from_a = signed([0xa1; 32], 0, now, b"from A", &a);
    raw.publish(topic.as_bytes(), &from_a).await.unwrap();
    for _ in 0..100 {
        if !got.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.lock().unwrap().len(), 1, "A's message delivered");
    // The flood: one bucket of 8 slots, 24 messages stamped ahead of A's.
    let flooders: Vec<Keypair> = (0..12).map(|_| key()).collect();
    for round in 0..2u32 {
        for (i, k) in flooders.iter().enumerate() {
            let bytes = signed([i as u8; 32], round, now + 100, b"flood", k);
            raw.publish(topic.as_bytes(), &bytes).await.unwrap();
        }
    }
    // Judged once deliveries stop; some flooders' later messages are
    // refused too (their own entries were evicted).
    let mut last = usize::MAX;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let count = got.lock().unwrap().len();
        if count == last {
            break;
        }
        last = count;
    }
    assert!(got.lock().unwrap().len() > 8, "the bucket overflowed");
    // A now listens, and resends the same bytes: it must hear an ACK.
    let (_listen, mut acks) = raw_client(&brokers[0], a_pk.to_string().as_bytes(), 97).await;
    let mut heard = 0;
    for _ in 0..4 {
        raw.publish(topic.as_bytes(), &from_a).await.unwrap();
        heard += acks_heard(&mut acks, [0xa1; 32], Duration::from_millis(1500)).await;
        if heard > 0 {
            break;
        }
    }
    assert!(heard > 0, "A's resend is acknowledged");
    let from_a_count = got
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.data == b"from A")
        .count();
    assert_eq!(from_a_count, 1, "and delivered once");
}

/// Review of issue 11 item 3: copies of one delivered MSG, replayed at
/// line rate, used to cost one ACK publish each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_copies_of_a_message_are_reacked_at_most_once_per_interval() {
    let brokers = vec![Mosquitto::start("127.0.0.24").unwrap()];
    let (a, b) = (key(), key());
    let (a_pk, b_pk) = (*a.public(), *b.public());
    let config = RouterConfig {
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let rb = join(b, pool(&brokers), config).await;
    let got = inbox(&rb);
    let topic = b_pk.to_string();
    let (raw, _) = raw_client(&brokers[0], b"raw", 96).await;
    let (_listen, mut acks) = raw_client(&brokers[0], a_pk.to_string().as_bytes(), 95).await;
    let from_a = signed([0xa2; 32], 0, system_time(), b"once", &a);
    raw.publish(topic.as_bytes(), &from_a).await.unwrap();
    assert!(acks_heard(&mut acks, [0xa2; 32], Duration::from_millis(1500)).await >= 1);
    for _ in 0..300 {
        raw.publish(topic.as_bytes(), &from_a).await.unwrap();
    }
    let heard = acks_heard(&mut acks, [0xa2; 32], Duration::from_millis(2000)).await;
    assert!(heard <= 20, "{heard} ACKs for 300 copies");
    assert_eq!(got.lock().unwrap().len(), 1);
}

/// Review of issue 11 item 2: A's own genuine packets, captured and
/// replayed once stale (or PROBEs A signed), used to be admitted and
/// charged to A's budget before the signature check refused them, so a
/// replay of A's old traffic silenced A. Now they are dropped before any
/// budget is charged (limits set very low to show it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_stale_packets_and_probes_do_not_spend_a_peers_budget() {
    use keyway_core::rate::RateLimit;
    use keyway_core::sidewire::{AppPacket, MsgType};

    let brokers = vec![Mosquitto::start("127.0.0.25").unwrap()];
    let (a, b) = (key(), key());
    let b_pk = *b.public();
    let low = RateLimit {
        rate: 0.05,
        burst: 2.0,
    };
    let config = RouterConfig {
        per_source: low,
        claimed: low,
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let rb = join(b, pool(&brokers), config).await;
    let got = inbox(&rb);
    let topic = b_pk.to_string();
    let (raw, _) = raw_client(&brokers[0], b"raw", 94).await;
    let ra = join(a.clone(), pool(&brokers), RouterConfig::default()).await;
    let to_b = ra.pipe(b_pk);
    to_b.send(b"before", Duration::from_secs(10)).await.unwrap();
    let now = system_time();
    for i in 0..10u8 {
        raw.publish(
            topic.as_bytes(),
            &signed([i; 32], 0, now - 1000, b"old", &a),
        )
        .await
        .unwrap();
        let mut probe = AppPacket::new([i; 32], 1, now, MsgType::Probe, b"");
        probe.sign(&a);
        let mut bytes = vec![0u8; probe.encoded_len()];
        probe.encode(&mut bytes).unwrap();
        raw.publish(topic.as_bytes(), &bytes).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = to_b.send(b"after", Duration::from_secs(5)).await;
    assert!(sent.is_ok(), "A after the replays: {sent:?}");
    let all = payloads(&got, 2).await;
    assert_eq!(all, [&b"before"[..], b"after"]);
}

/// Review of issue 11 item 5: a `send` future dropped before it ends (a
/// `tokio::time::timeout` around it, a cancelled Python awaitable) used to
/// leave its pending entry behind for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_sends_leave_nothing_pending() {
    let brokers = vec![Mosquitto::start("127.0.0.26").unwrap()];
    let config = RouterConfig {
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let ra = join(key(), pool(&brokers), config).await;
    let nobody = ra.pipe(*key().public());
    for _ in 0..50 {
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            nobody.send(b"never acknowledged", Duration::from_secs(60)),
        )
        .await;
        assert!(cancelled.is_err());
    }
    assert_eq!(ra.pending_sends(), 0);
}

/// Issue 13: the node holds a fixed number of sends (256) and the Router
/// queues 64 more; further callers wait. Every send still ends by its own
/// timeout, nothing stays pending, and the Router keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_nodes_table_wait_and_end_by_their_timeout() {
    use keyway_sidewire::RouterError;
    let brokers = vec![Mosquitto::start("127.0.0.27").unwrap()];
    let config = RouterConfig {
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let ra = join(key(), pool(&brokers), config.clone()).await;
    let b = key();
    let b_pk = *b.public();
    let rb = join(b, pool(&brokers), config).await;
    let got = inbox(&rb);
    let nobody = *key().public();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..400u32 {
        let pipe = ra.pipe(nobody);
        sends.spawn(async move { pipe.send(&i.to_be_bytes(), Duration::from_secs(2)).await });
    }
    let mut timed_out = 0;
    while let Some(result) = tokio::time::timeout(Duration::from_secs(30), sends.join_next())
        .await
        .expect("every send ends")
    {
        assert!(
            matches!(result.unwrap(), Err(RouterError::Timeout(_))),
            "a send to nobody can only time out"
        );
        timed_out += 1;
    }
    assert_eq!(timed_out, 400);
    assert_eq!(ra.pending_sends(), 0);
    ra.pipe(b_pk)
        .send(b"still delivering", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(count(&got, 1).await, 1);
}

/// Review of issue 13's Router: handlers are blocking callbacks (the
/// Python wheel's take the GIL). One that does not return must not stop
/// the node: its messages are still acknowledged, later ones too, and they
/// reach the handler in order once it returns. (With the handlers called
/// on the driver task, the first ACK never went out and both sends timed
/// out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_handler_does_not_stop_acks() {
    let brokers = vec![Mosquitto::start("127.0.0.28").unwrap()];
    let config = RouterConfig {
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let ra = join(key(), pool(&brokers), config.clone()).await;
    let b = key();
    let b_pk = *b.public();
    let rb = join(b, pool(&brokers), config).await;
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    rb.add_msg_handler(move |m| {
        // Blocks until the test releases it (at most 30 s).
        let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(30));
        sink.lock().unwrap().push(m.data.clone());
    });
    let to_b = ra.pipe(b_pk);
    to_b.send(b"first", Duration::from_secs(5)).await.unwrap();
    to_b.send(b"second", Duration::from_secs(5)).await.unwrap();
    assert!(
        got.lock().unwrap().is_empty(),
        "the handler is still blocked"
    );
    release.send(()).unwrap();
    release.send(()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *got.lock().unwrap(),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
}

/// A handler that panics costs only its own call: the message it panicked
/// on was already acknowledged, and later messages still reach every
/// handler, in order. (Before, the panic ended the handlers' thread and
/// every later message was acknowledged and then dropped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_does_not_stop_later_deliveries() {
    let brokers = vec![Mosquitto::start("127.0.0.29").unwrap()];
    let config = RouterConfig {
        spare_subscriptions: 0,
        ..RouterConfig::default()
    };
    let ra = join(key(), pool(&brokers), config.clone()).await;
    let b = key();
    let b_pk = *b.public();
    let rb = join(b, pool(&brokers), config).await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    rb.add_msg_handler(move |m| {
        if m.data == b"boom" {
            panic!("a handler's bug");
        }
        sink.lock().unwrap().push(m.data.clone());
    });
    let to_b = ra.pipe(b_pk);
    to_b.send(b"first", Duration::from_secs(5)).await.unwrap();
    to_b.send(b"boom", Duration::from_secs(5)).await.unwrap();
    to_b.send(b"third", Duration::from_secs(5)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *got.lock().unwrap(),
        vec![b"first".to_vec(), b"third".to_vec()]
    );
}
