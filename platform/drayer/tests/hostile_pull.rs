//! Pulls from servers that do not play by the rules: every pull ends, with
//! the error that says why, and a pull never holds the runtime's thread
//! while SQLite works.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use keyway_drayer::Stream;
use keyway_drayer::http::HttpSource;
use keyway_drayer::sync::{PullLimits, Source, SyncError, pull, pull_with};
use keyway_drayer::wire::encode_records;

/// Longer than any of these pulls may take: only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);

/// Serves `router` on 127.0.0.1 from a runtime of its own, so what the
/// pull does to its runtime cannot slow the server down.
fn serve_elsewhere(router: Router) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// An owner with `n` records, and an empty mirror of it.
fn owner_and_mirror(dir: &std::path::Path, n: usize) -> (Stream, Stream) {
    let mut owner = Stream::create(&dir.join("owner.stream")).unwrap();
    let values: Vec<(String, Vec<u8>)> =
        (0..n).map(|i| (format!("k{i}"), vec![b'v'; 64])).collect();
    owner
        .set_many(
            values
                .iter()
                .map(|(k, v)| (k.as_str(), "obj", v.as_slice())),
        )
        .unwrap();
    let mirror = Stream::mirror(&dir.join("mirror.stream"), *owner.public_key()).unwrap();
    (owner, mirror)
}

/// A server that answers every `newRecords/<t>` with `page(t)`.
fn hostile(page: impl Fn(i64) -> Vec<u8> + Send + Sync + 'static) -> String {
    let page = Arc::new(page);
    let router = Router::new()
        .route(
            "/{pk}/newRecords/{t}",
            get(
                |State(page): State<Arc<dyn Fn(i64) -> Vec<u8> + Send + Sync>>,
                 Path((_, t)): Path<(String, i64)>| async move { page(t) },
            ),
        )
        .with_state(page as Arc<dyn Fn(i64) -> Vec<u8> + Send + Sync>);
    format!("http://{}/", serve_elsewhere(router))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_repeating_its_page_ends_the_pull() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, mut mirror) = owner_and_mirror(dir.path(), 150);
    let public = *owner.public_key();
    let first = encode_records(&owner.modified_after(0, 100).unwrap(), &public);
    let url = hostile(move |_| first.clone());
    let mut source = HttpSource::new(&url, public);
    let result = tokio::time::timeout(HANG, pull(&mut mirror, &mut source))
        .await
        .expect("the pull ends");
    assert!(
        matches!(result, Err(SyncError::NoProgress { .. })),
        "{result:?}"
    );
    // What came before the repeat is kept.
    assert_eq!(mirror.count().unwrap(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_records_not_after_the_cursor_ends_the_pull() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, mut mirror) = owner_and_mirror(dir.path(), 150);
    let public = *owner.public_key();
    let all = owner.modified_after(0, 1000).unwrap();
    // Off by one: records modified at or after t (the protocol says after).
    let url = hostile(move |t| {
        let page: Vec<_> = all
            .iter()
            .filter(|(m, _)| m.modified >= t)
            .take(100)
            .cloned()
            .collect();
        encode_records(&page, &public)
    });
    let mut source = HttpSource::new(&url, public);
    let result = tokio::time::timeout(HANG, pull(&mut mirror, &mut source))
        .await
        .expect("the pull ends");
    let Err(SyncError::NoProgress { cursor, modified }) = result else {
        panic!("{result:?}");
    };
    assert_eq!(cursor, modified);
    assert_eq!(mirror.count().unwrap(), 100);
}

/// A server (holding the key) that writes a page of new records for
/// every page asked: the stream never ends. Also returns how many pages
/// it was asked for.
fn endless(dir: &std::path::Path) -> (String, Stream, Arc<AtomicUsize>) {
    let (owner, mirror) = owner_and_mirror(dir, 1);
    let public = *owner.public_key();
    let owner = Mutex::new(owner);
    let written = AtomicUsize::new(0);
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    let url = hostile(move |t| {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut owner = owner.lock().unwrap();
        let n = written.fetch_add(100, Ordering::Relaxed);
        let values: Vec<(String, Vec<u8>)> = (n..n + 100)
            .map(|i| (format!("more{i}"), vec![b'x'; 1024]))
            .collect();
        owner
            .set_many(
                values
                    .iter()
                    .map(|(k, v)| (k.as_str(), "obj", v.as_slice())),
            )
            .unwrap();
        encode_records(&owner.modified_after(t, 100).unwrap(), &public)
    });
    (url, mirror, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_runs_out_is_stopped_by_the_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut mirror, _) = endless(dir.path());
    let mut source = HttpSource::new(&url, *mirror.public_key());
    let limits = PullLimits {
        max_bytes: 1 << 20,
        ..PullLimits::default()
    };
    let result = tokio::time::timeout(HANG, pull_with(&mut mirror, &mut source, &limits))
        .await
        .expect("the pull ends");
    assert!(
        matches!(result, Err(SyncError::ByteLimit(n)) if n == 1 << 20),
        "{result:?}"
    );
    // Records up to the bound are kept (about 1 KiB each).
    let held = mirror.count().unwrap();
    assert!((500..=1024).contains(&held), "{held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_runs_out_is_stopped_by_the_time_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut mirror, _) = endless(dir.path());
    let mut source = HttpSource::new(&url, *mirror.public_key());
    // Room for a slow start on loaded cores; the stream never ends, so
    // only the time bound can stop this pull (how far it got is not the
    // point: a debug build on two busy cores may apply little).
    let limits = PullLimits {
        max_time: Duration::from_secs(10),
        ..PullLimits::default()
    };
    let result = tokio::time::timeout(HANG, pull_with(&mut mirror, &mut source, &limits))
        .await
        .expect("the pull ends");
    assert!(
        matches!(result, Err(SyncError::TimeLimit(t)) if t == Duration::from_secs(10)),
        "{result:?}"
    );
}

/// Waits (within [`HANG`]) until `counter` reaches `n`, then a while more
/// for requests that should not come.
async fn settle(counter: &AtomicUsize, n: usize) -> usize {
    let deadline = Instant::now() + HANG;
    while counter.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    counter.load(Ordering::SeqCst)
}

/// The read-ahead downloads no more than the pull's byte budget has room
/// for: pages past it would only be thrown away (and held meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_ahead_stops_at_the_pulls_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut mirror, asked) = endless(dir.path());
    let mut source = HttpSource::new(&url, *mirror.public_key());
    // A page of 100 records of about 1 KiB, and a fifth of the next.
    let limits = PullLimits {
        max_bytes: 150_000,
        ..PullLimits::default()
    };
    let result = tokio::time::timeout(HANG, pull_with(&mut mirror, &mut source, &limits))
        .await
        .expect("the pull ends");
    assert!(matches!(result, Err(SyncError::ByteLimit(_))), "{result:?}");
    let pages = settle(&asked, 2).await;
    assert_eq!(pages, 2, "pages downloaded for a budget of one and a bit");
}

