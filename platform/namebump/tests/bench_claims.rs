//! `bench` in claims mode (issue 12, "Speed") against a server on SQLite:
//! every acknowledged claim is a new name really stored, no claim is
//! refused, and the workers walk their source addresses as they must.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::rand_core::UnwrapErr;
use keyway_namebump::bench::{self, BenchConfig};
use keyway_namebump::{Limits, Server, ServerConfig, SqlStore, SystemClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_store_a_new_name_each_from_many_sources() {
    claims_from_many_sources(false).await;
}

/// The same with the requests signed ahead and the replies checked after
/// the run: what the generator counts is still exactly what was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precomputed_claims_count_exactly_what_was_stored() {
    let report = claims_from_many_sources(true).await;
    // Two seconds at the 25,000/s prepared for cannot run out on a debug
    // build.
    assert_eq!(report.signed_during_run, 0, "{report:?}");
}

async fn claims_from_many_sources(precompute: bool) -> bench::BenchReport {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nb.db");
    // Two names per address, and the generator moves on after two claims
    // from one: a worker that kept its source would be refused its third.
    let limits = Limits {
        v4_names: 2,
        ..Limits::default()
    };
    let store = SqlStore::open(&format!("sqlite:{}", db.display()), limits)
        .await
        .unwrap();
    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        rate_limit: None,
        limits,
        ..ServerConfig::default()
    };
    let key = Keypair::generate(&mut UnwrapErr(getrandom::SysRng));
    let server = Server::start(config, key, store, Arc::new(SystemClock))
        .await
        .unwrap();

    let clients = 3;
    let report = bench::run(BenchConfig {
        clients,
        duration: Duration::from_secs(2),
        // Generous: a debug build on two loaded cores; no reply may be lost.
        timeout: Duration::from_secs(20),
        claims: true,
        claims_per_source: 2,
        precompute,
        ..BenchConfig::new(server.udp_addrs()[0], *server.public_key())
    })
    .await
    .unwrap();
    server.shutdown(Duration::from_secs(5)).await;

    assert_eq!((report.errors, report.timeouts), (0, 0), "{report:?}");
    assert_eq!((report.get.count, report.put.count), (0, 0));
    // More claims than two per worker: some worker changed its source.
    assert!(report.claim.count > 2 * clients as u64, "{report:?}");
    // Every claim came from a source that had sent fewer than two before.
    assert!(report.sources * 2 >= report.claim.count, "{report:?}");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let count =
        |sql: &str| -> u64 { conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64 };
    assert_eq!(
        count("SELECT COUNT(*) FROM names WHERE af = 2"),
        report.claim.count,
        "every acknowledged claim is a stored name"
    );
    assert_eq!(
        count("SELECT COUNT(DISTINCT name) FROM names"),
        report.claim.count
    );
    assert_eq!(count("SELECT COUNT(*) FROM ipv4s"), report.sources);
    assert_eq!(
        count("SELECT COUNT(*) FROM (SELECT ip_id FROM names GROUP BY ip_id HAVING COUNT(*) > 2)"),
        0
    );
    report
}
