//! Brokers that cannot hang a node (issue 11, sidewire item 3): one that
//! completes the handshake and then stops reading, silent ones and dead
//! ones named as hints, next to private mosquitto brokers on loopback.
//! Every send is wrapped in a generous outer timeout, so a send that hangs
//! fails the test instead of hanging it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keyway_core::rand_core::UnwrapErr;
use keyway_core::{Keypair, PublicKey};
use keyway_sidewire::{BrokerEntry, Pool, Router, RouterConfig, RouterError, system_time};
use keyway_tests::inbox::{count, inbox};
use keyway_tests::mosquitto::{Mosquitto, sidewire_pool as pool};
use keyway_tests::wedged::WedgedBroker;

/// Beyond a send's own timeout, before the test calls it hung: generous,
/// for 2 loaded cores.
const SLACK: Duration = Duration::from_secs(20);

fn key() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

async fn join(key: Keypair, pool: Pool, config: RouterConfig) -> Router {
    let router = Router::with_config(key, None, system_time, pool, config);
    router.start().await.unwrap();
    router
}

/// `pipe.send` under an outer timeout: `Err(())` if it hung.
async fn send_or_hang(
    router: &Router,
    dest: PublicKey,
    hints: Vec<BrokerEntry>,
    data: &[u8],
    timeout: Duration,
) -> Result<Result<(), RouterError>, ()> {
    tokio::time::timeout(
        timeout + SLACK,
        router.pipe_with_hints(dest, hints).send(data, timeout),
    )
    .await
    .map_err(|_| ())
}

