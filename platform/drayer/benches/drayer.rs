//! Drayer on this machine: owner inserts/s (one transaction each), records
//! verified/s, and a full sync of N records between two nodes over
//! loopback HTTP. Not a test:
//! `cargo bench -p keyway-drayer --bench drayer [-- RECORDS] [--inserts-only]`.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use keyway_drayer::Stream;
use keyway_drayer::http::{HttpSource, router};
use keyway_drayer::sync::pull;

fn main() {
    let records: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(100_000);
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
    // The same writes in batches of 1,000 (one transaction each).
    let batched_path = dir.path().join("batched.stream");
    let mut batched = Stream::create(&batched_path).unwrap();
    let keys: Vec<(String, String)> = (0..records)
        .map(|i| (format!("key{i}"), format!("value number {i}")))
        .collect();
    let started = Instant::now();
    for chunk in keys.chunks(1000) {
        batched
            .set_many(chunk.iter().map(|(k, v)| (k.as_str(), "obj", v.as_bytes())))
            .unwrap();
    }
    let batched_inserts = records as f64 / started.elapsed().as_secs_f64();
    assert_eq!(batched.verify().unwrap().problems.len(), 0);
    // For profiling the owner's path alone.
    if std::env::args().any(|a| a == "--inserts-only") {
        println!("{inserts:.0} inserts/s, {batched_inserts:.0} in batches");
        return;
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

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("Machine: {cpu}, {cores} cores; {records} records, SQLite stream files on local disk");
    println!();
    println!(
        "| implementation | owner inserts/s, a transaction each | in transactions of 1,000 | records verified/s | full sync over loopback HTTP, records/s |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!("| Keyway | {inserts:.0} | {batched_inserts:.0} | {verified:.0} | {synced:.0} |");
}
