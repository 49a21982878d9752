//! The server and client over real sockets on loopback (127.0.0.2, .3 …
//! are distinct sources), on SQLite, with an injected clock where time matters.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{DO_BUMP, Op, Packet};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::{Keypair, PublicKey};
use keyway_namebump::{
    Behavior, Client, ClientConfig, ClientError, Clock, ManualClock, Server, ServerConfig,
    SqlStore, SystemClock,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const DAY: f64 = 86_400.0;

struct Harness {
    server: Server,
    clock: Arc<dyn Clock>,
    _dir: tempfile::TempDir,
}

async fn start(clock: Arc<dyn Clock>, listen: Vec<SocketAddr>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_db(dir.path(), key(), clock.clone(), listen).await;
    Harness {
        server,
        clock,
        _dir: dir,
    }
}

/// A server on the database `nb.db` in `dir`, with the given key: calling
/// it again after a shutdown is a restart.
async fn serve_db(
    dir: &std::path::Path,
    key: Keypair,
    clock: Arc<dyn Clock>,
    listen: Vec<SocketAddr>,
) -> Server {
    let url = format!("sqlite:{}", dir.join("nb.db").display());
    let store = SqlStore::open(&url, Default::default()).await.unwrap();
    let config = ServerConfig {
        listen,
        rate_limit: None,
        ..ServerConfig::default()
    };
    Server::start(config, key, store, clock).await.unwrap()
}

async fn start_v4() -> Harness {
    start(Arc::new(SystemClock), vec!["127.0.0.1:0".parse().unwrap()]).await
}

impl Harness {
    fn addr(&self) -> SocketAddr {
        self.server.udp_addrs()[0]
    }

    async fn client_from(&self, source: &str) -> Client {
        Client::new(&self.addr().to_string(), *self.server.public_key())
            .await
            .unwrap()
            .with_clock(self.clock.clone())
            .with_config(ClientConfig {
                source: Some(source.parse().unwrap()),
                // Generous: 2 loaded cores, a debug build and an fsync per
                // commit can take well over a second; no test waits for a
                // client timeout.
                reply_timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            })
    }
}

/// How long a raw request may wait for its reply on a loaded machine.
const FIRST_REPLY: Duration = Duration::from_secs(10);

fn key() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

/// Claims `{prefix}0` .. `{prefix}{n-1}` without bumping, each of which must succeed.
async fn claim_names(c: &Client, k: &Keypair, prefix: &str, n: usize) {
    for i in 0..n {
        let name = format!("{prefix}{i}");
        c.put(name.as_bytes(), b"v", k, Behavior::DontBump, None)
            .await
            .unwrap_or_else(|e| panic!("claiming {name}: {e}"));
    }
}

#[tokio::test]
async fn every_operation_round_trips() {
    let h = start_v4().await;
    let c = h.client_from("127.0.0.1").await;
    let k = key();
    assert_eq!(c.get(b"alice").await.unwrap(), None);
    c.put(b"alice", b"hello world", &k, Behavior::Bump, None)
        .await
        .unwrap();
    let r = c.get(b"alice").await.unwrap().unwrap();
    assert_eq!(
        (r.value.as_slice(), r.owner),
        (&b"hello world"[..], *k.public().as_bytes())
    );
    let u = c.usage(&k, None).await.unwrap();
    assert_eq!((u.af, u.names_used, u.name_limit), (2, 1, 20));
    c.put(b"alice", b"new value", &k, Behavior::Bump, Some(30.0))
        .await
        .unwrap();
    assert_eq!(c.get(b"alice").await.unwrap().unwrap().value, b"new value");
    c.delete(b"alice", &k, None).await.unwrap();
    assert_eq!(c.get(b"alice").await.unwrap(), None);
    assert_eq!(c.usage(&k, None).await.unwrap().names_used, 0);
    // Values of 1024 bytes and binary names survive intact.
    let value: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    c.put(&[0, 255, 10, 13], &value, &k, Behavior::Bump, None)
        .await
        .unwrap();
    assert_eq!(
        c.get(&[0, 255, 10, 13]).await.unwrap().unwrap().value,
        value
    );
    h.server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn over_long_input_is_an_error_not_a_truncation() {
    let h = start_v4().await;
    let c = h.client_from("127.0.0.1").await;
    let k = key();
    let long = [b'n'; 51];
    assert!(matches!(
        c.put(&long, b"v", &k, Behavior::Bump, None).await,
        Err(ClientError::InvalidInput(_))
    ));
    assert!(matches!(
        c.get(&long).await,
        Err(ClientError::InvalidInput(_))
    ));
    let big = [0u8; 1025];
    assert!(matches!(
        c.put(b"n", &big, &k, Behavior::Bump, None).await,
        Err(ClientError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn non_owner_put_and_delete_are_rejected() {
    let h = start_v4().await;
    let c = h.client_from("127.0.0.1").await;
    let (owner, other) = (key(), key());
    c.put(b"mine", b"v1", &owner, Behavior::Bump, None)
        .await
        .unwrap();
    assert!(matches!(
        c.put(b"mine", b"x", &other, Behavior::Bump, None).await,
        Err(ClientError::NotOwner)
    ));
    assert!(matches!(
        c.delete(b"mine", &other, None).await,
        Err(ClientError::NotOwner)
    ));
    assert_eq!(c.get(b"mine").await.unwrap().unwrap().value, b"v1");
}

#[tokio::test]
async fn quota_behaviors_bump_and_expiry_follow_the_clock() {
    let clock = Arc::new(ManualClock::new(1_800_000_000.0));
    let h = start(clock.clone(), vec!["127.0.0.1:0".parse().unwrap()]).await;
    let c = h.client_from("127.0.0.2").await;
    let k = key();
    claim_names(&c, &k, "q", 20).await;
    assert!(matches!(
        c.put(b"q20", b"v", &k, Behavior::DontBump, None).await,
        Err(ClientError::RejectedAtQuota)
    ));
    assert!(matches!(
        c.put(b"q20", b"v", &k, Behavior::Throw, None).await,
        Err(ClientError::WouldBump)
    ));
    // Every name is younger than 30 days: nothing is bumpable.
    assert!(matches!(
        c.put(b"q20", b"v", &k, Behavior::Bump, None).await,
        Err(ClientError::RejectedAtQuota)
    ));

    clock.advance(29.0 * DAY);
    for i in 1..20 {
        c.put(
            format!("q{i}").as_bytes(),
            b"r",
            &k,
            Behavior::DontBump,
            None,
        )
        .await
        .unwrap();
    }
    clock.advance(2.0 * DAY);
    // q0 was not refreshed for 31 days: expired, absent at once.
    assert_eq!(c.get(b"q0").await.unwrap(), None);
    assert_eq!(c.usage(&k, None).await.unwrap().names_used, 19);
    c.put(b"n1", b"v", &k, Behavior::DontBump, None)
        .await
        .unwrap();
    // Full again; q1.. were claimed 31 days ago, so DO_BUMP evicts the oldest.
    assert!(matches!(
        c.put(b"n2", b"v", &k, Behavior::DontBump, None).await,
        Err(ClientError::RejectedAtQuota)
    ));
    c.put(b"n2", b"v", &k, Behavior::Bump, None).await.unwrap();
    assert_eq!(c.get(b"q1").await.unwrap(), None);
    assert!(c.get(b"q2").await.unwrap().is_some());
    assert_eq!(c.usage(&k, None).await.unwrap().names_used, 20);
}

#[tokio::test]
async fn a_refresh_from_another_address_moves_the_name() {
    let h = start_v4().await;
    let (from2, from3) = (
        h.client_from("127.0.0.2").await,
        h.client_from("127.0.0.3").await,
    );
    let k = key();
    from2
        .put(b"roam", b"a", &k, Behavior::Bump, None)
        .await
        .unwrap();
    assert_eq!(from2.usage(&k, None).await.unwrap().names_used, 1);
    from3
        .put(b"roam", b"b", &k, Behavior::Bump, None)
        .await
        .unwrap();
    assert_eq!(from2.usage(&k, None).await.unwrap().names_used, 0);
    assert_eq!(from3.usage(&k, None).await.unwrap().names_used, 1);
}

#[tokio::test]
async fn ipv6_usage_is_counted() {
    let h = start(Arc::new(SystemClock), vec!["[::1]:0".parse().unwrap()]).await;
    let c = h.client_from("::1").await;
    let k = key();
    claim_names(&c, &k, "v6-", 5).await;
    let u = c.usage(&k, None).await.unwrap();
    assert_eq!((u.af, u.names_used, u.name_limit), (10, 5, 5));
    assert!(matches!(
        c.put(b"v6-5", b"v", &k, Behavior::DontBump, None).await,
        Err(ClientError::RejectedAtQuota)
    ));
}

#[tokio::test]
async fn a_clock_far_off_is_reported_as_skew() {
    let h = start_v4().await;
    let skewed = Arc::new(ManualClock::new(SystemClock.now() - 120.0));
    let c = h.client_from("127.0.0.1").await.with_clock(skewed);
    match c.put(b"late", b"v", &key(), Behavior::Bump, None).await {
        Err(ClientError::ClockSkew { skew }) => assert!(skew > 100.0, "{skew}"),
        other => panic!("expected clock skew, got {other:?}"),
    }
}

/// A raw client: exactly one request over one transport.
struct Raw {
    server: SocketAddr,
    server_pk: PublicKey,
    reply: Keypair,
}

impl Raw {
    fn new(h: &Harness) -> Self {
        Self {
            server: h.addr(),
            server_pk: *h.server.public_key(),
            reply: key(),
        }
    }

    fn packet<'a>(
        &self,
        op: Op,
        name: &'a [u8],
        value: &'a [u8],
        updated: f64,
        signer: Option<&Keypair>,
    ) -> Vec<u8> {
        self.packet_ttl(op, name, value, updated, signer, 10.0)
    }

    fn packet_ttl<'a>(
        &self,
        op: Op,
        name: &'a [u8],
        value: &'a [u8],
        updated: f64,
        signer: Option<&Keypair>,
        ttl: f64,
    ) -> Vec<u8> {
        let mut p = Packet::new(op, 4242, updated, name, value);
        p.ttl = ttl;
        p.reply_pk = Some(*self.reply.public().as_bytes());
        p.behavior = DO_BUMP;
        match signer {
            Some(k) => p.sign(k).unwrap(),
            None => p.vkc = p.reply_pk,
        }
        let mut buf = vec![0u8; MAX_PACKET_LEN];
        let n = p.encode(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; ecies::sealed_len(plaintext.len())];
        ecies::seal(
            &self.server_pk,
            plaintext,
            &mut UnwrapErr(getrandom::SysRng),
            &mut out,
        )
        .unwrap();
        out
    }

    /// Sends one datagram, waits up to [`FIRST_REPLY`] for a reply, then
    /// collects further replies until none comes for `wait`. For requests
    /// that must be answered: a slow server is not a missing reply.
    async fn udp(&self, sealed: &[u8], wait: Duration) -> Vec<Vec<u8>> {
        self.udp_waiting(sealed, FIRST_REPLY, wait).await
    }

    /// Sends one datagram and collects every reply datagram for `wait`:
    /// for requests that must get none.
    async fn udp_silent(&self, sealed: &[u8], wait: Duration) -> Vec<Vec<u8>> {
        self.udp_waiting(sealed, wait, wait).await
    }

    async fn udp_waiting(&self, sealed: &[u8], first: Duration, wait: Duration) -> Vec<Vec<u8>> {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(sealed, self.server).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut window = first;
        // Bounded: the server sends at most one reply per datagram.
        while got.len() < 16 {
            match tokio::time::timeout(window, sock.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => got.push(buf[..n].to_vec()),
                _ => break,
            }
            window = wait;
        }
        got
    }

    /// Sends one request on a new TCP connection and returns its reply's op.
    async fn tcp(&self, sealed: &[u8]) -> Op {
        let mut stream = TcpStream::connect(self.server).await.unwrap();
        stream.write_all(sealed).await.unwrap();
        let mut framer = keyway_core::namebump::tcp_framing::SealedStream::new();
        let mut out = vec![0u8; 2048];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(framer.spare()))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "server closed without a reply");
            framer.filled(n);
            if let Some(p) = framer.next_message(&self.reply, &mut out).unwrap() {
                return Packet::decode(p).unwrap().op;
            }
        }
    }

    fn open(&self, sealed: &[u8]) -> (Op, f64, Vec<u8>) {
        let mut buf = vec![0u8; sealed.len()];
        let p = Packet::decode(ecies::open(&self.reply, sealed, &mut buf).unwrap()).unwrap();
        (p.op, p.updated, p.value.to_vec())
    }
}

#[tokio::test]
async fn each_udp_reply_goes_once_and_only_to_its_sender() {
    let h = start_v4().await;
    let raw = Raw::new(&h);
    let now = SystemClock.now();
    let replies = raw
        .udp(
            &raw.seal(&raw.packet(Op::Put, b"once", b"v", now, Some(&key()))),
            Duration::from_millis(700),
        )
        .await;
    assert_eq!(replies.len(), 1, "one reply, not the reference's five");
    assert_eq!(raw.open(&replies[0]).0, Op::Put);
}

#[tokio::test]
async fn a_replayed_request_is_not_executed_again() {
    let h = start_v4().await;
    let raw = Raw::new(&h);
    let k = key();
    // Dated in the past, so that the client's requests below are newer.
    let then = SystemClock.now() - 5.0;
    let first = raw.seal(&raw.packet_ttl(Op::Put, b"rp", b"v1", then, Some(&k), 60.0));
    assert_eq!(raw.udp(&first, Duration::from_millis(300)).await.len(), 1);
    let second = raw.seal(&raw.packet_ttl(Op::Put, b"rp", b"v2", then + 0.5, Some(&k), 60.0));
    assert_eq!(raw.udp(&second, Duration::from_millis(300)).await.len(), 1);
    // The exact bytes of the first PUT again: answered, not executed.
    let replay = raw.udp(&first, Duration::from_millis(300)).await;
    assert_eq!(raw.open(&replay[0]).0, Op::Put);
    let c = h.client_from("127.0.0.1").await;
    assert_eq!(c.get(b"rp").await.unwrap().unwrap().value, b"v2");
    // A replayed DEL cannot delete the name once it is claimed again.
    let del = raw.seal(&raw.packet_ttl(Op::Del, b"rp", b"", then + 1.0, Some(&k), 60.0));
    raw.udp(&del, Duration::from_millis(300)).await;
    c.put(b"rp", b"v3", &k, Behavior::Bump, None).await.unwrap();
    raw.udp(&del, Duration::from_millis(300)).await;
    assert_eq!(c.get(b"rp").await.unwrap().unwrap().value, b"v3");
    // Once the owner deletes the name, a replayed PUT is answered from the
    // replay cache and, had the cache forgotten it, refused by the
    // deletion's tombstone: the name stays deleted.
    c.delete(b"rp", &k, None).await.unwrap();
    assert_eq!(
        raw.open(&raw.udp(&second, Duration::from_millis(300)).await[0])
            .0,
        Op::Put
    );
    assert_eq!(c.get(b"rp").await.unwrap(), None);
    assert!(h.server.metrics().encode().contains("result=\"replayed\""));
}

/// How many requests of `op` ended in `result`, from the metrics.
fn requests(server: &Server, op: &str, result: &str) -> u64 {
    let labels = format!("op=\"{op}\",result=\"{result}\"");
    server
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with("keyway_namebump_requests") && l.contains(&labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn a_put_replayed_after_delete_and_restart_leaves_the_name_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let listen = vec!["127.0.0.1:0".parse().unwrap()];
    let server_key = key();
    let secret = server_key.secret_bytes();
    let server = serve_db(dir.path(), server_key, clock.clone(), listen.clone()).await;
    let raw = Raw {
        server: server.udp_addrs()[0],
        server_pk: *server.public_key(),
        reply: key(),
    };
    let owner = key();
    let now = SystemClock.now();
    // An eavesdropper captures the sealed PUT (valid for 60 s) ...
    let capture =
        raw.seal(&raw.packet_ttl(Op::Put, b"phoenix", b"v", now - 1.0, Some(&owner), 60.0));
    let replies = raw.udp(&capture, Duration::from_millis(500)).await;
    assert_eq!(raw.open(&replies[0]).0, Op::Put);
    // ... the owner deletes the name ...
    let del = raw.seal(&raw.packet(Op::Del, b"phoenix", b"", now, Some(&owner)));
    let replies = raw.udp(&del, Duration::from_millis(500)).await;
    assert_eq!(raw.open(&replies[0]).0, Op::Del);
    // ... the server restarts on the same database (its replay cache is
    // empty) ...
    server.shutdown(Duration::from_secs(5)).await;
    let server_key = Keypair::from_secret_bytes(&secret).unwrap();
    let server = serve_db(dir.path(), server_key, clock.clone(), listen).await;
    let raw = Raw {
        server: server.udp_addrs()[0],
        ..raw
    };
    // ... and the capture is replayed, over UDP and over TCP.
    let replies = raw.udp(&capture, Duration::from_millis(500)).await;
    let tcp = raw.tcp(&capture).await;
    let h = Harness {
        server,
        clock,
        _dir: dir,
    };
    let c = h.client_from("127.0.0.1").await;
    assert_eq!(
        c.get(b"phoenix").await.unwrap(),
        None,
        "the name stays deleted"
    );
    assert_eq!(raw.open(&replies[0]).0, Op::Error, "the replay is refused");
    assert_eq!(tcp, Op::Error);
    // The owner (or anyone, first come) can still claim it with a new request.
    c.put(b"phoenix", b"again", &owner, Behavior::Bump, None)
        .await
        .unwrap();
    assert_eq!(c.get(b"phoenix").await.unwrap().unwrap().value, b"again");
}

#[tokio::test]
async fn one_request_on_both_legs_is_answered_twice_and_executed_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let listen = vec!["127.0.0.1:0".parse().unwrap()];
    let server_key = key();
    let secret = server_key.secret_bytes();
    let server = serve_db(dir.path(), server_key, clock.clone(), listen.clone()).await;
    let raw = Raw {
        server: server.udp_addrs()[0],
        server_pk: *server.public_key(),
        reply: key(),
    };
    let owner = key();
    let now = SystemClock.now();
    // As the Keyway client does: one sealed packet, sent on UDP and TCP at once.
    let put = raw.seal(&raw.packet_ttl(Op::Put, b"twice", b"v", now - 2.0, Some(&owner), 60.0));
    let (udp, tcp) = tokio::join!(raw.udp(&put, Duration::from_millis(500)), raw.tcp(&put));
    assert_eq!((raw.open(&udp[0]).0, tcp), (Op::Put, Op::Put));
    assert_eq!(requests(&server, "put", "stored"), 1, "executed once");
    let del = raw.seal(&raw.packet_ttl(Op::Del, b"twice", b"", now - 1.0, Some(&owner), 60.0));
    let (udp, tcp) = tokio::join!(raw.udp(&del, Duration::from_millis(500)), raw.tcp(&del));
    assert_eq!((raw.open(&udp[0]).0, tcp), (Op::Del, Op::Del));
    assert_eq!(requests(&server, "del", "deleted"), 1, "executed once");
    // After a restart (no replay cache), a late leg is still a success
    // and still changes nothing.
    server.shutdown(Duration::from_secs(5)).await;
    let server_key = Keypair::from_secret_bytes(&secret).unwrap();
    let server = serve_db(dir.path(), server_key, clock.clone(), listen).await;
    let raw = Raw {
        server: server.udp_addrs()[0],
        ..raw
    };
    assert_eq!(raw.tcp(&del).await, Op::Del);
    assert_eq!(requests(&server, "del", "deleted"), 0);
    let h = Harness {
        server,
        clock,
        _dir: dir,
    };
    let c = h.client_from("127.0.0.1").await;
    assert_eq!(c.get(b"twice").await.unwrap(), None);
    // A PUT leg arriving late, after the owner's newer write, is answered
    // once more as it was (success) only while the replay cache holds it;
    // either way it never reverts the newer write.
    c.put(b"twice", b"newer", &owner, Behavior::Bump, None)
        .await
        .unwrap();
    raw.tcp(&put).await;
    assert_eq!(c.get(b"twice").await.unwrap().unwrap().value, b"newer");
}

#[tokio::test]
async fn usage_requests_are_not_remembered_as_replays() {
    // USAGE changes nothing, so the replay cache does not keep it: a flood
    // of signed USAGE requests cannot crowd out the replies worth keeping.
    let h = start_v4().await;
    let raw = Raw::new(&h);
    let usage = raw.seal(&raw.packet(Op::Usage, b"", b"", SystemClock.now(), Some(&key())));
    for _ in 0..2 {
        let replies = raw.udp(&usage, Duration::from_millis(500)).await;
        assert_eq!(raw.open(&replies[0]).0, Op::Usage);
    }
    assert_eq!(requests(&h.server, "usage", "ok"), 2);
    assert_eq!(requests(&h.server, "usage", "replayed"), 0);
}

#[tokio::test]
async fn nan_and_infinite_times_are_refused() {
    let h = start_v4().await;
    let raw = Raw::new(&h);
    let k = key();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let replies = raw
            .udp(
                &raw.seal(&raw.packet(Op::Del, b"x", b"", bad, Some(&k))),
                Duration::from_millis(300),
            )
            .await;
        assert_eq!(raw.open(&replies[0]).0, Op::Error, "updated = {bad}");
    }
}

