//! Several stores (several server processes) on one database, racing on the
//! rules that must hold globally (issue 12): quota counts, IPv6 address
//! limits and the bump choice. Each backend runs every scenario with three
//! stores, each with its own connection pool, writing at once. The
//! three-process version, through real servers, is in
//! `platform/cli/tests/namebump_multi_server.rs`.
#![allow(clippy::unwrap_used)]

use std::net::Ipv6Addr;
use std::sync::Arc;

use keyway_core::namebump::address::Ipv6Parts;
use keyway_namebump::server::Metrics;
use keyway_namebump::store::{IpKey, Limits, NameStore, PutOutcome, PutRequest, SqlStore};

mod common;
use common::TestDatabase;

const T0: f64 = 1_800_000_000.0;
const DAY: f64 = 86_400.0;
const SOURCE: IpKey = IpKey::V4(0x7f00_0009);

fn owner(n: u32) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = 2;
    k[1..5].copy_from_slice(&n.to_be_bytes());
    k
}

fn claim(name: String, who: u32, ip: IpKey, updated: f64, bump: bool) -> PutRequest {
    PutRequest {
        name: name.into_bytes(),
        value: b"v".to_vec(),
        owner: owner(who),
        ip,
        updated,
        bump,
        signed: None,
    }
}

/// Runs every PUT at once, request `i` on store `i % 3`, and counts the
/// outcomes.
async fn race(stores: &[Arc<SqlStore>; 3], requests: Vec<PutRequest>, now: f64) -> Outcomes {
    let mut tasks = Vec::new();
    for (i, request) in requests.into_iter().enumerate() {
        let store = stores[i % 3].clone();
        tasks.push(tokio::spawn(async move { store.put(request, now).await }));
    }
    let mut outcomes = Outcomes::default();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            PutOutcome::Stored => outcomes.stored += 1,
            PutOutcome::StoredAfterBump => outcomes.bumped += 1,
            PutOutcome::AtQuota => outcomes.at_quota += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    outcomes
}

#[derive(Debug, Default, PartialEq)]
struct Outcomes {
    stored: u32,
    bumped: u32,
    at_quota: u32,
}

/// 200 claims of distinct new names from one IPv4 address, spread over
/// three stores: exactly the quota (20) is stored.
async fn claims_from_one_address_stop_at_the_quota(stores: &[Arc<SqlStore>; 3]) {
    let requests = (0..200)
        .map(|i| claim(format!("quota-{i}"), i, SOURCE, T0, false))
        .collect();
    let outcomes = race(stores, requests, T0).await;
    assert_eq!(
        outcomes,
        Outcomes {
            stored: 20,
            bumped: 0,
            at_quota: 180
        }
    );
    for store in stores {
        assert_eq!(store.usage(SOURCE, T0).await.unwrap(), 20);
    }
}

/// 60 new IPv6 addresses of one /64 claim a name each at once: the /64
/// takes 20 addresses, so exactly 20 claims succeed.
async fn addresses_of_one_64_stop_at_the_limit(stores: &[Arc<SqlStore>; 3]) {
    let requests = (0..60u16)
        .map(|i| {
            let ip = Ipv6Addr::new(0x2001, 0xdb8, 7, 7, 0, 0, 0, i + 1);
            let key = IpKey::V6(Ipv6Parts::from(ip));
            claim(format!("iface-{i}"), 1000 + u32::from(i), key, T0, false)
        })
        .collect();
    let outcomes = race(stores, requests, T0).await;
    assert_eq!(
        outcomes,
        Outcomes {
            stored: 20,
            bumped: 0,
            at_quota: 40
        }
    );
}

