//! The sidewire node machine in fake time: every timing rule and every
//! hostile-input rule, driven directly (no sockets, no sleeps, no tokio).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_core::sidewire::node::ack_cache::SourceAcks;
use keyway_core::sidewire::node::{
    BrokerId, Dropped, Event, LinkDown, LinkId, Node, NodeConfig, NodeTables, PoolBroker,
    PoolSlice, PoolView, Screened, SendId, Transmit,
};
use keyway_core::sidewire::rendezvous::{AF_INET, Ranking};
use keyway_core::sidewire::{AppPacket, MsgType, Peer, ScreenLimits, Slot};
use keyway_core::time::Instant;

const UNIX: u64 = 1_800_000_000;

const HOSTS: [&str; 12] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "10.0.0.5",
    "10.0.0.6",
    "10.0.0.7",
    "10.0.0.8",
    "10.0.0.9",
    "10.0.0.10",
    "10.0.0.11",
    "10.0.0.12",
];

fn brokers(n: usize) -> &'static [PoolBroker<'static>] {
    let list: Vec<PoolBroker<'static>> = HOSTS[..n]
        .iter()
        .map(|host| PoolBroker {
            host,
            weight: 1.0,
            af: AF_INET,
        })
        .collect();
    Box::leak(list.into_boxed_slice())
}

type TestNode =
    Node<PoolSlice<'static>, Vec<Slot>, Vec<u64>, Vec<Peer>, Vec<SourceAcks>, 32, 8, 16>;

fn node(key: &Keypair, pool: usize, config: NodeConfig) -> TestNode {
    let tables = NodeTables {
        // 128 buckets of 8: with 256 slots, the 80 same-second MSGs of
        // a_full_outbox_drops_publishes_and_counts_them overflowed one of
        // 32 random buckets in ~5% of runs (an eviction raises the
        // source's watermark, refusing the rest as too old).
        slots: vec![Slot::EMPTY; 1024],
        watermarks: vec![0; 1024],
        peers: vec![Peer::EMPTY; 64],
        acks: vec![SourceAcks::EMPTY; 64],
    };
    Node::new(
        key.clone(),
        PoolSlice {
            brokers: brokers(pool),
            ranking: Ranking::Compatible,
        },
        config,
        tables,
        &mut UnwrapErr(getrandom::SysRng),
        Instant::ZERO,
    )
}

fn keypair(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32]).unwrap()
}

fn at(secs: f64) -> Instant {
    Instant::from_micros((secs * 1e6) as u64)
}

/// A shell where every connect succeeds at once: drains the node's
/// transmits, bringing links up, and returns what it saw.
#[derive(Default)]
struct Shell {
    /// Which broker each link went to.
    links: Vec<(LinkId, BrokerId)>,
    connects: Vec<(Instant, BrokerId)>,
    disconnects: Vec<(Instant, LinkId)>,
    sends: Vec<(LinkId, SendId)>,
    acks: Vec<(LinkId, Vec<u8>)>,
    /// Connects fail instead.
    refuse: bool,
    /// Connects are left unanswered (the test answers them).
    hold: bool,
}

impl Shell {
    fn drain(&mut self, node: &mut TestNode, now: Instant, unix: u64) {
        let mut buf = [0u8; 256];
        for _ in 0..10_000 {
            let Some(t) = node.poll_transmit(now, &mut buf) else {
                return;
            };
            match t {
                Transmit::Connect { link, broker } => {
                    self.connects.push((now, broker));
                    self.links.push((link, broker));
                    if self.hold {
                        continue;
                    }
                    if self.refuse {
                        node.handle_link_down(now, unix, link, LinkDown::ConnectFailed);
                    } else {
                        node.handle_link_up(now, unix, link);
                    }
                }
                Transmit::Disconnect { link } => self.disconnects.push((now, link)),
                Transmit::PublishSend { link, send, .. } => self.sends.push((link, send)),
                Transmit::PublishAck { link, len, .. } => {
                    self.acks.push((link, buf[..len].to_vec()))
                }
            }
        }
        panic!("the node never stopped transmitting");
    }

    fn broker(&self, link: LinkId) -> BrokerId {
        self.links.iter().find(|(l, _)| *l == link).unwrap().1
    }

    /// Runs the node's timers from `from` to `to`, draining after each.
    fn run(&mut self, node: &mut TestNode, to: Instant) {
        for _ in 0..100_000 {
            let Some(next) = node.poll_timeout().filter(|t| *t <= to) else {
                return;
            };
            let unix = UNIX + next.as_micros() / 1_000_000;
            node.handle_timeout(next, unix);
            self.drain(node, next, unix);
        }
        panic!("timers never settled");
    }
}

fn topic(key: &Keypair) -> Vec<u8> {
    key.public().to_string().into_bytes()
}

fn msg(from: &Keypair, queue: u8, seq: u32, ts: u64, body: &[u8]) -> Vec<u8> {
    let mut p = AppPacket::new([queue; 32], seq, ts, MsgType::Msg, body);
    p.sign(from);
    let mut out = vec![0; p.encoded_len()];
    p.encode(&mut out).unwrap();
    out
}

/// A packet claiming `src`, with a signature that cannot verify.
fn junk(src: [u8; 33], queue: u32, ts: u64) -> Vec<u8> {
    let mut q = [0u8; 32];
    q[..4].copy_from_slice(&queue.to_be_bytes());
    let mut p = AppPacket::new(q, 0, ts, MsgType::Msg, b"junk");
    p.src_pk = src;
    let mut out = vec![0; p.encoded_len()];
    p.encode(&mut out).unwrap();
    out
}