#[tokio::test]
async fn no_reply_is_larger_than_its_datagram() {
    let h = start_v4().await;
    let c = h.client_from("127.0.0.1").await;
    c.put(b"big", &[7u8; 1024], &key(), Behavior::Bump, None)
        .await
        .unwrap();
    let raw = Raw::new(&h);
    let now = SystemClock.now();
    // A small unsigned GET for a 1 KiB value: answering over UDP would
    // amplify, so the server stays silent there (TCP answers).
    let small = raw.seal(&raw.packet(Op::Get, b"big", b"", now, None));
    assert!(
        raw.udp_silent(&small, Duration::from_millis(400))
            .await
            .is_empty()
    );
    // Padded to the reply's size, it is answered.
    let padded = raw.seal(&raw.packet(Op::Get, b"big", &[0u8; 1024], now, None));
    let replies = raw.udp(&padded, Duration::from_millis(400)).await;
    assert_eq!(replies.len(), 1);
    assert!(replies[0].len() <= padded.len());
    assert_eq!(raw.open(&replies[0]).2, vec![7u8; 1024]);
    // And garbage of any size gets nothing at all.
    for len in [1, 32, 33, 97, 200, 1313] {
        assert!(
            raw.udp_silent(&vec![0x5a; len], Duration::from_millis(100))
                .await
                .is_empty(),
            "len {len}"
        );
    }
}