/// Big sends to nobody from `router`, `tasks` at once, `rounds` each:
/// every one is published on the whole (small) pool, the wedged broker
/// included, until its queue and socket buffers are full. Returns the
/// number of sends that hung.
fn flood_with_big_sends(
    router: &Router,
    tasks: usize,
    rounds: usize,
) -> tokio::task::JoinHandle<usize> {
    let router = router.clone();
    tokio::spawn(async move {
        let hung = Arc::new(AtomicUsize::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let router = router.clone();
            let hung = hung.clone();
            set.spawn(async move {
                for _ in 0..rounds {
                    let nobody = *key().public();
                    let sent = send_or_hang(
                        &router,
                        nobody,
                        Vec::new(),
                        &[7u8; 60_000],
                        Duration::from_secs(2),
                    )
                    .await;
                    if sent.is_err() {
                        hung.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
        hung.load(Ordering::SeqCst)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_returns_by_its_timeout_whatever_a_broker_does() {
    let wedged = WedgedBroker::start("127.0.0.41").unwrap();
    let live: Vec<Mosquitto> = ["127.0.0.42", "127.0.0.43"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    let mut mixed = pool(&live);
    mixed.brokers.push(wedged.entry());
    let mut config = RouterConfig {
        resend_every: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    // The wedged link stays open for the whole test: sends must cope with
    // it, not only with its closing.
    config.link.write_timeout = Duration::from_secs(120);
    let (a, b) = (key(), key());
    let b_pk = *b.public();
    let ra = join(a, mixed, config.clone()).await;
    let rb = join(b, pool(&live), RouterConfig::default()).await;
    let got = inbox(&rb);
    // A node whose only broker is the wedged one.
    let rc = join(
        key(),
        Pool {
            brokers: vec![wedged.entry()],
            ..Pool::default()
        },
        config,
    )
    .await;

    let (flood_a, flood_c) = (
        flood_with_big_sends(&ra, 32, 2),
        flood_with_big_sends(&rc, 32, 1),
    );
    assert_eq!(flood_a.await.unwrap(), 0, "sends from A hung");
    assert_eq!(flood_c.await.unwrap(), 0, "sends from C hung");

    // A reaches B through the live brokers, with its link to the wedged
    // one full.
    for i in 0..3u8 {
        let sent = send_or_hang(&ra, b_pk, Vec::new(), &[i], Duration::from_secs(4)).await;
        assert!(matches!(sent, Ok(Ok(()))), "{sent:?}");
    }
    assert_eq!(count(&got, 3).await, 3);
    // C has no way to B: its send fails at its timeout instead of hanging.
    let sent = send_or_hang(&rc, b_pk, Vec::new(), b"nowhere", Duration::from_secs(1)).await;
    assert!(matches!(sent, Ok(Err(RouterError::Timeout(_)))), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_reading_is_dropped_and_redialled_with_backoff() {
    let wedged = WedgedBroker::start("127.0.0.44").unwrap();
    let live = Mosquitto::start("127.0.0.45").unwrap();
    let mut mixed = pool(std::slice::from_ref(&live));
    mixed.brokers.push(wedged.entry());
    let mut config = RouterConfig {
        resend_every: Duration::from_millis(100),
        resubscribe_every: Duration::from_millis(100),
        ..RouterConfig::default()
    };
    config.link.write_timeout = Duration::from_millis(300);
    let ra = join(key(), mixed, config).await;
    // About 6 s of big sends, each published on the wedged broker too.
    let flood = flood_with_big_sends(&ra, 16, 3);
    assert_eq!(flood.await.unwrap(), 0, "sends hung");
    let handshakes = wedged.handshakes();
    // Noticed and redialled (once the backoff allows)...
    assert!(
        handshakes >= 2,
        "{handshakes} handshakes: the stalled link was never replaced"
    );
    // ...but not every resubscription cycle (100 ms): the backoff after
    // each stall (1 s, 2 s, 4 s) keeps it to a few.
    assert!(
        handshakes <= 6,
        "{handshakes} handshakes: no backoff after stalls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_ack_work_stays_bounded_while_the_outbound_side_is_wedged() {
    use keyway_core::sidewire::{AppPacket, MsgType};
    use keyway_sidewire::link::{BrokerLink, LinkConfig};

    let wedged = WedgedBroker::start("127.0.0.46").unwrap();
    let live = Mosquitto::start("127.0.0.47").unwrap();
    let mut mixed = pool(std::slice::from_ref(&live));
    mixed.brokers.push(wedged.entry());
    // A sender whose own top broker is the wedged one: the first ACK of
    // each of its MSGs goes there (and back the way the MSG came).
    let sender = loop {
        let k = key();
        if mixed.ranked(k.public())[0][0].port == wedged.addr().port() {
            break k;
        }
    };
    let mut config = RouterConfig {
        resend_every: Duration::from_millis(100),
        per_source: keyway_core::rate::RateLimit {
            rate: 1e6,
            burst: 1e6,
        },
        max_ack_tasks: 32,
        ..RouterConfig::default()
    };
    config.link.write_timeout = Duration::from_secs(120);
    let b = key();
    let b_topic = b.public().to_string();
    let rb = join(b, mixed, config).await;
    let got = inbox(&rb);
    // Wedge B's link to that broker with B's own big sends (which, on
    // today's code, hang: they are left running and dropped at the end).
    let wedging = flood_with_big_sends(&rb, 32, 1);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let raw = BrokerLink::connect(
        &live.addr().to_string(),
        b"raw",
        0,
        &LinkConfig::default(),
        tx,
    )
    .await
    .unwrap();
    let now = system_time();
    let msgs: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let mut queue = [0u8; 32];
            queue[..4].copy_from_slice(&i.to_be_bytes());
            let mut p = AppPacket::new(queue, 0, now, MsgType::Msg, b"flood");
            p.sign(&sender);
            let mut out = vec![0u8; p.encoded_len()];
            p.encode(&mut out).unwrap();
            out
        })
        .collect();
    let most = Arc::new(AtomicUsize::new(0));
    let watching = {
        let (rb, most) = (rb.clone(), most.clone());
        tokio::spawn(async move {
            loop {
                most.fetch_max(rb.acks_in_flight(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for m in &msgs {
        raw.publish(b_topic.as_bytes(), m).await.unwrap();
    }
    // Until the flood is handled (or 20 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = 0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = got.lock().unwrap().len();
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    watching.abort();
    wedging.abort();
    let delivered = got.lock().unwrap().len();
    let most = most.load(Ordering::SeqCst).max(rb.acks_in_flight());
    assert!(delivered >= 100, "only {delivered} of the flood delivered");
    assert!(most <= 32, "{most} ACK tasks at once for {delivered} MSGs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hinted_brokers_connect_in_parallel_within_the_deadline_and_back_off() {
    // Accept TCP, never answer MQTT: each costs a whole connect timeout.
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut hints = Vec::new();
    for _ in 0..3 {
        let silent = std::net::TcpListener::bind("127.0.0.48:0").unwrap();
        hints.push(BrokerEntry::new(
            "127.0.0.48",
            silent.local_addr().unwrap().port(),
        ));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in silent.incoming().flatten().take(100) {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
    }
    // Nothing listening: refused at once.
    for _ in 0..2 {
        let port = std::net::TcpListener::bind("127.0.0.49:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        hints.push(BrokerEntry::new("127.0.0.49", port));
    }
    let brokers: Vec<Mosquitto> = ["127.0.0.50", "127.0.0.51"]
        .iter()
        .map(|ip| Mosquitto::start(ip).unwrap())
        .collect();
    // B listens only where the last hint points; A's pool does not have it.
    hints.push(pool(&brokers[1..]).brokers[0].clone());
    let mut config = RouterConfig {
        // One failure keeps a broker out for the whole test.
        backoff_base: Duration::from_secs(60),
        ..RouterConfig::default()
    };
    config.link.connect_timeout = Duration::from_secs(2);
    let ra = join(key(), pool(&brokers[..1]), config).await;
    let b = key();
    let b_pk = *b.public();
    let rb = join(b, pool(&brokers[1..]), RouterConfig::default()).await;
    let got = inbox(&rb);
    // Three silent hints in a row would cost 6 s; the send has 3.
    for i in 0..5u8 {
        let sent = send_or_hang(&ra, b_pk, hints.clone(), &[i], Duration::from_secs(3)).await;
        assert!(matches!(sent, Ok(Ok(()))), "send {i}: {sent:?}");
    }
    // Past the connect timeout: the silent hints have failed and back off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 5..10u8 {
        let sent = send_or_hang(&ra, b_pk, hints.clone(), &[i], Duration::from_secs(3)).await;
        assert!(matches!(sent, Ok(Ok(()))), "send {i}: {sent:?}");
    }
    assert_eq!(count(&got, 10).await, 10);
    let dialled = accepted.load(Ordering::SeqCst);
    assert!(dialled <= 3, "{dialled} connects to 3 silent hints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_with_an_endless_timeout_ends_at_its_ack_without_panicking() {
    let broker = Mosquitto::start("127.0.0.52").unwrap();
    let ra = join(
        key(),
        pool(std::slice::from_ref(&broker)),
        RouterConfig::default(),
    )
    .await;
    let b = key();
    let b_pk = *b.public();
    let rb = join(
        b,
        pool(std::slice::from_ref(&broker)),
        RouterConfig::default(),
    )
    .await;
    let got = inbox(&rb);
    let sent = tokio::time::timeout(SLACK, ra.pipe(b_pk).send(b"whenever", Duration::MAX)).await;
    assert!(matches!(sent, Ok(Ok(()))), "{sent:?}");
    assert_eq!(count(&got, 1).await, 1);
}

/// Review of issue 11 item 4: a broker that completes the handshake and
/// then neither reads nor writes loses its link at the missing PINGRESP;
/// that closure used to count as a link that had worked and reset the
/// backoff, so the broker was redialled every keep-alive or two. Now only
/// a link that heard from its broker after the handshake resets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_a_ping_is_redialled_with_backoff() {
    let mute = WedgedBroker::start("127.0.0.53").unwrap();
    let live = Mosquitto::start("127.0.0.54").unwrap();
    let mut mixed = pool(std::slice::from_ref(&live));
    mixed.brokers.push(mute.entry());
    let mut config = RouterConfig {
        resubscribe_every: Duration::from_millis(100),
        backoff_base: Duration::from_secs(3),
        ..RouterConfig::default()
    };
    config.link.keep_alive = Duration::from_secs(1);
    let ra = join(key(), mixed, config).await;
    // Links to it close at ~2 s; without backoff it is redialled at once.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let handshakes = mute.handshakes();
    assert!(handshakes >= 2, "{handshakes} handshakes: never redialled");
    assert!(
        handshakes <= 3,
        "{handshakes} handshakes: no backoff after dead links"
    );
    drop(ra);
}