/// An address full of bumpable names (claimed 31 days ago, refreshed two
/// days ago, before they expired),
/// then 40 DO_BUMP claims at once: each of the 20 old names is bumped by
/// exactly one of them, the rest find nothing left to bump, and the address
/// never holds more than its quota.
async fn concurrent_bumps_evict_distinct_names(stores: &[Arc<SqlStore>; 3]) {
    let ip = IpKey::V4(0x7f00_000a);
    let old = T0 - 31.0 * DAY;
    for i in 0..20 {
        let name = format!("old-{i}");
        let first = claim(name.clone(), 5000 + i, ip, old, false);
        assert_eq!(stores[0].put(first, old).await.unwrap(), PutOutcome::Stored);
        let refresh = claim(name, 5000 + i, ip, T0 - 2.0 * DAY, false);
        assert_eq!(
            stores[1].put(refresh, T0 - 2.0 * DAY).await.unwrap(),
            PutOutcome::Stored
        );
    }
    let requests = (0..40)
        .map(|i| claim(format!("new-{i}"), 6000 + i, ip, T0, true))
        .collect();
    let outcomes = race(stores, requests, T0).await;
    assert_eq!(
        outcomes,
        Outcomes {
            stored: 0,
            bumped: 20,
            at_quota: 20
        }
    );
    assert_eq!(stores[2].usage(ip, T0).await.unwrap(), 20);
    for i in 0..20 {
        let name = format!("old-{i}");
        assert_eq!(stores[0].get(name.as_bytes(), T0).await.unwrap(), None);
    }
}

/// The server's metrics carry the store's: every write was a measured
/// transaction that took its locks, and none gave up.
fn database_work_is_measured(stores: &[Arc<SqlStore>; 3], sqlite: bool) {
    for store in stores {
        let db = store.db_metrics().unwrap();
        // Each store ran at least 99 writes above: on a server database
        // each in one transaction or more (retries), on SQLite in batches.
        let least = if sqlite { 1 } else { 99 };
        assert!(db.transactions() >= least, "{}", db.transactions());
        assert_eq!(db.gave_up_count(), 0);
        let text = Metrics::with_store(Some(&db)).encode();
        for name in [
            "keyway_namebump_db_retries_total{reason=\"deadlock\"}",
            "keyway_namebump_db_lock_waits_total",
            "keyway_namebump_db_lock_statement_seconds_count",
            "keyway_namebump_db_transaction_seconds_count",
            "keyway_namebump_db_gave_up_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}

/// 30 owners, each from an address of its own, claim one new name at
/// once over three stores: one claim wins, every other is refused as not
/// the owner (the unique key orders claims of a name no row holds yet),
/// and only the winner's address is charged.
async fn claims_of_one_new_name_have_one_winner(stores: &[Arc<SqlStore>; 3]) {
    let ip = |i: u32| IpKey::V4(0x0a00_0100 + i);
    let mut tasks = Vec::new();
    for i in 0..30u32 {
        let store = stores[i as usize % 3].clone();
        let request = claim("contested".into(), 7000 + i, ip(i), T0, false);
        tasks.push(tokio::spawn(async move { store.put(request, T0).await }));
    }
    let mut winners = Vec::new();
    for (i, task) in (0..30u32).zip(tasks) {
        match task.await.unwrap().unwrap() {
            PutOutcome::Stored => winners.push(i),
            PutOutcome::NotOwner => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = winners[0];
    let stored = stores[0].get(b"contested", T0).await.unwrap().unwrap();
    assert_eq!(stored.owner, owner(7000 + winner));
    for i in 0..30u32 {
        let used = stores[1].usage(ip(i), T0).await.unwrap();
        assert_eq!(used, u32::from(i == winner), "address {i}");
    }
}

async fn scenarios(url: &str) {
    let open = || async { Arc::new(SqlStore::open(url, Limits::default()).await.unwrap()) };
    let stores = [open().await, open().await, open().await];
    claims_from_one_address_stop_at_the_quota(&stores).await;
    addresses_of_one_64_stop_at_the_limit(&stores).await;
    concurrent_bumps_evict_distinct_names(&stores).await;
    claims_of_one_new_name_have_one_winner(&stores).await;
    database_work_is_measured(&stores, url.starts_with("sqlite:"));
    for store in &stores {
        store.close().await;
    }
}

/// A fresh database on a server for the scenarios, dropped afterwards.
async fn on_server(admin_url: &str, url_for: impl Fn(&str) -> String) {
    let db = TestDatabase::create(admin_url, "keyway_race").await;
    scenarios(&url_for(&db.name)).await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_race_correctly() {
    let base = common::postgres_base();
    on_server(&format!("{base}/postgres"), |db| format!("{base}/{db}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_stores_race_correctly() {
    let base = common::mysql_base();
    on_server(&format!("{base}/mysql"), |db| format!("{base}/{db}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_race_correctly() {
    let dir = tempfile::tempdir().unwrap();
    scenarios(&format!("sqlite:{}", dir.path().join("names.db").display())).await;
}
