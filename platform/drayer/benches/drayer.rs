//! Drayer on this machine: owner inserts/s (one transaction each, and in
//! transactions of 1,000), records verified/s, and a full sync of N
//! records between two nodes over loopback HTTP. Not a test:
//!
//!     cargo bench -p keyway-drayer --bench drayer [-- RECORDS] [--inserts-only | --sync-only]
//!
//! With `DRAYER_REFERENCE=<clone of EternityForest/drayer>` and
//! `DRAYER_REFERENCE_PYTHON=<python with libnacl, msgpack==0.6.2, requests,
//! cherrypy>`, the original runs the same operations in the same run
//! (`tests/interop/drayer_ref_bench.py`; the clone is never committed) on
//! `DRAYER_REFERENCE_RECORDS` records (default 2,000: its lookups scan the
//! table, so it slows as the stream grows), and Keyway again on as many.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use keyway_drayer::Stream;
use keyway_drayer::http::{HttpSource, router};
use keyway_drayer::sync::pull;

struct Row {
    inserts: f64,
    batched: f64,
    verified: f64,
    synced: f64,
}

fn measure(records: usize, inserts_only: bool) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&path).unwrap();

    let started = Instant::now();
    for i in 0..records {
        owner
            .set(
                &format!("key{i}"),
                "obj",
                format!("value number {i}").as_bytes(),
            )
            .unwrap();
    }
    let inserts = records as f64 / started.elapsed().as_secs_f64();

    let mut batched_stream = Stream::create(&dir.path().join("batched.stream")).unwrap();
    let keys: Vec<(String, String)> = (0..records)
        .map(|i| (format!("key{i}"), format!("value number {i}")))
        .collect();
    let started = Instant::now();
    for chunk in keys.chunks(1000) {
        batched_stream
            .set_many(chunk.iter().map(|(k, v)| (k.as_str(), "obj", v.as_bytes())))
            .unwrap();
    }
    let batched = records as f64 / started.elapsed().as_secs_f64();
    if inserts_only {
        return Row {
            inserts,
            batched,
            verified: 0.0,
            synced: 0.0,
        };
    }

    let started = Instant::now();
    let report = owner.verify().unwrap();
    assert!(report.problems.is_empty());
    let verified = report.records as f64 / started.elapsed().as_secs_f64();

    let public = *owner.public_key();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let synced = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Stream::open(&path).unwrap();
        tokio::spawn(async move { axum::serve(listener, router(vec![served])).await });
        let mut mirror = Stream::mirror(&dir.path().join("mirror.stream"), public).unwrap();
        let mut source = HttpSource::new(&format!("http://{addr}/"), public);
        let started = Instant::now();
        let pulled = pull(&mut mirror, &mut source).await.unwrap();
        assert_eq!(pulled.inserted, records);
        records as f64 / started.elapsed().as_secs_f64()
    });
    Row {
        inserts,
        batched,
        verified,
        synced,
    }
}

/// For profiling the sync alone: the owner is filled in batches first.
fn sync_only(records: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.stream");
    let mut owner = Stream::create(&path).unwrap();
    let keys: Vec<(String, String)> = (0..records)
        .map(|i| (format!("key{i}"), format!("value number {i}")))
        .collect();
    for chunk in keys.chunks(1000) {
        owner
            .set_many(chunk.iter().map(|(k, v)| (k.as_str(), "obj", v.as_bytes())))
            .unwrap();
    }
    let public = *owner.public_key();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(vec![owner])).await });
        let mut mirror = Stream::mirror(&dir.path().join("mirror.stream"), public).unwrap();
        let mut source = HttpSource::new(&format!("http://{addr}/"), public);
        let started = Instant::now();
        pull(&mut mirror, &mut source).await.unwrap();
        records as f64 / started.elapsed().as_secs_f64()
    })
}

fn row(name: &str, records: usize, r: &Row) {
    let batched = if r.batched > 0.0 {
        format!("{:.0}", r.batched)
    } else {
        "—".to_owned()
    };
    println!(
        "| {name} | {records} | {:.0} | {batched} | {:.0} | {:.0} |",
        r.inserts, r.verified, r.synced
    );
}

/// The original, if a clone and a Python for it were given.
fn reference(records: usize) -> Option<Row> {
    let checkout = std::env::var("DRAYER_REFERENCE").ok()?;
    let python = std::env::var("DRAYER_REFERENCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/interop/drayer_ref_bench.py"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let out = std::process::Command::new(python)
        .args([script, &checkout, &records.to_string(), &port.to_string()])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
        eprintln!(
            "reference did not complete: {}{}",
            line,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    };
    assert_eq!(v["mirror_holds"].as_u64(), Some(records as u64));
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Some(Row {
        inserts: f("inserts"),
        batched: 0.0,
        verified: f("verified"),
        synced: f("synced"),
    })
}

fn main() {
    let records: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(100_000);
    if std::env::args().any(|a| a == "--sync-only") {
        println!("{:.0} records/s synced", sync_only(records));
        return;
    }
    if std::env::args().any(|a| a == "--inserts-only") {
        let r = measure(records, true);
        println!("{:.0} inserts/s, {:.0} in batches", r.inserts, r.batched);
        return;
    }
    let main_row = measure(records, false);
    let ref_records: usize = std::env::var("DRAYER_REFERENCE_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let original = reference(ref_records);
    let small = original.as_ref().map(|_| measure(ref_records, false));

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Machine: {cpu}, {cores} cores; SQLite stream files on local disk, sync over loopback HTTP"
    );
    println!();
    println!(
        "| implementation | records | owner inserts/s (a transaction each) | in transactions of 1,000 | records verified/s | full sync, records/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    row("Keyway", records, &main_row);
    match (&original, &small) {
        (Some(original), Some(small)) => {
            row("Keyway", ref_records, small);
            row("original Drayer (2019)", ref_records, original);
        }
        _ => println!("| original Drayer | (not run: set DRAYER_REFERENCE) | | | | |"),
    }
}