fn fresh_key(i: u32) -> [u8; 33] {
    let mut k = [2u8; 33];
    k[1..5].copy_from_slice(&i.to_be_bytes());
    k
}

/// Sends `data` to `dest` with no hints; the packet lands in `buf`.
fn send(
    n: &mut TestNode,
    now: Instant,
    unix: u64,
    dest: &[u8; 33],
    data: &[u8],
    timeout: Duration,
    buf: &mut [u8],
) -> Result<(SendId, usize), keyway_core::sidewire::node::SendError> {
    n.send(
        now,
        unix,
        dest,
        data,
        &[],
        timeout,
        &mut UnwrapErr(getrandom::SysRng),
        buf,
    )
}

/// The signature check a shell runs, then the node's verdict.
fn check(node: &mut TestNode, now: Instant, unix: u64, link: LinkId, payload: &[u8]) -> bool {
    let valid = AppPacket::decode(payload).unwrap().verify().is_ok();
    node.handle_verified(now, unix, link, payload, valid)
        .is_some()
}

fn started(pool: usize, config: NodeConfig) -> (Keypair, TestNode, Shell) {
    let key = keypair(1);
    let mut n = node(&key, pool, config);
    let mut shell = Shell::default();
    shell.run(&mut n, Instant::ZERO);
    (key, n, shell)
}

#[test]
fn resends_widen_down_the_ranking_to_the_tenth() {
    let (_, mut n, mut shell) = started(12, NodeConfig::default());
    let dest = keypair(2);
    let mut buf = vec![0; 512];
    let (id, _) = send(
        &mut n,
        Instant::ZERO,
        UNIX,
        dest.public().as_bytes(),
        b"hi",
        Duration::from_secs(10),
        &mut buf,
    )
    .unwrap();
    let mut per_attempt = Vec::new();
    for second in 0..6u64 {
        shell.sends.clear();
        if second > 0 {
            shell.run(&mut n, Instant::from_secs(second));
        } else {
            shell.drain(&mut n, Instant::ZERO, UNIX);
        }
        let mut brokers: Vec<BrokerId> = shell
            .sends
            .iter()
            .filter(|(_, s)| *s == id)
            .map(|(l, _)| shell.broker(*l))
            .collect();
        brokers.sort();
        brokers.dedup();
        per_attempt.push(brokers.len());
    }
    // Set size 3 for 12 brokers, then 1, 3, 7 more, at most the top 10.
    assert_eq!(per_attempt, [3, 4, 6, 10, 10, 10]);
    // The brokers are the top of the destination's ranking, in order.
    let pool = PoolSlice {
        brokers: brokers(12),
        ranking: Ranking::Compatible,
    };
    let mut ranked = [BrokerId(0); 12];
    pool.ranked(AF_INET, dest.public().as_bytes(), &mut ranked);
    shell.sends.clear();
    shell.run(&mut n, Instant::from_secs(6));
    let mut used: Vec<BrokerId> = shell.sends.iter().map(|(l, _)| shell.broker(*l)).collect();
    used.sort();
    let mut top = ranked[..10].to_vec();
    top.sort();
    assert_eq!(used, top);
}

#[test]
fn a_send_fails_at_its_deadline_after_publishing_each_second() {
    let (_, mut n, mut shell) = started(4, NodeConfig::default());
    let mut buf = vec![0; 512];
    let (id, _) = send(
        &mut n,
        Instant::ZERO,
        UNIX,
        keypair(2).public().as_bytes(),
        b"x",
        Duration::from_millis(3500),
        &mut buf,
    )
    .unwrap();
    shell.drain(&mut n, Instant::ZERO, UNIX);
    let mut publishes = vec![];
    let mut failed_at = None;
    for step in 1..=50u64 {
        let now = Instant::from_millis(step * 100);
        shell.sends.clear();
        shell.run(&mut n, now);
        if shell.sends.iter().any(|(_, s)| *s == id) {
            publishes.push(step * 100);
        }
        while let Some(e) = n.poll_event() {
            if e == Event::SendFailed(id, keyway_core::sidewire::node::SendFailure::Timeout) {
                failed_at.get_or_insert(step * 100);
            }
        }
    }
    assert_eq!(publishes, [1000, 2000, 3000]);
    assert_eq!(failed_at, Some(3500));
    assert_eq!(n.pending_sends(), 0);
}

