//! keyway-embassy's timing on embassy-time's mock clock: the machines'
//! deadlines reach embassy timers through `keyway_embassy::clock`, and the
//! drivers wait exactly as long as the machines say, no less, no more
//! than one step. The network is a device on which nothing answers.
#![allow(clippy::unwrap_used)]

use core::time::Duration;

use embassy_net::{IpEndpoint, Ipv4Address};
use embassy_time::{Duration as EmbassyDuration, MockDriver, Timer};
use keyway_core::Keypair;
use keyway_core::mqtt::SessionConfig;
use keyway_core::namebump::client::Policy;
use keyway_core::sidewire::node::ack_cache::SourceAcks;
use keyway_core::sidewire::node::backoff::BackoffLimits;
use keyway_core::sidewire::node::{Node, NodeConfig, NodeTables, PoolBroker, PoolSlice};
use keyway_core::sidewire::rendezvous::{AF_INET, Ranking};
use keyway_core::sidewire::{Peer, Slot};
use keyway_core::time::Instant;
use keyway_embassy::clock;
use keyway_embassy::namebump::{Client, Failure, NamebumpError};
use keyway_embassy::sidewire::{Happening, Sidewire, SocketMemory};
use keyway_embassy_mock_time::{CounterRng, MockWall, connects, datagrams, run, serial, stack};

const STEP: EmbassyDuration = EmbassyDuration::from_millis(1);
const SERVER: Ipv4Address = Ipv4Address::new(10, 78, 0, 1);

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// The clock shim follows the mock clock to the microsecond, and a
/// machine's deadline turned into a `Timer::at` fires at that deadline,
/// not a tick before.
#[test]
fn a_machine_deadline_fires_exactly_when_mock_time_reaches_it() {
    let _clock = serial();
    let (_, mut runner, _) = stack();
    assert_eq!(clock::now(), Instant::ZERO);
    MockDriver::get().advance(EmbassyDuration::from_micros(1_234_567));
    assert_eq!(clock::now(), Instant::from_micros(1_234_567));

    let deadline = clock::now() + Duration::from_millis(2_500);
    let timer = Timer::at(clock::to_embassy(deadline));
    let ((), fired) = run(&mut runner, timer, STEP, EmbassyDuration::from_secs(10)).unwrap();
    assert_eq!(clock::from_embassy(fired), deadline);
}

