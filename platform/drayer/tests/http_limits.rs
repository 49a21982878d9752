//! The HTTP server's bounds: responses streamed byte for byte as the
//! buffered encoding was, no lock held while a client takes a response,
//! a bounded number of requests at once (503 beyond the queue), slow
//! clients dropped, and SQLite work never on the async workers.
#![allow(clippy::unwrap_used)]

mod common;

use common::{quoted, random};
use std::net::SocketAddr;
use std::time::Duration;

use keyway_drayer::http::{DeadlineListener, Limits, router, router_with, serve};
use keyway_drayer::{Stream, file_record, wire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: only a hung server reaches it.
const DEADLINE: Duration = Duration::from_secs(120);

async fn serve_with(stream: Stream, limits: Option<Limits>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let idle = limits
        .as_ref()
        .map_or(Limits::default().send_timeout, |l| l.send_timeout);
    let app = match limits {
        Some(limits) => router_with(vec![stream], limits),
        None => router(vec![stream]),
    };
    let listener = DeadlineListener::new(listener, idle);
    tokio::spawn(serve(listener, app));
    addr
}

/// A GET whose response is left unread after its first bytes (a client
/// that stalls): the server has begun it and is waiting to send more.
async fn stall(addr: SocketAddr, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0; 12];
    tokio::time::timeout(DEADLINE, socket.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &first,
        b"HTTP/1.1 200",
        "{}",
        String::from_utf8_lossy(&first)
    );
    socket
}

/// Reads the rest of a stalled response: its body (by Content-Length).
async fn finish(mut socket: TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tokio::time::timeout(DEADLINE, socket.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    tokio::time::timeout(DEADLINE, socket.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    body
}

async fn get(url: &str) -> reqwest::Response {
    tokio::time::timeout(DEADLINE, reqwest::get(url))
        .await
        .expect("answered")
        .unwrap()
}

/// Every record route answers exactly the bytes the records encode to,
/// under an exact Content-Length: metadata-only rows, `values=0`, pages
/// cut at 32 MiB of values, every cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_responses_are_the_encoding_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&path).unwrap();
    for i in 0..130 {
        owner
            .set(&format!("k{i}"), "obj", format!("v{i}").as_bytes())
            .unwrap();
    }
    owner.set("k7", "obj", b"again").unwrap();
    owner.delete("k9", "obj").unwrap();
    // Large values: a page stops at 32 MiB of them.
    for i in 0..10 {
        owner
            .set(&format!("big{i}"), "blob", &random(5 * 1024 * 1024))
            .unwrap();
    }
    owner.set("after", "obj", b"small").unwrap();
    let public = *owner.public_key();
    let addr = serve_with(Stream::open(&path).unwrap(), None).await;
    let base = format!("http://{addr}/{}", quoted(&owner));

    let check = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        let len = response.content_length().expect("a Content-Length");
        let body = response.bytes().await.unwrap().to_vec();
        assert_eq!(body.len() as u64, len);
        body
    };
    let all = owner.newest_records(10_000).unwrap();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let body = check(get(&format!("{base}/newRecords/{cursor}")).await).await;
        let page = wire::decode_records(&body, &public).unwrap();
        assert_eq!(body, wire::encode_records(&page, &public));
        let expected: Vec<_> = all
            .iter()
            .filter(|(m, _)| m.modified > cursor)
            .take(page.len())
            .cloned()
            .collect();
        assert_eq!(page, expected, "page after {cursor}");
        let values: usize = page
            .iter()
            .filter_map(|(_, b)| b.value.as_ref())
            .map(Vec::len)
            .sum();
        assert!(page.len() == 1 || values <= 32 * 1024 * 1024);
        // Without values: the same records, as many as there are.
        let bare = check(get(&format!("{base}/newRecords/{cursor}?values=0")).await).await;
        let mut stripped: Vec<_> = all
            .iter()
            .filter(|(m, _)| m.modified > cursor)
            .take(100)
            .cloned()
            .collect();
        stripped.iter_mut().for_each(|(_, b)| b.value = None);
        assert_eq!(bare, wire::encode_records(&stripped, &public));
        let Some((last, _)) = page.last() else { break };
        cursor = last.modified;
        pages += 1;
        assert!(pages < 20);
    }
    assert!(pages >= 3, "{pages} pages");

    for n in [0, 1, 5, 150, 10_000] {
        let body = check(get(&format!("{base}/newest/{n}")).await).await;
        assert_eq!(
            body,
            wire::encode_records(&owner.newest_records(n).unwrap(), &public),
            "newest/{n}"
        );
    }
    for pdest in [0, all[3].0.modified, all[100].0.modified, i64::MAX] {
        let body = check(get(&format!("{base}/crdr/{pdest}")).await).await;
        let (meta, record) = owner.crdr(pdest).unwrap().unwrap();
        let mut expected = Vec::new();
        wire::encode_record(&mut expected, &meta, &record, &public);
        assert_eq!(body, expected, "crdr/{pdest}");
    }
    assert_eq!(get(&format!("{base}/crdr/-5")).await.status(), 404);

    // A metadata-only mirror serves its records without `val`.
    let mirror_path = dir.path().join("mirror.stream");
    let mut mirror = Stream::mirror(&mirror_path, public).unwrap();
    let mut source =
        keyway_drayer::http::HttpSource::new(&format!("http://{addr}/"), public).without_values();
    keyway_drayer::sync::pull(&mut mirror, &mut source)
        .await
        .unwrap();
    let mirror_addr = serve_with(Stream::open(&mirror_path).unwrap(), None).await;
    let body = check(get(&format!("http://{mirror_addr}/{}/newest/3", quoted(&owner))).await).await;
    let mut expected = owner.newest_records(3).unwrap();
    expected.iter_mut().for_each(|(_, b)| b.value = None);
    assert_eq!(body, wire::encode_records(&expected, &public));
}