#[test]
fn a_failing_broker_backs_off_from_one_second_to_five_minutes() {
    let key = keypair(1);
    let mut n = node(&key, 1, NodeConfig::default());
    let mut shell = Shell {
        refuse: true,
        ..Shell::default()
    };
    shell.run(&mut n, Instant::from_secs(3000));
    let times: Vec<u64> = shell
        .connects
        .iter()
        .map(|(t, _)| t.as_micros() / 1_000_000)
        .collect();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Checked every second (resubscribe), so a wait of w s is over at the
    // first check after it: exactly w, since waits are whole seconds.
    assert_eq!(&gaps[..11], [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert!(gaps.iter().all(|g| *g <= 300));
    // A link that worked resets the count.
    shell.refuse = false;
    let now = Instant::from_secs(4000);
    shell.run(&mut n, now);
    let (link, broker) = *shell.links.last().unwrap();
    n.handle_link_down(now, UNIX, link, LinkDown::Closed);
    assert!(n.broker_ready(broker, now));
    n.handle_timeout(now, UNIX);
    let before = shell.connects.len();
    shell.refuse = true;
    shell.drain(&mut n, now, UNIX);
    assert_eq!(shell.connects.len(), before + 1);
    assert!(
        n.broker_ready(broker, now + Duration::from_secs(1)),
        "back to 1 s"
    );
}

#[test]
fn stalled_and_unheard_links_count_as_failures() {
    let (_, mut n, shell) = started(1, NodeConfig::default());
    let (link, broker) = shell.links[0];
    let now = Instant::from_secs(10);
    n.handle_link_down(now, UNIX, link, LinkDown::Stalled);
    assert!(!n.broker_ready(broker, now));
    assert!(n.broker_ready(broker, now + Duration::from_secs(1)));
}

#[test]
fn links_opened_to_send_close_when_idle_and_own_links_stay() {
    let config = NodeConfig {
        spare_subscriptions: 0,
        ..NodeConfig::default()
    };
    let (_, mut n, mut shell) = started(12, config);
    let own: Vec<LinkId> = shell.links.iter().map(|(l, _)| *l).collect();
    assert_eq!(own.len(), 3, "the set of a 12-broker family");
    let mut buf = vec![0; 512];
    send(
        &mut n,
        Instant::ZERO,
        UNIX,
        keypair(2).public().as_bytes(),
        b"x",
        Duration::from_secs(2),
        &mut buf,
    )
    .unwrap();
    shell.drain(&mut n, Instant::ZERO, UNIX);
    shell.run(&mut n, Instant::from_secs(5));
    let extra: Vec<LinkId> = shell
        .links
        .iter()
        .map(|(l, _)| *l)
        .filter(|l| !own.contains(l))
        .collect();
    assert!(!extra.is_empty());
    // Last used by the publish at 1 s: idle after 600 s more, not before.
    shell.run(&mut n, Instant::from_secs(601));
    assert!(shell.disconnects.is_empty(), "{:?}", shell.disconnects);
    shell.run(&mut n, Instant::from_secs(602));
    let mut closed: Vec<LinkId> = shell.disconnects.iter().map(|(_, l)| *l).collect();
    closed.sort();
    let mut extra_sorted = extra.clone();
    extra_sorted.sort();
    assert_eq!(closed, extra_sorted);
    shell.run(&mut n, Instant::from_secs(5000));
    assert_eq!(shell.disconnects.len(), extra.len(), "own links stay");
}

#[test]
fn a_connect_never_answered_times_out_and_backs_off() {
    let key = keypair(1);
    let mut n = node(&key, 1, NodeConfig::default());
    n.handle_timeout(Instant::ZERO, UNIX);
    let mut buf = [0u8; 256];
    let Some(Transmit::Connect { link, broker }) = n.poll_transmit(Instant::ZERO, &mut buf) else {
        panic!("no connect");
    };
    assert_eq!(
        n.poll_timeout(),
        Some(Instant::from_secs(1)),
        "resubscribe first"
    );
    n.handle_timeout(Instant::from_secs(9), UNIX);
    assert_eq!(
        n.poll_transmit(Instant::from_secs(9), &mut buf),
        None,
        "one connect at a time"
    );
    n.handle_timeout(Instant::from_secs(10), UNIX);
    assert_eq!(
        n.poll_transmit(Instant::from_secs(10), &mut buf),
        Some(Transmit::Disconnect { link })
    );
    assert!(!n.broker_ready(broker, Instant::from_secs(10)));
}

/// A sends to B through links, B answers; returns A's node, the shell,
/// and the link the ACK came by.
fn acked_send(
    n: &mut TestNode,
    shell: &mut Shell,
    dest: &Keypair,
    now: Instant,
    unix: u64,
    ack_on: LinkId,
) -> Option<Event> {
    let me = keypair(1);
    let mut buf = vec![0; 512];
    let (id, len) = send(
        n,
        now,
        unix,
        dest.public().as_bytes(),
        b"hello",
        Duration::from_secs(10),
        &mut buf,
    )
    .unwrap();
    shell.drain(n, now, unix);
    let sent = AppPacket::decode(&buf[..len]).unwrap();
    let mut ack = sent.ack(unix);
    ack.sign(dest);
    let mut bytes = vec![0; ack.encoded_len()];
    ack.encode(&mut bytes).unwrap();
    let Screened::Queued { .. } = n.handle_message(now, unix, ack_on, &topic(&me), &bytes) else {
        panic!("the ACK was not queued");
    };
    let (_, link) = n.poll_verify().unwrap();
    check(n, now, unix, link, &bytes);
    let mut reached = None;
    let mut acked = false;
    while let Some(e) = n.poll_event() {
        match e {
            Event::SendAcked(done) => acked |= done == id,
            Event::Reached { .. } => reached = Some(e),
            Event::SendFailed(..) => panic!("failed"),
        }
    }
    assert!(acked);
    reached
}

#[test]
fn hints_are_tried_first_and_expire() {
    let (_, mut n, mut shell) = started(12, NodeConfig::default());
    let dest = keypair(2);
    // The ACK comes back through a broker low in B's ranking.
    let pool = PoolSlice {
        brokers: brokers(12),
        ranking: Ranking::Compatible,
    };
    let mut ranked = [BrokerId(0); 12];
    pool.ranked(AF_INET, dest.public().as_bytes(), &mut ranked);
    let low = ranked[11];
    let (ack_link, _) = *shell.links.iter().find(|(_, b)| *b == low).unwrap();
    let reached = acked_send(&mut n, &mut shell, &dest, Instant::ZERO, UNIX, ack_link);
    assert_eq!(
        reached,
        Some(Event::Reached {
            dest: *dest.public().as_bytes(),
            broker: low
        })
    );
    let first_publish = |n: &mut TestNode, shell: &mut Shell, now: Instant, unix: u64| {
        shell.sends.clear();
        let mut buf = vec![0; 512];
        let (id, _) = send(
            n,
            now,
            unix,
            dest.public().as_bytes(),
            b"again",
            Duration::from_secs(10),
            &mut buf,
        )
        .unwrap();
        shell.drain(n, now, unix);
        let used: Vec<BrokerId> = shell
            .sends
            .iter()
            .filter(|(_, s)| *s == id)
            .map(|(l, _)| shell.broker(*l))
            .collect();
        n.cancel(id);
        used
    };
    let now = Instant::from_secs(20);
    assert!(
        first_publish(&mut n, &mut shell, now, UNIX + 3600).contains(&low),
        "within the expiry"
    );
    assert!(
        !first_publish(&mut n, &mut shell, now, UNIX + 3601).contains(&low),
        "expired"
    );
}

/// B's node receiving A's MSG on `link`.
fn deliver(
    n: &mut TestNode,
    shell: &mut Shell,
    now: Instant,
    unix: u64,
    link: LinkId,
    bytes: &[u8],
) -> Screened {
    let me = keypair(1);
    let screened = n.handle_message(now, unix, link, &topic(&me), bytes);
    while let Some((_, l)) = n.poll_verify() {
        check(n, now, unix, l, bytes);
    }
    shell.drain(n, now, unix);
    screened
}

#[test]
fn copies_are_reacked_at_most_once_per_half_resend_interval_per_link() {
    let (_, mut n, mut shell) = started(4, NodeConfig::default());
    let (l1, l2) = (shell.links[0].0, shell.links[1].0);
    let sender = keypair(2);
    let bytes = msg(&sender, 1, 0, UNIX, b"hello");
    assert!(matches!(
        deliver(&mut n, &mut shell, Instant::ZERO, UNIX, l1, &bytes),
        Screened::Queued { .. }
    ));
    assert!(
        shell.acks.iter().any(|(l, _)| *l == l1),
        "ACKed where it came"
    );
    let first_ack = shell.acks.iter().find(|(l, _)| *l == l1).unwrap().1.clone();
    let acks_on = |shell: &Shell, link| shell.acks.iter().filter(|(l, _)| *l == link).count();
    let before = acks_on(&shell, l1);
    let copy = |n: &mut TestNode, shell: &mut Shell, secs: f64, link| {
        deliver(n, shell, at(secs), UNIX, link, &bytes)
    };
    assert_eq!(
        copy(&mut n, &mut shell, 0.1, l1),
        Screened::Dropped(Dropped::Reacked)
    );
    assert_eq!(
        acks_on(&shell, l1),
        before,
        "suppressed within the interval"
    );
    assert_eq!(
        copy(&mut n, &mut shell, 0.49, l1),
        Screened::Dropped(Dropped::Reacked)
    );
    assert_eq!(acks_on(&shell, l1), before);
    copy(&mut n, &mut shell, 0.5, l1);
    assert_eq!(
        acks_on(&shell, l1),
        before + 1,
        "again after half a resend interval"
    );
    let on_l2 = acks_on(&shell, l2);
    copy(&mut n, &mut shell, 0.5, l2);
    assert_eq!(acks_on(&shell, l2), on_l2 + 1, "another link: at once");
    // The same signed bytes each time, and no second delivery.
    assert!(
        shell
            .acks
            .iter()
            .filter(|(l, _)| *l == l1)
            .all(|(_, b)| *b == first_ack)
    );
}

/// Issue 13: a MSG's ACK is signed after the node returns the delivery,
/// so a shell hands the message over first. The node says the signature
/// is due at once, signs and publishes it at the next poll, and a copy
/// arriving before that poll gets the same signed ACK.
#[test]
fn a_delivered_msgs_ack_is_signed_at_the_next_call() {
    let (me, mut n, mut shell) = started(4, NodeConfig::default());
    let (l1, l2) = (shell.links[0].0, shell.links[1].0);
    let now = Instant::ZERO;
    assert!(n.poll_timeout().is_some_and(|t| t > now), "nothing due");
    let sender = keypair(2);
    let bytes = msg(&sender, 1, 0, UNIX, b"hello");
    assert!(matches!(
        n.handle_message(now, UNIX, l1, &topic(&me), &bytes),
        Screened::Queued { .. }
    ));
    let (_, link) = n.poll_verify().unwrap();
    assert!(check(&mut n, now, UNIX, link, &bytes), "delivered");
    assert_eq!(n.poll_timeout(), Some(now), "the ACK is due at once");
    assert_eq!(
        n.handle_message(now, UNIX, l2, &topic(&me), &bytes),
        Screened::Dropped(Dropped::Reacked),
        "a copy before the poll is answered from the kept ACK"
    );
    shell.drain(&mut n, now, UNIX);
    let on = |l| shell.acks.iter().filter(|(a, _)| *a == l).count();
    // (l2 may also carry the walk to the sender's set.)
    assert!(on(l1) == 1 && on(l2) >= 1);
    assert!(shell.acks.iter().all(|(_, b)| *b == shell.acks[0].1));
    let ack = AppPacket::decode(&shell.acks[0].1).unwrap();
    assert!(ack.verify_as(me.public()).is_ok());
    assert!(n.poll_timeout().is_some_and(|t| t > now), "signed");
}

#[test]
fn a_replay_is_never_delivered_twice() {
    let (_, mut n, mut shell) = started(4, NodeConfig::default());
    let link = shell.links[0].0;
    let sender = keypair(2);
    let bytes = msg(&sender, 1, 0, UNIX, b"once");
    let me = keypair(1);
    let mut delivered = 0;
    for i in 0..50u64 {
        let now = Instant::from_secs(i);
        if let Screened::Queued { .. } = n.handle_message(now, UNIX + i, link, &topic(&me), &bytes)
        {
            let (_, l) = n.poll_verify().unwrap();
            delivered += usize::from(check(&mut n, now, UNIX + i, l, &bytes));
        }
        shell.drain(&mut n, now, UNIX + i);
    }
    assert_eq!(delivered, 1);
    // Out of the freshness window: dropped before any signature work.
    assert_eq!(
        n.handle_message(
            Instant::from_secs(200),
            UNIX + 121,
            link,
            &topic(&me),
            &bytes
        ),
        Screened::Dropped(Dropped::Refused)
    );
    // Other content under the delivered (source, queue, seq): not delivered.
    let forged = msg(&sender, 1, 0, UNIX, b"twice");
    if let Screened::Queued { .. } = n.handle_message(
        Instant::from_secs(60),
        UNIX + 60,
        link,
        &topic(&me),
        &forged,
    ) {
        let (_, l) = n.poll_verify().unwrap();
        assert!(!check(
            &mut n,
            Instant::from_secs(60),
            UNIX + 60,
            l,
            &forged
        ));
    }
}

#[test]
fn junk_claiming_a_peers_key_cannot_starve_it() {
    let (_, mut n, mut shell) = started(4, NodeConfig::default());
    let link = shell.links[0].0;
    let peer = keypair(2);
    let me = keypair(1);
    let first = msg(&peer, 0, 0, UNIX, b"hi");
    deliver(&mut n, &mut shell, Instant::ZERO, UNIX, link, &first);
    // Each second: 900 packets claiming the peer's key (bad signatures),
    // then one genuine one, which is always checked and delivered.
    for second in 1..=30u32 {
        let now = Instant::from_secs(u64::from(second));
        let unix = UNIX + u64::from(second);
        for j in 0..900u32 {
            let bad = junk(*peer.public().as_bytes(), second * 1000 + j, unix);
            if let Screened::Queued { .. } = n.handle_message(now, unix, link, &topic(&me), &bad) {
                let (_, l) = n.poll_verify().unwrap();
                assert!(!check(&mut n, now, unix, l, &bad));
            }
        }
        // A payload of its own: the same one renumbered in its queue would
        // be a duplicate by content (core receiver's renumbering rule).
        let genuine = msg(&peer, 1, second, unix, &second.to_be_bytes());
        let screened = n.handle_message(now, unix, link, &topic(&me), &genuine);
        assert!(
            matches!(screened, Screened::Queued { .. }),
            "second {second}: {screened:?}"
        );
        let (_, l) = n.poll_verify().unwrap();
        assert!(check(&mut n, now, unix, l, &genuine), "second {second}");
        shell.drain(&mut n, now, unix);
    }
}

#[test]
fn a_flood_from_fresh_keys_gets_a_bounded_number_of_checks_and_peers_go_first() {
    let config = NodeConfig::default();
    let (_, mut n, mut shell) = started(4, config);
    let link = shell.links[0].0;
    let me = keypair(1);
    let peer = keypair(2);
    deliver(
        &mut n,
        &mut shell,
        Instant::ZERO,
        UNIX,
        link,
        &msg(&peer, 0, 0, UNIX, b"hi"),
    );
    let mut queued = 0u32;
    let mut evicted = 0u32;
    // 100,000 packets from fresh keys over 10 s, never checked: the queue
    // keeps the budget's worth.
    for i in 0..100_000u32 {
        let now = Instant::from_micros(u64::from(i) * 100);
        let bytes = junk(fresh_key(i), i, UNIX);
        if let Screened::Queued { evicted: e, .. } =
            n.handle_message(now, UNIX, link, &topic(&me), &bytes)
        {
            queued += 1;
            evicted += u32::from(e.is_some());
        }
    }
    let limits = ScreenLimits::default();
    let bound = limits.unverified.burst + limits.unverified.rate * 10.0;
    assert!(f64::from(queued) <= bound, "{queued}");
    assert!(f64::from(queued) >= bound - 2.0, "{queued}");
    // The queue holds 16 per class: the rest were displaced, not held.
    assert!(queued - evicted <= 16, "{queued} {evicted}");
    // The peer's packet, arriving last, is checked first.
    let now = Instant::from_secs(10);
    let genuine = msg(&peer, 1, 1, UNIX + 10, b"real");
    let Screened::Queued { ticket, .. } =
        n.handle_message(now, UNIX + 10, link, &topic(&me), &genuine)
    else {
        panic!("dropped");
    };
    assert_eq!(n.poll_verify().map(|(t, _)| t), Some(ticket));
}

#[test]
fn an_answer_the_node_waits_for_is_not_held_up_by_a_flood() {
    let (_, mut n, mut shell) = started(4, NodeConfig::default());
    let link = shell.links[0].0;
    let me = keypair(1);
    for i in 0..10_000u32 {
        let _ = n.handle_message(
            Instant::from_secs(1),
            UNIX,
            link,
            &topic(&me),
            &junk(fresh_key(i), i, UNIX),
        );
    }
    // The unverified budget is spent...
    let late = junk(fresh_key(20_000), 0, UNIX);
    assert_eq!(
        n.handle_message(Instant::from_secs(1), UNIX, link, &topic(&me), &late),
        Screened::Dropped(Dropped::Budget)
    );
    // ...but an ACK for a pending send from a new key is still checked.
    let reached = acked_send(
        &mut n,
        &mut shell,
        &keypair(3),
        Instant::from_secs(1),
        UNIX,
        link,
    );
    assert!(reached.is_some());
}

#[test]
fn acks_nobody_waits_for_and_foreign_topics_cost_no_check() {
    let (_, mut n, shell) = started(4, NodeConfig::default());
    let link = shell.links[0].0;
    let me = keypair(1);
    let stranger = keypair(5);
    let mut ack = AppPacket::new([7; 32], 0, UNIX, MsgType::Ack, b"ack");
    ack.sign(&stranger);
    let mut bytes = vec![0; ack.encoded_len()];
    ack.encode(&mut bytes).unwrap();
    let now = Instant::ZERO;
    assert_eq!(
        n.handle_message(now, UNIX, link, &topic(&me), &bytes),
        Screened::Dropped(Dropped::Unexpected)
    );
    assert_eq!(
        n.handle_message(now, UNIX, link, &topic(&stranger), &bytes),
        Screened::Dropped(Dropped::Topic)
    );
    assert_eq!(
        n.handle_message(now, UNIX, link, &topic(&me), &bytes[..10]),
        Screened::Dropped(Dropped::Malformed)
    );
    let config = NodeConfig::default();
    let big = msg(&stranger, 1, 0, UNIX, &vec![0; config.max_message]);
    assert_eq!(
        n.handle_message(now, UNIX, link, &topic(&me), &big),
        Screened::Dropped(Dropped::TooLarge)
    );
    assert!(n.poll_verify().is_none());
}

#[test]
fn sends_beyond_the_table_and_oversize_messages_are_refused() {
    let (_, mut n, _) = started(4, NodeConfig::default());
    let mut buf = vec![0; 512];
    let dest = *keypair(2).public().as_bytes();
    for _ in 0..8 {
        send(
            &mut n,
            Instant::ZERO,
            UNIX,
            &dest,
            b"x",
            Duration::from_secs(5),
            &mut buf,
        )
        .unwrap();
    }
    let full = send(
        &mut n,
        Instant::ZERO,
        UNIX,
        &dest,
        b"x",
        Duration::from_secs(5),
        &mut buf,
    );
    assert_eq!(full, Err(keyway_core::sidewire::node::SendError::Full));
    let big = vec![0; 64 * 1024];
    let mut huge = vec![0; 70 * 1024];
    let too_large = send(
        &mut n,
        Instant::ZERO,
        UNIX,
        &dest,
        &big,
        Duration::from_secs(5),
        &mut huge,
    );
    assert!(matches!(
        too_large,
        Err(keyway_core::sidewire::node::SendError::TooLarge { .. })
    ));
}

#[test]
fn a_peer_over_its_own_rate_waits_behind_other_peers() {
    let mut config = NodeConfig::default();
    config.screen.peer = keyway_core::rate::RateLimit {
        rate: 1.0,
        burst: 5.0,
    };
    let (_, mut n, mut shell) = started(4, config);
    let link = shell.links[0].0;
    let me = keypair(1);
    let (a, b) = (keypair(2), keypair(3));
    let now = Instant::ZERO;
    deliver(
        &mut n,
        &mut shell,
        now,
        UNIX,
        link,
        &msg(&b, 0, 0, UNIX, b"b"),
    );
    // A's first packet makes it a peer; its own bucket then holds 5.
    for seq in 0..6u32 {
        deliver(
            &mut n,
            &mut shell,
            now,
            UNIX,
            link,
            &msg(&a, 0, seq, UNIX, b"a"),
        );
    }
    let over = msg(&a, 0, 6, UNIX, b"over");
    let Screened::Queued { ticket: late, .. } =
        n.handle_message(now, UNIX, link, &topic(&me), &over)
    else {
        panic!("A's packet beyond its rate is still checked, on the shared budget");
    };
    let from_b = msg(&b, 0, 1, UNIX, b"b");
    let Screened::Queued { ticket: peer, .. } =
        n.handle_message(now, UNIX, link, &topic(&me), &from_b)
    else {
        panic!("dropped");
    };
    let order: Vec<_> = std::iter::from_fn(|| n.poll_verify().map(|(t, _)| t)).collect();
    assert_eq!(order, [peer, late], "B (within its rate) first");
}

#[test]
fn a_full_outbox_drops_publishes_and_counts_them() {
    let (_, mut n, mut shell) = started(4, NodeConfig::default());
    let link = shell.links[0].0;
    let me = keypair(1);
    let sender = keypair(2);
    let now = Instant::ZERO;
    // 80 MSGs delivered while the shell polls nothing.
    for seq in 0..80u32 {
        let bytes = msg(&sender, 0, seq, UNIX, &seq.to_be_bytes());
        assert!(matches!(
            n.handle_message(now, UNIX, link, &topic(&me), &bytes),
            Screened::Queued { .. }
        ));
        let (_, l) = n.poll_verify().unwrap();
        assert!(check(&mut n, now, UNIX, l, &bytes));
    }
    assert!(
        n.publishes_dropped() >= 80 + 1 - 64,
        "{}",
        n.publishes_dropped()
    );
    shell.drain(&mut n, now, UNIX);
    assert!(shell.acks.len() <= 64);
    // The newest ACKs were kept all the same: a copy is answered from the
    // cache (the source's 4 newest; older copies are signed again).
    let first = msg(&sender, 0, 79, UNIX, &79u32.to_be_bytes());
    let before = shell.acks.len();
    assert_eq!(
        n.handle_message(at(1.0), UNIX, link, &topic(&me), &first),
        Screened::Dropped(Dropped::Reacked)
    );
    shell.drain(&mut n, at(1.0), UNIX);
    assert_eq!(shell.acks.len(), before + 1);
}

/// The top `n` of `key`'s IPv4 ranking in a pool of 12.
fn ranking_of(key: &[u8; 33], n: usize) -> Vec<BrokerId> {
    let pool = PoolSlice {
        brokers: brokers(12),
        ranking: Ranking::Compatible,
    };
    let mut out = [BrokerId(0); 12];
    let len = pool.ranked(AF_INET, key, &mut out);
    out[..len.min(n)].to_vec()
}

/// B on a pool of 12 with only its own set linked, and a sender whose set
/// has at least two brokers B is not linked to.
fn linked_apart() -> (TestNode, Shell, Keypair, Vec<BrokerId>) {
    let config = NodeConfig {
        spare_subscriptions: 0,
        ..NodeConfig::default()
    };
    let (_, n, shell) = started(12, config);
    let own: Vec<BrokerId> = shell.links.iter().map(|l| l.1).collect();
    assert_eq!(own.len(), 3);
    let sender = (2..=255u8)
        .map(keypair)
        .find(|k| {
            let set = ranking_of(k.public().as_bytes(), 3);
            set.iter().filter(|b| !own.contains(b)).count() >= 2
        })
        .unwrap();
    (n, shell, sender, own)
}

#[test]
fn a_first_ack_connects_the_senders_set_and_goes_out_as_each_link_comes_up() {
    let (mut n, mut shell, sender, own) = linked_apart();
    let set = ranking_of(sender.public().as_bytes(), 3);
    let arrival = shell.links[0].0;
    shell.hold = true;
    let before = shell.connects.len();
    let bytes = msg(&sender, 1, 0, UNIX, b"hello");
    deliver(&mut n, &mut shell, at(0.1), UNIX, arrival, &bytes);
    let ack = shell.acks[0].1.clone();
    let linked_in_set = set
        .iter()
        .filter(|b| own.contains(b) && **b != shell.broker(arrival))
        .count();
    assert_eq!(
        shell.acks.len(),
        1 + linked_in_set,
        "at once where it came and on the set's links already up"
    );
    let opened: Vec<BrokerId> = shell.connects[before..].iter().map(|c| c.1).collect();
    let missing: Vec<BrokerId> = set.iter().copied().filter(|b| !own.contains(b)).collect();
    assert_eq!(
        opened, missing,
        "the sender's set is connected, nothing else"
    );
    assert_eq!(n.ack_walks(), 1);
    // Each link carries the ACK as soon as it is up.
    for (i, broker) in missing.iter().enumerate() {
        let link = shell.links.iter().find(|l| l.1 == *broker).unwrap().0;
        n.handle_link_up(at(0.2), UNIX, link);
        shell.drain(&mut n, at(0.2), UNIX);
        assert!(shell.acks.iter().any(|(l, b)| *l == link && *b == ack));
        assert_eq!(n.ack_walks(), usize::from(i + 1 < missing.len()));
    }
    for broker in &set {
        let copies = shell
            .acks
            .iter()
            .filter(|(l, b)| shell.broker(*l) == *broker && *b == ack)
            .count();
        assert_eq!(copies, 1, "once per broker of the set");
    }
}

#[test]
fn an_ack_walk_replaces_a_failed_broker_by_the_next_and_ends_at_the_connect_timeout() {
    let (mut n, mut shell, sender, own) = linked_apart();
    let ranking = ranking_of(sender.public().as_bytes(), 12);
    let arrival = shell.links[0].0;
    shell.hold = true;
    let bytes = msg(&sender, 1, 0, UNIX, b"hello");
    let before = shell.connects.len();
    deliver(&mut n, &mut shell, at(0.1), UNIX, arrival, &bytes);
    let first_missing = *ranking[..3].iter().find(|b| !own.contains(b)).unwrap();
    let link = shell.links.iter().find(|l| l.1 == first_missing).unwrap().0;
    n.handle_link_down(at(0.2), UNIX, link, LinkDown::ConnectFailed);
    shell.drain(&mut n, at(0.2), UNIX);
    let replacement = *ranking[3..].iter().find(|b| !own.contains(b)).unwrap();
    let opened: Vec<BrokerId> = shell.connects[before..].iter().map(|c| c.1).collect();
    assert_eq!(
        opened.last(),
        Some(&replacement),
        "the next of the sender's ranking replaces it"
    );
    assert_eq!(n.ack_walks(), 1);
    // Nothing answers: the walk ends with the connects.
    let timeout = NodeConfig::default().connect_timeout.as_secs_f64();
    shell.run(&mut n, at(0.1 + timeout));
    assert_eq!(n.ack_walks(), 0);
    let acks = shell.acks.len();
    for (link, _) in shell.links.clone() {
        n.handle_link_up(at(20.0), UNIX, link);
    }
    shell.drain(&mut n, at(20.0), UNIX);
    assert_eq!(
        shell.acks.len(),
        acks,
        "an ended walk publishes nothing more"
    );
}

#[test]
fn beyond_the_walk_table_an_ack_opens_no_link() {
    use keyway_core::sidewire::node::ack_walk::ACK_WALKS;
    let (mut n, mut shell, _, _) = linked_apart();
    let arrival = shell.links[0].0;
    shell.hold = true;
    // Senders whose sets all need a connect, one walk each.
    let mut senders = (2..=255u8).map(keypair);
    let mut delivered = 0;
    while n.ack_walks() < ACK_WALKS {
        let sender = senders.next().unwrap();
        deliver(
            &mut n,
            &mut shell,
            at(0.1),
            UNIX,
            arrival,
            &msg(&sender, 1, 0, UNIX, b"x"),
        );
        delivered += 1;
        assert!(delivered < 250, "walks never filled");
    }
    let connects = shell.connects.len();
    let links_open = shell.links.len();
    let up = |shell: &Shell, n: &TestNode, b: BrokerId| {
        n.links_up().any(|(_, broker)| broker == b) && shell.links.iter().any(|l| l.1 == b)
    };
    let sender = senders
        .find(|k| {
            let set = ranking_of(k.public().as_bytes(), 3);
            set.iter().any(|b| !up(&shell, &n, *b))
        })
        .unwrap();
    let acks_before = shell.acks.len();
    // A queue no other sender used: its ACK's bytes are its own.
    deliver(
        &mut n,
        &mut shell,
        at(0.1),
        UNIX,
        arrival,
        &msg(&sender, 200, 0, UNIX, b"x"),
    );
    let ack = shell.acks[acks_before].1.clone();
    assert_eq!(
        shell.connects.len(),
        connects,
        "no connect for a walk with no place"
    );
    assert_eq!(shell.links.len(), links_open);
    assert_eq!(n.ack_walks(), ACK_WALKS);
    let published = |shell: &Shell| shell.acks.iter().filter(|(_, b)| *b == ack).count();
    let at_once = published(&shell);
    assert!(at_once >= 1, "still ACKed where it came");
    for (link, _) in shell.links.clone() {
        n.handle_link_up(at(0.2), UNIX, link);
    }
    shell.drain(&mut n, at(0.2), UNIX);
    assert_eq!(published(&shell), at_once, "and nowhere later");
}

#[test]
fn a_dropped_link_is_judged_stalled_first_then_unheard_else_closed() {
    assert_eq!(LinkDown::of(true, true), LinkDown::Stalled);
    assert_eq!(LinkDown::of(true, false), LinkDown::Stalled);
    assert_eq!(LinkDown::of(false, false), LinkDown::Unheard);
    assert_eq!(LinkDown::of(false, true), LinkDown::Closed);
    assert!(
        !LinkDown::of(false, true).is_failure(),
        "only a link that worked resets"
    );
}

#[test]
fn own_links_count_the_joining_set_until_each_connect_ends() {
    let config = NodeConfig {
        spare_subscriptions: 1,
        ..NodeConfig::default()
    };
    let key = keypair(1);
    let mut n = node(&key, 12, config);
    assert_eq!(n.own_links(), (0, 0), "nothing before the first timer");
    let mut shell = Shell {
        hold: true,
        ..Shell::default()
    };
    n.handle_timeout(Instant::ZERO, UNIX);
    shell.drain(&mut n, Instant::ZERO, UNIX);
    let joining = shell.links.clone();
    assert_eq!(n.own_links(), (0, joining.len()));
    assert_eq!(joining.len(), 4, "the set of 3 and one spare");
    let now = at(0.5);
    n.handle_link_up(now, UNIX, joining[0].0);
    n.handle_link_down(now, UNIX, joining[1].0, LinkDown::ConnectFailed);
    assert_eq!(n.own_links(), (1, 2));
    for (link, _) in &joining[2..] {
        n.handle_link_up(now, UNIX, *link);
    }
    assert_eq!(n.own_links(), (3, 0));
}

#[test]
fn a_forgotten_broker_id_loses_its_backoff_unless_still_in_use() {
    let key = keypair(1);
    let mut n = node(&key, 1, NodeConfig::default());
    let mut shell = Shell {
        refuse: true,
        ..Shell::default()
    };
    shell.run(&mut n, Instant::ZERO);
    let broker = shell.connects[0].1;
    assert!(!n.broker_ready(broker, at(0.5)), "backing off");
    assert!(n.forget_broker(broker));
    assert!(n.broker_ready(broker, at(0.5)), "the id starts afresh");
    // A live link, or a send naming the id as a hint, keeps it.
    shell.refuse = false;
    shell.run(&mut n, Instant::from_secs(1));
    assert_eq!(n.links_up().count(), 1);
    assert!(!n.forget_broker(broker));
    let hint = BrokerId(77);
    let mut buf = vec![0; 512];
    let (id, _) = n
        .send(
            Instant::from_secs(1),
            UNIX,
            keypair(2).public().as_bytes(),
            b"x",
            &[hint],
            Duration::from_secs(5),
            &mut UnwrapErr(getrandom::SysRng),
            &mut buf,
        )
        .unwrap();
    shell.refuse = true;
    shell.drain(&mut n, Instant::from_secs(1), UNIX);
    assert!(
        !n.broker_ready(hint, Instant::from_secs(1)),
        "its dial failed"
    );
    assert!(!n.forget_broker(hint), "the send still names it");
    n.cancel(id);
    assert!(n.forget_broker(hint));
    assert!(n.broker_ready(hint, Instant::from_secs(1)));
}

#[test]
fn a_lower_walk_limit_caps_the_ack_walks_waiting_for_connects() {
    let config = NodeConfig {
        spare_subscriptions: 0,
        max_ack_walks: 2,
        ..NodeConfig::default()
    };
    let (_, mut n, mut shell) = started(12, config);
    let arrival = shell.links[0].0;
    shell.hold = true;
    let mut most = 0;
    for (i, sender) in (2..=60u8).map(keypair).enumerate() {
        let queue = u8::try_from(i).unwrap();
        deliver(
            &mut n,
            &mut shell,
            at(0.1),
            UNIX,
            arrival,
            &msg(&sender, queue, 0, UNIX, b"x"),
        );
        most = most.max(n.ack_walks());
    }
    assert_eq!(most, 2, "walks started up to the limit, never beyond");
}