/// A GET no server answers: one request per attempt, each after the
/// previous attempt's reply timeout and the retry pause (the core's
/// policy), and a typed timeout after the last attempt's reply timeout.
#[test]
fn namebump_retries_at_the_policy_pauses_then_times_out() {
    let _clock = serial();
    let (stack, mut runner, wire) = stack();
    let server_key = Keypair::generate(&mut CounterRng(1));
    let policy = Policy {
        attempts: 3,
        retry_pause: Duration::from_millis(700),
        reply_timeout: Duration::from_millis(1_500),
        udp: true,
    };
    let client = Client::new(
        stack,
        IpEndpoint::new(SERVER.into(), 5300),
        *server_key.public(),
        MockWall,
    )
    .with_policy(policy);
    let mut rng = CounterRng(2);
    let (result, ended) = run(
        &mut runner,
        client.get(b"device", &mut rng),
        STEP,
        EmbassyDuration::from_secs(60),
    )
    .unwrap();

    let sent = datagrams(&wire, 5300);
    eprintln!("datagrams at {sent:?}, ended at {ended:?}, {result:?}");
    let period = micros(policy.reply_timeout + policy.retry_pause);
    let expected: Vec<u64> = (0..u64::from(policy.attempts))
        .map(|k| k * period)
        .collect();
    assert_eq!(
        sent.len(),
        expected.len(),
        "one request per attempt: {sent:?}"
    );
    for (at, want) in sent.iter().zip(&expected) {
        assert!(
            (*want..=*want + micros(Duration::from_millis(2))).contains(at),
            "request at {at} µs, the policy says {want} µs: {sent:?}"
        );
    }
    let end = expected.last().unwrap() + micros(policy.reply_timeout);
    let ended = ended.as_micros();
    assert!(
        (end..=end + micros(Duration::from_millis(2))).contains(&ended),
        "gave up at {ended} µs, the policy says {end} µs"
    );
    match result {
        Err(NamebumpError::Failed(Failure::Timeout { attempts })) => {
            assert_eq!(attempts, policy.attempts)
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

type OneBroker = Node<
    PoolSlice<'static>,
    [Slot; 16],
    [u64; 64],
    [Peer; 4],
    [SourceAcks; 1],
    1,
    1,
    2,
    4,
    4,
    4,
    1,
>;

const POOL: [PoolBroker<'static>; 1] = [PoolBroker {
    host: "10.78.0.1",
    weight: 1.0,
    af: AF_INET,
}];

/// A broker that never answers a connect: each connect is given up at
/// the first of the MQTT session's handshake deadline and the node's
/// connect timeout, and the next starts after the broker's backoff (1 s,
/// doubling), on the next maintenance tick at the latest. A send waiting
/// meanwhile fails at its own timeout.
#[test]
fn a_silent_broker_is_redialled_after_the_connect_timeout_and_the_backoff() {
    let _clock = serial();
    let (stack, mut runner, wire) = stack();
    let config = NodeConfig {
        connect_timeout: Duration::from_secs(5),
        resubscribe_every: Duration::from_secs(1),
        backoff: BackoffLimits {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        },
        max_message: 1024,
        ..NodeConfig::default()
    };
    let tables = NodeTables {
        slots: [Slot::EMPTY; 16],
        watermarks: [0; 64],
        peers: [Peer::EMPTY; 4],
        acks: [SourceAcks::EMPTY; 1],
    };
    let pool = PoolSlice {
        brokers: &POOL,
        ranking: Ranking::Compatible,
    };
    let mut rng = CounterRng(3);
    let key = Keypair::generate(&mut rng);
    let node: OneBroker = Node::new(key, pool, config, tables, &mut rng, clock::now());
    let endpoints = Box::leak(Box::new([IpEndpoint::new(SERVER.into(), 1883)]));
    let sockets = Box::leak(Box::new([SocketMemory::<1536>::new()]));
    let session = SessionConfig {
        connect_timeout: Duration::from_secs(2),
        ..SessionConfig::default()
    };
    let mut sidewire: Sidewire<'_, _, _, _, _, _, _, 1, 1, 2, 1216, 4, 4, 4, 1> =
        Sidewire::new(stack, node, endpoints, sockets, session, MockWall);
    let dest = Keypair::generate(&mut rng);
    let send_timeout = Duration::from_millis(4_300);
    let send = sidewire
        .send(dest.public(), b"hello", send_timeout, &mut rng)
        .unwrap();
    let mut failed = Vec::new();
    let until = embassy_time::Instant::from_secs(60);
    let mut on = |h: Happening<'_>| {
        if let Happening::SendFailed(id, _) = h {
            failed.push((id, clock::now()));
        }
        false
    };
    let run_node = sidewire.run_until(until, &mut rng, &mut on);
    run(&mut runner, run_node, STEP, EmbassyDuration::from_secs(61)).unwrap();

    assert_eq!(
        failed,
        [(send, Instant::ZERO + send_timeout)],
        "the send fails once, at its timeout"
    );
    let starts = connects(&wire, 1883);
    eprintln!("connects at {starts:?}");
    // 2 + 1, 2 + 2, 2 + 4, 2 + 8, 2 + 16 s: six connects in a minute.
    assert!(starts.len() >= 5, "too few connects: {starts:?}");
    let slack = micros(config.resubscribe_every) + micros(Duration::from_millis(2));
    for (n, pair) in starts.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let given_up = config.connect_timeout.min(session.connect_timeout);
        let least = micros(given_up + config.backoff.wait(n as u32 + 1));
        assert!(
            (least..=least + slack).contains(&gap),
            "connect {} came {gap} µs after the one before; the node says {least} µs \
             (+ one maintenance tick): {starts:?}",
            n + 2
        );
    }
}