/// A client that stalls in the middle of a large response holds no
/// lock: the owner writes, other requests for the stream are answered,
/// and the stalled client still gets the whole response as it was when
/// it began (one read snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_blocks_neither_writes_nor_other_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&path).unwrap();
    for i in 0..8 {
        owner
            .set(&format!("big{i}"), "blob", &random(4 * 1024 * 1024))
            .unwrap();
    }
    let public = *owner.public_key();
    let before = owner.newest_records(100).unwrap();
    let addr = serve_with(Stream::open(&path).unwrap(), None).await;
    let base = format!("/{}", quoted(&owner));

    let stalled = stall(addr, &format!("{base}/newest/100")).await;
    // Writes go on (one at a time on this thread: SQLite's busy wait).
    let written = tokio::task::spawn_blocking(move || {
        for i in 0..20 {
            owner.set(&format!("new{i}"), "obj", b"x").unwrap();
        }
        owner
    });
    let owner = tokio::time::timeout(DEADLINE, written)
        .await
        .expect("writes are not blocked by a stalled reader")
        .unwrap();
    let listed = get(&format!("http://{addr}{base}/listRecordsJSON/obj")).await;
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.text().await.unwrap().matches("new").count(), 20);
    let small = get(&format!("http://{addr}{base}/newRecords/0?values=0")).await;
    let small = small.bytes().await.unwrap();
    assert_eq!(wire::decode_records(&small, &public).unwrap().len(), 28);

    let body = finish(stalled).await;
    assert_eq!(body, wire::encode_records(&before, &public));
    assert_eq!(owner.count().unwrap(), 28);
}

/// A stream whose `newest/100` is 32 MiB: more than socket buffers hold,
/// so a client that stops reading keeps its response in progress.
fn large_stream(dir: &std::path::Path) -> Stream {
    let mut owner = Stream::create(&dir.join("owner.stream")).unwrap();
    for i in 0..8 {
        owner
            .set(&format!("big{i}"), "blob", &random(4 * 1024 * 1024))
            .unwrap();
    }
    owner
}