#[tokio::test]
async fn tcp_requests_split_or_coalesced_are_answered_in_order() {
    let h = start_v4().await;
    let raw = Raw::new(&h);
    let k = key();
    let now = SystemClock.now();
    let a = raw.seal(&raw.packet(Op::Put, b"t1", b"a", now, Some(&k)));
    let b = raw.seal(&raw.packet(Op::Usage, b"", b"", now, Some(&k)));
    let mut stream = TcpStream::connect(h.addr()).await.unwrap();
    // Byte-by-byte for the first request, then the second glued to nothing.
    for byte in &a {
        stream.write_all(&[*byte]).await.unwrap();
    }
    stream.write_all(&b).await.unwrap();
    let mut framer = keyway_core::namebump::tcp_framing::SealedStream::new();
    let mut ops = Vec::new();
    let mut out = vec![0u8; 2048];
    while ops.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(framer.spare()))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "server closed early");
        framer.filled(n);
        while let Some(p) = framer.next_message(&raw.reply, &mut out).unwrap() {
            ops.push(Packet::decode(p).unwrap().op);
        }
    }
    assert_eq!(ops, vec![Op::Put, Op::Usage]);
}

#[tokio::test]
async fn garbage_never_stops_the_server() {
    let h = start_v4().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x1234_5678_u32;
    for i in 0..3000usize {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let datagram: Vec<u8> = (0..(i % 1500)).map(|j| (seed >> (j % 24)) as u8).collect();
        sock.send_to(&datagram, h.addr()).await.unwrap();
    }
    for i in 0..50usize {
        let mut s = TcpStream::connect(h.addr()).await.unwrap();
        let junk: Vec<u8> = (0..(i * 97 % 3000)).map(|j| (j * 31 + i) as u8).collect();
        let _ = s.write_all(&junk).await;
    }
    let c = h.client_from("127.0.0.1").await;
    c.put(b"alive", b"yes", &key(), Behavior::Bump, None)
        .await
        .unwrap();
    assert_eq!(c.get(b"alive").await.unwrap().unwrap().value, b"yes");
}

#[tokio::test]
async fn concurrent_clients_each_get_their_own_replies() {
    let h = Arc::new(start_v4().await);
    let mut tasks = Vec::new();
    for i in 0..24u8 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let c = h.client_from(&format!("127.0.0.{}", 10 + i)).await;
            let k = key();
            for round in 0..5u8 {
                let name = format!("c{i}-{round}");
                let value = vec![i; usize::from(round) * 100 + 1];
                c.put(name.as_bytes(), &value, &k, Behavior::Bump, None)
                    .await
                    .unwrap();
                assert_eq!(c.get(name.as_bytes()).await.unwrap().unwrap().value, value);
            }
            assert_eq!(c.usage(&k, None).await.unwrap().names_used, 5);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
