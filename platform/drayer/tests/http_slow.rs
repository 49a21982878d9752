//! The HTTP server and client under slow and many peers: a request head
//! has a deadline, connections are capped in all and per source, a
//! response taken too slowly is cut off (its turn and snapshot freed),
//! slow server work is not client silence; metadata-only mirrors never
//! download values; the client has no whole-request deadline.
#![allow(clippy::unwrap_used)]

mod common;

use common::{quoted, random};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::routing::get;
use keyway_drayer::Stream;
use keyway_drayer::http::{DeadlineListener, HttpSource, Limits, router_with, serve};
use keyway_drayer::sync::Source;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

/// Generous: only a hung server reaches it.
const DEADLINE: Duration = Duration::from_secs(120);

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const THIRD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

async fn serve_app(app: Router, limits: &Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = DeadlineListener::with_limits(listener, limits);
    tokio::spawn(async move { serve(listener, app).await });
    addr
}

async fn serve_stream(stream: Stream, limits: Limits) -> SocketAddr {
    let app = router_with(vec![stream], limits.clone());
    serve_app(app, &limits).await
}

async fn connect_from(local: IpAddr, addr: SocketAddr, rcvbuf: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    timeout(DEADLINE, socket.connect(addr))
        .await
        .unwrap()
        .unwrap()
}

/// Whether the server answers `GET /` on `socket` with a 200.
async fn answered(socket: &mut TcpStream) -> bool {
    if socket
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut first = [0; 12];
    match timeout(DEADLINE, socket.read_exact(&mut first))
        .await
        .unwrap()
    {
        Ok(_) => &first == b"HTTP/1.1 200",
        Err(_) => false,
    }
}

/// A head trickled a byte at a time (each well within the idle timeout)
/// is cut off by the head deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_must_arrive_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
    let limits = Limits {
        head_timeout: Duration::from_secs(2),
        send_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let addr = serve_stream(owner, limits).await;
    let mut socket = connect_from(HOME, addr, None).await;
    socket
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    // 300 bytes 200 ms apart: a minute, far beyond the 2 s deadline.
    let mut cut = false;
    for _ in 0..300 {
        if socket.write_all(b"a").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0; 256];
        // Any answer (an error status, the end, a reset) ends it: the
        // head is never complete, so no honest reply can come.
        if let Ok(read) = timeout(Duration::from_millis(200), socket.read(&mut buf)).await {
            let _ = read;
            cut = true;
            break;
        }
    }
    assert!(cut, "a head trickled for a minute was never cut off");
}

/// Beyond `max_per_source` connections from one address the server closes
/// new ones from it at once; another address is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
    let limits = Limits {
        max_per_source: 4,
        max_connections: 64,
        head_timeout: Duration::from_secs(600),
        send_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let addr = serve_stream(owner, limits).await;
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut socket = connect_from(HOME, addr, None).await;
        let _ = socket.write_all(b"GET / HTTP/1.1\r\nX-Slow: a").await;
        slow.push(socket);
    }
    let mut other = connect_from(OTHER, addr, None).await;
    assert!(answered(&mut other).await, "another address is served");
    let mut more = connect_from(HOME, addr, None).await;
    assert!(
        !answered(&mut more).await,
        "a 41st connection from one address was served"
    );
    drop(slow);
}

/// Beyond `max_connections` new connections are closed at once; one
/// that ends frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_in_all_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
    let limits = Limits {
        max_per_source: 100,
        max_connections: 8,
        head_timeout: Duration::from_secs(600),
        send_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let addr = serve_stream(owner, limits).await;
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut socket = connect_from(HOME, addr, None).await;
        socket
            .write_all(b"GET / HTTP/1.1\r\nX-Slow: a")
            .await
            .unwrap();
        slow.push(socket);
    }
    let mut more = connect_from(THIRD, addr, None).await;
    assert!(!answered(&mut more).await, "a 9th connection was served");
    drop(slow);
    // The server sees the closes as it reads: try again for a while.
    let mut served = false;
    for _ in 0..100 {
        let mut socket = connect_from(THIRD, addr, None).await;
        if answered(&mut socket).await {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "closed connections never freed their places");
}

