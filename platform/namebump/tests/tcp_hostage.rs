//! TCP cannot be held hostage (issue 11, item 12): trickled bytes, unread
//! replies and many connections from a few addresses never lock honest
//! clients out of TCP, and over-limit requests never reach the ECDH.
//!
//! Loopback only: 127.0.0.x are distinct sources (bound before connect).
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::{Op, Packet};
use keyway_core::rand_core::UnwrapErr;
use keyway_core::rate::RateLimit;
use keyway_core::{Keypair, PublicKey};
use keyway_namebump::{
    Behavior, Client, ClientConfig, Clock, Server, ServerConfig, SqlStore, SystemClock,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

struct Harness {
    server: Server,
    _dir: tempfile::TempDir,
}

async fn start(config: ServerConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("nb.db").display());
    let store = SqlStore::open(&url, Default::default()).await.unwrap();
    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..config
    };
    let server = Server::start(config, key(), store, Arc::new(SystemClock))
        .await
        .unwrap();
    Harness { server, _dir: dir }
}

fn key() -> Keypair {
    Keypair::generate(&mut UnwrapErr(getrandom::SysRng))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Harness {
    fn addr(&self) -> SocketAddr {
        self.server.tcp_addrs()[0]
    }

    /// Keyway's client over TCP only (UDP would let it around a TCP
    /// lockout; reference clients need TCP for GET replies larger than the
    /// request). Its own bounds make each call finish within 10 s:
    /// 3 attempts × 3 s + 2 pauses × 0.5 s.
    async fn tcp_client(&self, source: &str) -> Client {
        Client::new(&self.addr().to_string(), *self.server.public_key())
            .await
            .unwrap()
            .with_config(ClientConfig {
                source: Some(ip(source)),
                udp: false,
                attempts: 3,
                reply_timeout: Duration::from_secs(3),
                retry_pause: Duration::from_millis(500),
            })
    }

    /// A sealed unsigned GET for `name`; the reply goes to `reply`.
    fn get_request(&self, name: &[u8], reply: &Keypair, padding: usize) -> Vec<u8> {
        let padding = vec![0u8; padding];
        let mut p = Packet::new(Op::Get, 7, SystemClock.now(), name, &padding);
        p.reply_pk = Some(*reply.public().as_bytes());
        p.vkc = p.reply_pk;
        let mut plain = vec![0u8; MAX_PACKET_LEN];
        let n = p.encode(&mut plain).unwrap();
        seal(self.server.public_key(), &plain[..n])
    }
}

fn seal(server: &PublicKey, plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; ecies::sealed_len(plaintext.len())];
    ecies::seal(
        server,
        plaintext,
        &mut UnwrapErr(getrandom::SysRng),
        &mut out,
    )
    .unwrap();
    out
}

async fn connect_from(source: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    tokio::time::timeout(Duration::from_secs(10), socket.connect(server))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Whether the server closed `stream` within `wait` (EOF or reset); any
/// bytes it sent first are skipped.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Makes room for `needed` descriptors: raises the soft limit towards the
/// hard one if it is lower (the hard limit is the operator's to raise).
fn ensure_open_files(needed: u64) {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let soft = limit.current.unwrap_or(u64::MAX);
        if soft < needed {
            let raised = limit.maximum.map_or(needed, |hard| hard.min(needed));
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(raised),
                    maximum: limit.maximum,
                },
            );
        }
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        assert!(
            soft >= needed,
            "this test holds about {needed} sockets: raise the hard limit (ulimit -Hn) to at least that"
        );
    }
}