/// At most `max_requests` at once and `max_queued` waiting: the rest are
/// told 503 at once; a waiting request gets its turn when one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_queue_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let owner = large_stream(dir.path());
    let limits = Limits {
        max_requests: 2,
        max_queued: 1,
        queue_wait: Duration::from_secs(600),
        send_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let addr = serve_with(Stream::open(owner.path()).unwrap(), Some(limits)).await;
    let base = format!("/{}", quoted(&owner));
    let url = format!("http://{addr}{base}/newRecords/0?values=0");

    let first = stall(addr, &format!("{base}/newest/100")).await;
    let second = stall(addr, &format!("{base}/newest/100")).await;
    // Two more: one waits its turn, the other finds the queue full.
    let both: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await.status().as_u16() })
        })
        .collect();
    let mut refused = None;
    for _ in 0..1200 {
        if let Some(done) = both.iter().position(|t| t.is_finished()) {
            refused = Some(done);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("one request is refused at once");
    let mut both = both;
    let waiting = both.remove(1 - refused);
    assert_eq!(both.remove(0).await.unwrap(), 503, "the queue is full");
    assert!(!waiting.is_finished(), "the other waits its turn");
    // A stalled client leaves: the waiting request is served.
    drop(first);
    let served = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served, 200);
    assert_eq!(get(&url).await.status(), 200);
    drop(second);
}

/// A client that stops reading is dropped after the send timeout, and its
/// turn goes to the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let owner = large_stream(dir.path());
    let limits = Limits {
        max_requests: 1,
        max_queued: 4,
        queue_wait: Duration::from_secs(1),
        send_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let addr = serve_with(Stream::open(owner.path()).unwrap(), Some(limits)).await;
    let base = format!("/{}", quoted(&owner));
    let mut stalled = stall(addr, &format!("{base}/newest/100")).await;
    // Served only once the server has given up on the stalled client
    // (until then: 503 after the queue wait).
    let url = format!("http://{addr}{base}/newRecords/0?values=0");
    let mut served = false;
    for _ in 0..120 {
        if let Ok(Ok(response)) = tokio::time::timeout(DEADLINE, reqwest::get(&url)).await
            && response.status() == 200
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served, "the stalled client's turn was given back");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stalled.read_to_end(&mut rest))
        .await
        .expect("the server closed the connection");
    assert!(rest.len() < 32 * 1024 * 1024, "the response was cut short");
}

/// On a runtime with one worker thread, large and slow responses (files
/// inflated for a client without gzip, large record lists, clients that
/// stall) leave the worker free: small requests are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn large_and_slow_responses_do_not_starve_a_one_worker_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&path).unwrap();
    // A file that inflates to 48 MiB, and large records.
    let file = vec![b'a'; 48 * 1024 * 1024];
    owner
        .set("big.txt", "file", &file_record::encode(&file, 0).unwrap())
        .unwrap();
    for i in 0..6 {
        owner
            .set(&format!("big{i}"), "blob", &random(4 * 1024 * 1024))
            .unwrap();
    }
    owner.set("small", "obj", b"x").unwrap();
    let addr = serve_with(Stream::open(&path).unwrap(), None).await;
    let base = format!("/{}", quoted(&owner));

    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stall(addr, &format!("{base}/webAccess/big.txt")).await);
        stalled.push(stall(addr, &format!("{base}/newest/100")).await);
    }
    // Inflations and reads in flight, not stalled, alongside.
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("http://{addr}{base}/webAccess/big.txt");
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_gzip().build().unwrap();
                let response = client.get(&url).send().await.unwrap();
                response.bytes().await.unwrap().len()
            })
        })
        .collect();
    for _ in 0..10 {
        let listed = get(&format!("http://{addr}{base}/newestRecordsJSON/obj")).await;
        assert_eq!(listed.status(), 200);
        assert_eq!(listed.text().await.unwrap(), {
            let id = owner.newest(Some("obj"), 1).unwrap()[0].modified;
            format!("[[\"small\", {id}]]")
        });
        assert_eq!(get(&format!("http://{addr}/")).await.status(), 200);
    }
    for task in busy {
        let len = tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
        assert_eq!(len, file.len());
    }
    for socket in stalled {
        assert!(!finish(socket).await.is_empty());
    }
}

/// A connection that sends nothing (or stops halfway through its
/// request) is closed once nothing has moved for the send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Stream::create(&dir.path().join("owner.stream")).unwrap();
    let limits = Limits {
        send_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let addr = serve_with(Stream::open(owner.path()).unwrap(), Some(limits)).await;
    for sent in [&b""[..], b"GET / HTTP/1.1\r\nHos"] {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(sent).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(DEADLINE, socket.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "closed by the server");
    }
}