/// A client that takes a response at a trickle (each piece well within
/// the idle timeout) is cut off once the response is overdue at
/// `min_rate`, and its turn is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_taken_too_slowly_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
    owner.set("big", "blob", &random(16 * 1024 * 1024)).unwrap();
    let limits = Limits {
        max_requests: 1,
        queue_wait: Duration::from_secs(1),
        min_rate: 4 * 1024 * 1024,
        min_response_time: Duration::from_secs(1),
        ..Limits::default()
    };
    let base = format!("/{}", quoted(&owner));
    let addr = serve_stream(Stream::open(owner.path()).unwrap(), limits).await;
    let mut socket = connect_from(HOME, addr, Some(64 * 1024)).await;
    let request = format!("GET {base}/newest/1 HTTP/1.1\r\nHost: x\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    // 128 KiB every 250 ms: 512 KiB/s, the whole 16 MiB in 32 s.
    let mut received = 0usize;
    let mut buf = vec![0; 128 * 1024];
    let mut ended = false;
    for _ in 0..400 {
        match timeout(DEADLINE, socket.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => {
                ended = true;
                break;
            }
            Ok(n) => received += n,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ended, "the response never ended");
    assert!(
        received < 16 * 1024 * 1024,
        "a response taken at 512 KiB/s was sent whole ({received} bytes)"
    );
    let mut next = connect_from(OTHER, addr, None).await;
    assert!(answered(&mut next).await, "the turn was not freed");
}

/// A handler that works longer than the idle timeout before its first
/// byte does not get its connection closed: that is the server's
/// silence, not the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_work_is_not_client_silence() {
    let limits = Limits {
        send_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let app = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late"
        }),
    );
    let addr = serve_app(app, &limits).await;
    let mut socket = connect_from(HOME, addr, None).await;
    assert!(
        answered(&mut socket).await,
        "a slow handler's client was cut"
    );
}

/// `newest` with `values=0` sends no values, and a metadata-only
/// `HttpSource` asks for it that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_without_values_sends_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
    for i in 0..4 {
        owner
            .set(&format!("big{i}"), "blob", &random(1024 * 1024))
            .unwrap();
    }
    let public = *owner.public_key();
    let base = format!("/{}", quoted(&owner));
    let addr = serve_stream(Stream::open(owner.path()).unwrap(), Limits::default()).await;
    let url = format!("http://{addr}{base}/newest/10?values=0");
    let body = timeout(DEADLINE, async {
        reqwest::get(&url).await.unwrap().bytes().await.unwrap()
    })
    .await
    .unwrap();
    assert!(
        body.len() < 64 * 1024,
        "newest?values=0 sent {} bytes",
        body.len()
    );
    let records = keyway_drayer::wire::decode_records(&body, &public).unwrap();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|(_, b)| b.value.is_none()));

    // The client asks with values=0.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new().route(
        "/{pk}/newest/{n}",
        get(move |RawQuery(q): RawQuery| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(q);
                vec![0x90u8]
            }
        }),
    );
    let addr = serve_app(app, &Limits::default()).await;
    let mut source = HttpSource::new(&format!("http://{addr}/"), public).without_values();
    let page = timeout(DEADLINE, source.newest(10)).await.unwrap().unwrap();
    assert_eq!(page.map(|p| p.len()), Some(0));
    assert_eq!(*seen.lock().unwrap(), vec![Some("values=0".to_owned())]);
}

/// A response that takes longer than a minute in all, but never goes
/// silent for the read timeout, is read whole (an honest slow link).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_honest_response_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
    owner.set("k", "obj", &[7; 200]).unwrap();
    let public = *owner.public_key();
    let page = owner.modified_after(0, 100).unwrap();
    let body = keyway_drayer::wire::encode_records(&page, &public);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0; 4096];
        let _ = socket.read(&mut buf).await;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        socket.write_all(head.as_bytes()).await.unwrap();
        // The body in 70 pieces a second apart: over a minute in all.
        let piece = body.len().div_ceil(70);
        for part in body.chunks(piece) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            socket.write_all(part).await.unwrap();
        }
        let _ = socket.read(&mut buf).await;
    });
    let mut source = HttpSource::new(&format!("http://{addr}/"), public)
        .with_timeouts(Duration::from_secs(10), Duration::from_secs(10));
    let got = timeout(DEADLINE, source.modified_after(0)).await.unwrap();
    assert_eq!(got.unwrap().len(), 1);
}