/// Connects from `source` again and again (the server closes it at accept,
/// at its deadline or for another source), sending `request` one byte
/// every 3 s, until `stop`.
async fn trickle(
    server: SocketAddr,
    source: IpAddr,
    request: Arc<Vec<u8>>,
    connected: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let mut counted = false;
    // Bounded: 200 connections of at least 1 s each outlast any test.
    for _ in 0..200 {
        if stop.is_cancelled() {
            return;
        }
        if let Ok(mut stream) = connect_from(source, server).await {
            if !counted {
                counted = true;
                connected.fetch_add(1, Ordering::SeqCst);
            }
            for byte in request.iter() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(3)) => {}
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The scenario, on the server's default settings: 1,100
/// connections from 50 addresses, each trickling a byte every 3 s and
/// reconnecting whenever it is closed, and still a client from another
/// address puts and gets over TCP, right away and again once the first
/// wave's deadlines have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_from_50_addresses_do_not_lock_out_tcp() {
    const SOURCES: usize = 50;
    const CONNECTIONS: usize = 1_100;
    // Both ends of every connection live in this process, plus the runtime's own.
    ensure_open_files(2 * CONNECTIONS as u64 + 512);
    let h = start(ServerConfig::default()).await;
    let request = Arc::new(h.get_request(b"slow", &key(), 0));
    let connected = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let tricklers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let source = ip(&format!("127.0.0.{}", 10 + i % SOURCES));
            tokio::spawn(trickle(
                h.addr(),
                source,
                request.clone(),
                connected.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for _ in 0..600 {
        if connected.load(Ordering::SeqCst) == CONNECTIONS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connected.load(Ordering::SeqCst), CONNECTIONS);
    // A few trickled bytes each.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let c = h.tcp_client("127.0.0.200").await;
    let k = key();
    let value = vec![0x42; 600];
    c.put(b"hostage", &value, &k, Behavior::Bump, None)
        .await
        .expect("PUT over TCP while 1,100 connections trickle");
    let got = c.get(b"hostage").await.expect("GET over TCP");
    assert_eq!(got.map(|r| r.value), Some(value.clone()));

    // Past the first wave's request deadline: they have reconnected.
    tokio::time::sleep(Duration::from_secs(8)).await;
    c.put(b"hostage", b"again", &k, Behavior::Bump, None)
        .await
        .expect("PUT over TCP after the tricklers reconnected");
    let got = c.get(b"hostage").await.expect("GET over TCP");
    assert_eq!(got.map(|r| r.value), Some(b"again".to_vec()));

    let metrics = h.server.metrics();
    assert!(metrics.dropped_count("too_many_connections_from_source") > 0);
    assert!(metrics.dropped_count("tcp_request_timeout") > 0);
    stop.cancel();
    for t in tricklers {
        t.await.unwrap();
    }
    h.server.shutdown(Duration::from_secs(5)).await;
}

/// A request must arrive whole within the deadline, however its bytes trickle.
#[tokio::test]
async fn a_request_trickled_past_its_deadline_is_cut_off() {
    let h = start(ServerConfig {
        tcp_request_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    })
    .await;
    let request = h.get_request(b"slow", &key(), 1024);
    let mut stream = connect_from(ip("127.0.0.8"), h.addr()).await.unwrap();
    // 150 bytes, one per 200 ms: 30 s, far past the 2 s deadline.
    let mut cut_off = false;
    for byte in &request[..150] {
        if stream.write_all(&[*byte]).await.is_err()
            || closed_within(&mut stream, Duration::from_millis(200)).await
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a trickled request held its connection for 30 s");
    assert_eq!(h.server.metrics().dropped_count("tcp_request_timeout"), 1);
}

/// A client that sends requests but never reads the replies: once the
/// socket buffers are full, the server's write waits. With one connection
/// slot, a second client from the same address can get in only once the
/// server gives up on that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_its_connection() {
    let h = start(ServerConfig {
        rate_limit: None,
        max_connections: 1,
        tcp_write_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    })
    .await;
    let source = ip("127.0.0.9");
    let owner = h.tcp_client("127.0.0.9").await;
    owner
        .put(b"big", &[7u8; 1024], &key(), Behavior::Bump, None)
        .await
        .unwrap();

    // Requests sealed under one ephemeral key: cheap for the test, a full
    // ECDH each for the server.
    let reply = key();
    let mut p = Packet::new(Op::Get, 9, SystemClock.now(), b"big", b"");
    p.reply_pk = Some(*reply.public().as_bytes());
    p.vkc = p.reply_pk;
    let mut plain = vec![0u8; MAX_PACKET_LEN];
    let n = p.encode(&mut plain).unwrap();
    let sealing = ecies::Sealing::new(h.server.public_key(), &key());
    let mut sealed = vec![0u8; ecies::sealed_len(n)];
    let m = sealing.seal(&plain[..n], &[3u8; 16], &mut sealed).unwrap();
    let request = sealed[..m].to_vec();

    // Connect until served once (the owner's connection may not be
    // closed yet on the server's side): then this connection holds the slot.
    let mut held = None;
    for _ in 0..50 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(h.addr()).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await
            && n > 0
        {
            held = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stream = held.expect("a connection to flood");
    let (_reader, mut writer) = stream.into_split();
    let stop = CancellationToken::new();
    let flooder = tokio::spawn({
        let stop = stop.clone();
        async move {
            // Enough replies (1.2 KB each) to fill any loopback buffer;
            // the writes stop once the server stops reading.
            for _ in 0..20_000 {
                tokio::select! {
                    () = stop.cancelled() => return,
                    r = writer.write_all(&request) => if r.is_err() { return },
                }
            }
            stop.cancelled().await;
        }
    });

    let c = h.tcp_client("127.0.0.9").await.with_config(ClientConfig {
        source: Some(source),
        udp: false,
        attempts: 1,
        reply_timeout: Duration::from_secs(3),
        ..ClientConfig::default()
    });
    let mut served = false;
    // Bounded: refused tries end at once, so 240 of them and their pauses
    // take two minutes or more (filling the buffers takes a debug build
    // about 15 s on two busy cores).
    for _ in 0..240 {
        if c.get(b"big").await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        served,
        "the unread connection kept the only slot for two minutes"
    );
    assert!(h.server.metrics().dropped_count("tcp_write_timeout") >= 1);
    stop.cancel();
    flooder.await.unwrap();
}

/// Over-limit TCP requests from one source are refused before the ECDH,
/// as over-limit datagrams are.
#[tokio::test]
async fn over_limit_tcp_requests_never_reach_the_key_agreement() {
    let h = start(ServerConfig {
        rate_limit: Some(RateLimit {
            rate: 0.001,
            burst: 3.0,
        }),
        ..ServerConfig::default()
    })
    .await;
    let metrics = h.server.metrics();
    let reply = key();
    let mut answered = 0;
    for _ in 0..10 {
        let mut stream = connect_from(ip("127.0.0.11"), h.addr()).await.unwrap();
        stream
            .write_all(&h.get_request(b"n", &reply, 0))
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            && n > 0
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 3, "the burst is served");
    assert_eq!(metrics.key_agreements(), 3, "TCP: nothing past the limit");

    // The same on UDP, from another source.
    let udp = UdpSocket::bind("127.0.0.12:0").await.unwrap();
    for _ in 0..10 {
        // Padded, so that the reply is not larger than the request.
        udp.send_to(&h.get_request(b"n", &reply, 100), h.server.udp_addrs()[0])
            .await
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut replies = 0;
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_secs(2), udp.recv_from(&mut buf)).await
    {
        replies += 1;
    }
    assert_eq!(replies, 3);
    assert_eq!(metrics.key_agreements(), 6, "UDP: nothing past the limit");
}

/// With every slot taken by a few busy sources, a new source still gets a
/// connection: it takes the oldest one of the source holding the most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_slot_is_taken_a_new_source_still_gets_in() {
    let h = start(ServerConfig {
        max_connections: 12,
        max_connections_per_source: 6,
        ..ServerConfig::default()
    })
    .await;
    let request = Arc::new(h.get_request(b"slow", &key(), 0));
    let connected = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let tricklers: Vec<_> = (0..18)
        .map(|i| {
            tokio::spawn(trickle(
                h.addr(),
                ip(&format!("127.0.0.{}", 20 + i % 3)),
                request.clone(),
                connected.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for _ in 0..300 {
        if connected.load(Ordering::SeqCst) == 18 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = h.tcp_client("127.0.0.30").await;
    let k = key();
    c.put(b"fair", b"share", &k, Behavior::Bump, None)
        .await
        .expect("PUT over TCP with every slot taken");
    assert_eq!(
        c.get(b"fair").await.unwrap().map(|r| r.value),
        Some(b"share".to_vec())
    );
    assert!(h.server.metrics().dropped_count("connection_evicted") > 0);
    stop.cancel();
    for t in tricklers {
        t.await.unwrap();
    }
}