/// Pages read ahead and not yet taken are bounded in bytes: with room for
/// none, one page is read ahead and the next only once it is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_ahead_holds_a_bounded_number_of_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mirror, asked) = endless(dir.path());
    let mut source = HttpSource::new(&url, *mirror.public_key()).with_read_ahead(0);
    source.prefetch(0, u64::MAX);
    assert_eq!(settle(&asked, 1).await, 1, "pages read ahead, none taken");
    let page = tokio::time::timeout(HANG, source.modified_after(0))
        .await
        .expect("the page comes")
        .unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(settle(&asked, 2).await, 2, "pages read ahead, one taken");
}

/// Item 9: a current-thread runtime keeps running its other tasks while a
/// pull waits on SQLite (here: another connection holds the mirror's
/// write lock). Counted in timer ticks, not time: with the pull's SQLite
/// work on the runtime's only thread, no tick runs while it waits.
#[test]
fn a_pull_waiting_on_sqlite_leaves_the_runtime_thread_free() {
    const TICKS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (owner, mut mirror) = owner_and_mirror(dir.path(), 100);
    let public = *owner.public_key();
    let first = encode_records(&owner.modified_after(0, 100).unwrap(), &public);
    let served = Arc::new(AtomicBool::new(false));
    let flag = served.clone();
    let url = hostile(move |t| {
        if t == 0 {
            flag.store(true, Ordering::SeqCst);
            first.clone()
        } else {
            encode_records(&[], &public)
        }
    });
    let ticks = Arc::new(AtomicUsize::new(0));
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let holder = {
        let path = dir.path().join("mirror.stream");
        let ticks = ticks.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            // From the moment the pull has its first page, it is applying
            // it (and waiting for this lock).
            let deadline = Instant::now() + HANG;
            while !served.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let start = ticks.load(Ordering::SeqCst);
            // Well inside the mirror's 5 s busy timeout.
            let deadline = Instant::now() + Duration::from_secs(3);
            while ticks.load(Ordering::SeqCst) < start + TICKS && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let ticked = ticks.load(Ordering::SeqCst) - start;
            conn.execute_batch("COMMIT").unwrap();
            ticked
        })
    };
    locked.recv().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pulled = runtime.block_on(async {
        let counter = ticks.clone();
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(Duration::from_millis(5));
            loop {
                timer.tick().await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let mut source = HttpSource::new(&url, public);
        tokio::time::timeout(HANG, pull(&mut mirror, &mut source))
            .await
            .expect("the pull ends")
    });
    let ticked = holder.join().unwrap();
    assert_eq!(pulled.unwrap().inserted, 100);
    assert!(
        ticked >= TICKS,
        "the timer ticked {ticked} times while the pull waited on SQLite"
    );
}

/// Item 7: a redirect is an error, not a second request elsewhere (LAN
/// discovery contacts only a datagram's source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_no_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, mut mirror) = owner_and_mirror(dir.path(), 1);
    let public = *owner.public_key();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let elsewhere = serve_elsewhere(Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async move { encode_records(&[], &public) }
    }));
    let redirector = serve_elsewhere(Router::new().fallback(
        move |uri: axum::http::Uri| async move {
            (
                axum::http::StatusCode::FOUND,
                [(
                    axum::http::header::LOCATION,
                    format!("http://{elsewhere}{uri}"),
                )],
            )
        },
    ));
    let mut source = HttpSource::new(&format!("http://{redirector}/"), public);
    let result = tokio::time::timeout(HANG, pull(&mut mirror, &mut source))
        .await
        .expect("the pull ends");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    assert!(
        matches!(
            result,
            Err(SyncError::Source(
                keyway_drayer::http::ClientError::Status { status: 302, .. }
            ))
        ),
        "{result:?}"
    );
}

/// Item 7: a peer that accepts the connection and then says nothing is
/// given up on after the read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_is_given_up_on() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, mut mirror) = owner_and_mirror(dir.path(), 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, reads nothing, writes nothing, and keeps the connections.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            if held.len() < 16 {
                held.push(socket);
            }
        }
    });
    let mut source = HttpSource::new(&format!("http://{addr}/"), *owner.public_key())
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(1));
    let result = tokio::time::timeout(HANG, pull(&mut mirror, &mut source))
        .await
        .expect("the pull ends");
    let Err(SyncError::Source(keyway_drayer::http::ClientError::Http { source, .. })) = result
    else {
        panic!("{result:?}");
    };
    assert!(source.is_timeout(), "{source:?}");
}
