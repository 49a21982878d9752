//! Any request line a client can send to the Drayer HTTP API: routes,
//! path segments and query strings. The server must answer every one
//! without panicking, with a status and a body under the page cap, and
//! must never change the stream it serves (reads never write, O15).
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use keyway_drayer::Stream;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    public_key: String,
    tip: i64,
    count: usize,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fuzz.drayer");
        let mut stream = Stream::create(&path).expect("stream");
        for i in 0..20u8 {
            stream
                .set(&format!("k{i}"), "msgpack", &[i; 40])
                .expect("write");
        }
        stream
            .set("index.html", "file", b"<p>hello</p>")
            .expect("write");
        stream.delete("k3", "msgpack").expect("delete");
        let tip = stream.tip().expect("tip");
        let count = stream.count().expect("count");
        let public_key = stream.public_key_base64();
        let reader = Stream::open_read_only(&path).expect("reader");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let router = keyway_drayer::http::router(vec![reader]);
        Fixture {
            runtime,
            router,
            public_key,
            tip,
            count,
            path,
            _dir: dir,
        }
    })
}

const OPERATIONS: [&str; 7] = [
    "newRecords",
    "crdr",
    "newest",
    "newestRecordsJSON",
    "listRecordsJSON",
    "webAccess",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let tail = String::from_utf8_lossy(rest);
    // Mostly the real stream's key, in the encodings clients use, so the
    // fuzzer reaches the handlers; sometimes whatever the input says.
    let key = match selector >> 5 {
        0 => f.public_key.replace('/', "%2F"),
        1 => f.public_key.replace('+', "-").replace('/', "_"),
        2 => f.public_key.trim_end_matches('=').replace('/', "%2F"),
        3 => String::new(),
        _ => f.public_key.replace('/', "%2F"),
    };
    let op = OPERATIONS[usize::from(selector & 7) % OPERATIONS.len()];
    let uri = match selector & 0x18 {
        0 => format!("/{key}/{op}/{tail}"),
        0x08 => format!("/{key}/{op}/{}{tail}", f.tip),
        0x10 => format!("/{key}/{op}/0?{tail}"),
        _ => format!("/{tail}"),
    };
    let Ok(request) = Request::get(uri).body(Body::empty()) else {
        return;
    };
    let body = f.runtime.block_on(async {
        let response = f
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        axum::body::to_bytes(response.into_body(), usize::MAX).await
    });
    // A response is never larger than one page of values plus its
    // metadata (at most `PAGE` records, keys and types of a few KiB).
    if let Ok(body) = body {
        assert!(
            body.len() <= keyway_drayer::http::PAGE_BYTES + 1024 * 1024,
            "a response of {} bytes",
            body.len()
        );
    }
    // Reads never write (O15): the stream's tip and size are unchanged.
    let stream = Stream::open_read_only(&f.path).expect("reader");
    assert_eq!(stream.tip().ok(), Some(f.tip));
    assert_eq!(stream.count().ok(), Some(f.count));
});
