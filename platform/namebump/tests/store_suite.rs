//! One storage suite, run against every backend: SQLite always; PostgreSQL
//! and MariaDB/MySQL on the local services (`tests/run.sh` makes sure they
//! are running; set KEYWAY_TEST_POSTGRES / KEYWAY_TEST_MYSQL to point
//! elsewhere). A missing service fails the test: nothing is skipped.
#![allow(clippy::unwrap_used)]

use std::net::Ipv6Addr;

use keyway_core::namebump::address::Ipv6Parts;
use keyway_namebump::store::{
    DelOutcome, DelRequest, IpKey, Limits, NameStore, Purged, PutOutcome, PutRequest, SqlStore,
};
use sqlx::Connection;

mod common;
use common::TestDatabase;

const T0: f64 = 1_800_000_000.0;
const DAY: f64 = 86_400.0;

fn owner(n: u8) -> [u8; 33] {
    let mut k = [n; 33];
    k[0] = 2;
    k
}

const A: IpKey = IpKey::V4(0x7f00_0002);
const B: IpKey = IpKey::V4(0x7f00_0003);

fn v6(s: &str) -> IpKey {
    IpKey::V6(Ipv6Parts::from(s.parse::<Ipv6Addr>().unwrap()))
}

fn put(name: &str, value: &[u8], who: u8, ip: IpKey, updated: f64, bump: bool) -> PutRequest {
    PutRequest {
        name: name.as_bytes().to_vec(),
        value: value.to_vec(),
        owner: owner(who),
        ip,
        updated,
        bump,
        signed: None,
    }
}

fn del(name: &str, who: u8, updated: f64) -> DelRequest {
    DelRequest {
        name: name.as_bytes().to_vec(),
        owner: owner(who),
        updated,
    }
}

/// Small IPv6 /48 limit so the subnet rule is cheap to reach.
fn limits() -> Limits {
    Limits {
        v6_subnets_per_48: 3,
        ..Limits::default()
    }
}

async fn suite(s: &impl NameStore) {
    ownership_and_monotonic_updates(s).await;
    ipv4_quota_bump_and_expiry(s).await;
    relocation_moves_accounting(s).await;
    ipv6_quotas(s).await;
    delete_rules(s).await;
    values_and_names_are_bytes(s).await;
    deleted_names_stay_deleted(s).await;
    tombstones_per_source_are_bounded(s).await;
    purge_removes_expired_names_and_unused_addresses(s).await;
    put_then_reports_committed_outcomes(s).await;
    put_then_bursts_decide_as_single_writes(s).await;
}

/// Queues PUTs with `put_then` back to back (a burst, as many UDP requests
/// at once) and returns their outcomes in the same order.
async fn burst(
    s: &impl NameStore,
    puts: Vec<PutRequest>,
    now: f64,
) -> Vec<Result<PutOutcome, String>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let n = puts.len();
    for (i, r) in puts.into_iter().enumerate() {
        let tx = tx.clone();
        let then =
            move |r: Result<PutOutcome, _>| drop(tx.send((i, r.map_err(|e| format!("{e}")))));
        s.put_then(r, now, Box::new(then)).await;
    }
    drop(tx);
    let mut outcomes = vec![Err("no outcome".to_string()); n];
    let mut calls = 0;
    while let Some((i, outcome)) = rx.recv().await {
        outcomes[i] = outcome;
        calls += 1;
    }
    assert_eq!(calls, n, "one call per write");
    outcomes
}

/// A burst of PUTs decides each as a PUT on its own would (on PostgreSQL
/// the burst travels in batched statements, `sqlx_store.rs`): refreshes,
/// claims, refusals from the row, a move to another address (the locking
/// way) and two claims of one name by two keys (one wins).
async fn put_then_bursts_decide_as_single_writes(s: &impl NameStore) {
    use PutOutcome::{NotOwner, Stale, Stored, Unchanged};
    // Addresses no other step uses.
    let (d, c) = (IpKey::V4(0x7f00_0010), IpKey::V4(0x7f00_0011));
    for i in 0..6 {
        let r = put(&format!("burst{i}"), b"v1", 1, d, T0, false);
        assert_eq!(s.put(r, T0).await.unwrap(), Stored);
    }
    let later = T0 + 1.0;
    let puts = vec![
        put("burst0", b"v2", 1, d, later, false),
        put("burst1", b"v2", 1, d, later, false),
        put("burst2", b"v2", 2, d, later, false),
        put("burst3", b"old", 1, d, T0 - 1.0, false),
        put("burst4", b"v1", 1, d, T0, false),
        put("burst5", b"moved", 1, c, later, false),
        put("burst-new1", b"n", 3, c, later, false),
        put("burst-new2", b"n", 3, c, later, false),
        put("burst-twice", b"first", 4, c, later, false),
        put("burst-twice", b"second", 5, c, later + 0.5, false),
    ];
    let outcomes = burst(s, puts, later).await;

    assert_eq!(
        outcomes[..9],
        [
            Ok(Stored),
            Ok(Stored),
            Ok(NotOwner),
            Ok(Stale),
            Ok(Unchanged),
            Ok(Stored),
            Ok(Stored),
            Ok(Stored),
            outcomes[8].clone()
        ]
    );
    // The two claims of one name race: one is stored, the other is not
    // its owner's.
    let twice = s.get(b"burst-twice", later).await.unwrap().unwrap();
    let (winner, loser) = if twice.owner == owner(4) {
        (8, 9)
    } else {
        (9, 8)
    };
    assert_eq!(
        (&outcomes[winner], &outcomes[loser]),
        (&Ok(Stored), &Ok(NotOwner))
    );
    for (name, value, who) in [
        ("burst0", &b"v2"[..], 1),
        ("burst2", b"v1", 1),
        ("burst3", b"v1", 1),
        ("burst4", b"v1", 1),
        ("burst5", b"moved", 1),
        ("burst-new2", b"n", 3),
    ] {
        let got = s.get(name.as_bytes(), later).await.unwrap().unwrap();
        assert_eq!(
            (got.value.as_slice(), got.owner),
            (value, owner(who)),
            "{name}"
        );
    }
    assert_eq!(s.usage(d, later).await.unwrap(), 5);
    assert_eq!(s.usage(c, later).await.unwrap(), 4);
}

/// `put_then` (what the UDP listener uses) gives its callback the outcome
/// once the write is committed, exactly once per write.
async fn put_then_reports_committed_outcomes(s: &impl NameStore) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut outcomes = Vec::new();
    for (value, updated) in [(&b"v2"[..], T0 + 2.0), (&b"v1"[..], T0 + 1.0)] {
        let tx = tx.clone();
        let then = move |r: Result<PutOutcome, _>| drop(tx.send(r.map_err(|e| format!("{e}"))));
        s.put_then(
            put("then", value, 1, A, updated, true),
            T0 + 2.0,
            Box::new(then),
        )
        .await;
        outcomes.push(rx.recv().await);
        if updated == T0 + 2.0 {
            // Committed by the time the callback ran.
            let got = s.get(b"then", T0 + 2.0).await.unwrap();
            assert_eq!(got.map(|r| r.value), Some(b"v2".to_vec()));
        }
    }
    drop(tx);
    assert_eq!(
        outcomes,
        [Some(Ok(PutOutcome::Stored)), Some(Ok(PutOutcome::Stale))]
    );
    assert_eq!(rx.recv().await, None, "one call per write");
}

async fn ownership_and_monotonic_updates(s: &impl NameStore) {
    let r = put("own", b"v1", 1, A, T0, true);
    assert_eq!(s.put(r.clone(), T0).await.unwrap(), PutOutcome::Stored);
    let got = s.get(b"own", T0).await.unwrap().unwrap();
    assert_eq!(
        (got.value.as_slice(), got.owner, got.timestamp),
        (&b"v1"[..], owner(1), T0 as i64)
    );
    // The same request again, and an older one with the same value (the
    // other leg of a reference client's TCP/UDP race): idempotent success.
    assert_eq!(s.put(r, T0).await.unwrap(), PutOutcome::Unchanged);
    assert_eq!(
        s.put(put("own", b"v1", 1, A, T0 - 0.3, true), T0)
            .await
            .unwrap(),
        PutOutcome::Unchanged
    );
    // An older request with another value must not revert the newer write.
    assert_eq!(
        s.put(put("own", b"old", 1, A, T0 - 1.0, true), T0)
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    assert_eq!(
        s.put(put("own", b"x", 2, A, T0 + 1.0, true), T0)
            .await
            .unwrap(),
        PutOutcome::NotOwner
    );
    assert_eq!(
        s.put(put("own", b"v2", 1, A, T0 + 0.5, true), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    let got = s.get(b"own", T0).await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.updated), (&b"v2"[..], T0 + 0.5));
    assert_eq!(
        s.delete(del("own", 1, T0 + 1.0), T0).await.unwrap(),
        DelOutcome::Deleted
    );
}

async fn ipv4_quota_bump_and_expiry(s: &impl NameStore) {
    let ip = IpKey::V4(0x7f00_0010);
    for i in 0..20 {
        let r = put(&format!("q{i}"), b"v", 3, ip, T0 + f64::from(i), false);
        assert_eq!(s.put(r, T0).await.unwrap(), PutOutcome::Stored, "name {i}");
    }
    assert_eq!(s.usage(ip, T0).await.unwrap(), 20);
    // Full: DONT_BUMP is rejected, and so is DO_BUMP while every name is young.
    assert_eq!(
        s.put(put("q20", b"v", 3, ip, T0 + 30.0, false), T0)
            .await
            .unwrap(),
        PutOutcome::AtQuota
    );
    assert_eq!(
        s.put(put("q20", b"v", 3, ip, T0 + 30.0, true), T0)
            .await
            .unwrap(),
        PutOutcome::AtQuota
    );
    assert_eq!(
        s.get(b"q20", T0).await.unwrap(),
        None,
        "a rejected PUT stores nothing"
    );
    // Refreshing in place at the limit is always allowed.
    assert_eq!(
        s.put(put("q0", b"w", 3, ip, T0 + 40.0, false), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );

    // Day 29: refresh every name but q5 (so it expires on day 30).
    let day29 = T0 + 29.0 * DAY;
    for i in (0..20).filter(|i| *i != 5) {
        let r = put(&format!("q{i}"), b"r", 3, ip, day29 + f64::from(i), false);
        assert_eq!(s.put(r, day29).await.unwrap(), PutOutcome::Stored);
    }
    // Day 30 and a bit: q5 reads as absent at once and no longer counts.
    let day30 = T0 + 30.0 * DAY + 10.0;
    assert_eq!(s.get(b"q5", day30).await.unwrap(), None);
    assert_eq!(s.usage(ip, day30).await.unwrap(), 19);
    // Its name can be claimed by someone else.
    assert_eq!(
        s.put(put("q5", b"new", 4, B, day30, false), day30)
            .await
            .unwrap(),
        PutOutcome::Stored
    );

    // Day 31: every name of the row was claimed 30+ days ago, so DO_BUMP
    // evicts the oldest claim (q0, claimed first) and DONT_BUMP still fails.
    let day31 = T0 + 31.0 * DAY;
    assert_eq!(
        s.put(put("n1", b"v", 3, ip, day31, false), day31)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(s.usage(ip, day31).await.unwrap(), 20);
    assert_eq!(
        s.put(put("n2", b"v", 3, ip, day31, false), day31)
            .await
            .unwrap(),
        PutOutcome::AtQuota
    );
    assert_eq!(
        s.put(put("n2", b"v", 3, ip, day31, true), day31)
            .await
            .unwrap(),
        PutOutcome::StoredAfterBump
    );
    assert_eq!(
        s.get(b"q0", day31).await.unwrap(),
        None,
        "oldest claim bumped"
    );
    // The bumped owner's last refresh, replayed (from anywhere), does not
    // bring the name back: the bump left a tombstone.
    assert_eq!(
        s.put(put("q0", b"r", 3, B, day29, false), day31)
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    assert_eq!(s.get(b"q0", day31).await.unwrap(), None);
    assert!(s.get(b"q1", day31).await.unwrap().is_some());
    assert!(s.get(b"n2", day31).await.unwrap().is_some());
    // n1 and n2 are young and immune: bumping continues with q1.
    assert_eq!(
        s.put(put("n3", b"v", 3, ip, day31 + 1.0, true), day31)
            .await
            .unwrap(),
        PutOutcome::StoredAfterBump
    );
    assert_eq!(s.get(b"q1", day31).await.unwrap(), None);
    assert!(s.get(b"n1", day31).await.unwrap().is_some());
}

async fn relocation_moves_accounting(s: &impl NameStore) {
    let (x, y) = (IpKey::V4(0x7f00_0020), IpKey::V4(0x7f00_0021));
    assert_eq!(
        s.put(put("mv", b"1", 5, x, T0, false), T0).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        s.put(put("mv", b"2", 5, y, T0 + 1.0, false), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        (s.usage(x, T0).await.unwrap(), s.usage(y, T0).await.unwrap()),
        (0, 1)
    );
    // Moving into a full row is refused and the name stays where it was.
    let full = IpKey::V4(0x7f00_0022);
    for i in 0..20 {
        s.put(put(&format!("f{i}"), b"v", 6, full, T0, false), T0)
            .await
            .unwrap();
    }
    assert_eq!(
        s.put(put("mv", b"3", 5, full, T0 + 2.0, false), T0)
            .await
            .unwrap(),
        PutOutcome::AtQuota
    );
    assert_eq!(s.usage(y, T0).await.unwrap(), 1);
    assert_eq!(s.get(b"mv", T0).await.unwrap().unwrap().value, b"2");
}

async fn ipv6_quotas(s: &impl NameStore) {
    let addr = v6("2001:db8:1:1::1");
    for i in 0..5 {
        let r = put(&format!("six{i}"), b"v", 7, addr, T0, false);
        assert_eq!(s.put(r, T0).await.unwrap(), PutOutcome::Stored);
    }
    assert_eq!(
        s.usage(addr, T0).await.unwrap(),
        5,
        "USAGE counts IPv6 names (bug 21)"
    );
    assert_eq!(
        s.put(put("six5", b"v", 7, addr, T0, false), T0)
            .await
            .unwrap(),
        PutOutcome::AtQuota
    );
    // 20 addresses per /64: 19 more fit, the 21st does not.
    for i in 2..=20 {
        let r = put(
            &format!("iface{i}"),
            b"v",
            7,
            v6(&format!("2001:db8:1:1::{i:x}")),
            T0,
            false,
        );
        assert_eq!(s.put(r, T0).await.unwrap(), PutOutcome::Stored, "iface {i}");
    }
    let r = put("iface21", b"v", 7, v6("2001:db8:1:1::ff"), T0, false);
    assert_eq!(s.put(r, T0).await.unwrap(), PutOutcome::AtQuota);
    // Interface ids with the top bit set round-trip through the u64 column.
    let high = v6("2001:db8:1:2:ffff:ffff:ffff:fff0");
    assert_eq!(
        s.put(put("high", b"v", 7, high, T0, false), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(s.usage(high, T0).await.unwrap(), 1);
    // /64s per /48 (3 in this suite's limits): :1 and :2 exist, :3 fits, :4 does not.
    assert_eq!(
        s.put(put("sub3", b"v", 7, v6("2001:db8:1:3::1"), T0, false), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        s.put(put("sub4", b"v", 7, v6("2001:db8:1:4::1"), T0, false), T0)
            .await
            .unwrap(),
        PutOutcome::AtQuota
    );
    assert_eq!(
        s.put(
            put("other48", b"v", 7, v6("2001:db8:2:4::1"), T0, false),
            T0
        )
        .await
        .unwrap(),
        PutOutcome::Stored
    );
}

async fn delete_rules(s: &impl NameStore) {
    assert_eq!(
        s.put(put("d", b"v", 8, A, T0 + 10.0, true), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        s.delete(del("d", 9, T0 + 11.0), T0).await.unwrap(),
        DelOutcome::NotOwner
    );
    // A DEL older than the write (a replay from before the name was
    // claimed again) must not delete it.
    assert_eq!(
        s.delete(del("d", 8, T0 + 9.0), T0).await.unwrap(),
        DelOutcome::Stale
    );
    assert_eq!(
        s.delete(del("d", 8, T0 + 11.0), T0).await.unwrap(),
        DelOutcome::Deleted
    );
    assert_eq!(s.get(b"d", T0).await.unwrap(), None);
    assert_eq!(
        s.delete(del("d", 8, T0 + 12.0), T0).await.unwrap(),
        DelOutcome::Absent
    );
}

async fn values_and_names_are_bytes(s: &impl NameStore) {
    let name = [0u8, 0xff, b'\'', b'"', b'\\', 0x80];
    let value: Vec<u8> = (0..1024).map(|i| (i * 7 % 256) as u8).collect();
    let r = PutRequest {
        name: name.to_vec(),
        value: value.clone(),
        owner: owner(10),
        ip: B,
        updated: T0,
        bump: true,
        signed: None,
    };
    assert_eq!(s.put(r, T0).await.unwrap(), PutOutcome::Stored);
    assert_eq!(
        s.get(&name, T0).await.unwrap().unwrap().value,
        value,
        "1024 bytes intact (bug 16)"
    );
    assert_eq!(
        s.get(&name[..5], T0).await.unwrap(),
        None,
        "exact binary match only"
    );
}

/// Item 11 of the hardening issue: a deletion leaves a tombstone, and only
/// a request newer than the name's last write, tombstones included, has
/// any effect.
async fn deleted_names_stay_deleted(s: &impl NameStore) {
    let t = T0 + 1000.0;
    // A PUT an eavesdropper captured, then the owner's DEL.
    let captured = put("gone", b"v", 11, A, t, true);
    assert_eq!(
        s.put(captured.clone(), t).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        s.delete(del("gone", 11, t + 1.0), t + 1.0).await.unwrap(),
        DelOutcome::Deleted
    );
    // Replayed, from the owner's address or any other: refused.
    for ip in [A, B] {
        let replay = PutRequest {
            ip,
            ..captured.clone()
        };
        assert_eq!(s.put(replay, t + 2.0).await.unwrap(), PutOutcome::Stale);
    }
    assert_eq!(s.get(b"gone", t + 2.0).await.unwrap(), None);
    // The DEL again (its other leg), or an older one: success, no effect.
    for updated in [t + 1.0, t + 0.5] {
        assert_eq!(
            s.delete(del("gone", 11, updated), t + 2.0).await.unwrap(),
            DelOutcome::Absent
        );
    }
    // First come: another key may claim the deleted name, with a request
    // newer than the deletion.
    assert_eq!(
        s.put(put("gone", b"w", 12, B, t + 0.9, true), t + 2.0)
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    assert_eq!(
        s.put(put("gone", b"w", 12, B, t + 3.0, true), t + 3.0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    let got = s.get(b"gone", t + 3.0).await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.owner), (&b"w"[..], owner(12)));
    // The old owner's requests are now a stranger's.
    assert_eq!(
        s.put(captured.clone(), t + 3.0).await.unwrap(),
        PutOutcome::NotOwner
    );
    assert_eq!(
        s.delete(del("gone", 11, t + 5.0), t + 3.0).await.unwrap(),
        DelOutcome::NotOwner
    );
    // A DEL must be newer than the write it deletes, not merely as new: a
    // DEL dated like a later re-claim would otherwise undo it on replay.
    assert_eq!(
        s.delete(del("gone", 12, t + 3.0), t + 3.0).await.unwrap(),
        DelOutcome::Stale
    );
    assert_eq!(
        s.delete(del("gone", 12, t + 4.0), t + 4.0).await.unwrap(),
        DelOutcome::Deleted
    );
    // Tombstones outlive any request they could be compared with (ttl +
    // clock skew) and are then collected.
    let kept = Limits::default().tombstone_lifetime as f64;
    assert!(kept >= 65.0, "{kept}");
    s.purge_expired(t + 4.0 + 65.0).await.unwrap();
    assert_eq!(
        s.put(put("gone", b"x", 13, B, t + 3.5, true), t + 70.0)
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    let late = t + 4.0 + kept + 1.0;
    let purged = s.purge_expired(late).await.unwrap();
    assert!(purged.names >= 1, "{purged:?}");
    assert_eq!(
        s.put(put("gone", b"x", 13, B, t + 3.5, true), late)
            .await
            .unwrap(),
        PutOutcome::Stored,
        "the tombstone was collected"
    );
}

/// Tombstones must not let a source grow storage without bound: a PUT/DEL
/// flood on fresh names from one address leaves at most its name quota
/// plus its tombstone allowance in rows, whatever the flood's length.
async fn tombstones_per_source_are_bounded(s: &impl NameStore) {
    let flooder = IpKey::V4(0x7f00_0909);
    let t = T0 + 20_000.0;
    let limits = Limits::default();
    // Three times the cap, four cycles a second: every tombstone is still
    // young when the flood ends, so only the cap bounds them.
    let cycles = 3 * limits.tombstones_per_address;
    // Collect what earlier steps left, so the count below is the flood's.
    s.purge_expired(t).await.unwrap();
    let mut stored = 0;
    for i in 0..cycles {
        let now = t + f64::from(i) / 4.0;
        let name = format!("flood{i}");
        if s.put(put(&name, b"v", 40, flooder, now, false), now)
            .await
            .unwrap()
            == PutOutcome::Stored
        {
            stored += 1;
            assert_eq!(
                s.delete(del(&name, 40, now + 0.5), now + 0.5)
                    .await
                    .unwrap(),
                DelOutcome::Deleted
            );
        }
    }
    assert!(stored > 0);
    // Every tombstone left is collected by one purge well after the flood:
    // its count is the rows the flood had left behind.
    let late = t + f64::from(cycles) + limits.tombstone_lifetime as f64 + 10.0;
    let left = s.purge_expired(late).await.unwrap().names;
    let bound = u64::from(limits.v4_names + limits.tombstones_per_address);
    assert!(
        left <= bound,
        "{left} rows left by {stored} PUT/DEL cycles from one address (bound {bound})"
    );
    // Once the tombstones age out, the source claims fresh names again.
    assert_eq!(
        s.put(put("flood-after", b"v", 40, flooder, late, false), late)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        s.delete(del("flood-after", 40, late + 1.0), late + 1.0)
            .await
            .unwrap(),
        DelOutcome::Deleted
    );
}

/// PUTs of "raced" dated t + 1, 3, 5 … (parity 0) or t + 2, 4, 6 …
/// (parity 1), in order; returns the `n` of those stored.
async fn race_writes(s: &impl NameStore, t: f64, parity: u32) -> Vec<u32> {
    let mut stored = Vec::new();
    for k in 0..40u32 {
        let n = 2 * k + parity + 1;
        let value = n.to_string();
        let r = put("raced", value.as_bytes(), 30, A, t + f64::from(n), false);
        // A write that lost a race twice fails with nothing committed.
        if let Ok(PutOutcome::Stored) = s.put(r, t).await {
            stored.push(n);
        }
    }
    stored
}

/// Two stores (two servers) on one database, writing one name at once:
/// the rule "only a newer write has effect" holds in the database write
/// itself, so the name never goes back to an older write.
async fn two_stores_never_revert_a_write(a: &impl NameStore, b: &impl NameStore) {
    let t = T0 + 5000.0;
    let first = put("raced", b"0", 30, A, t, false);
    assert_eq!(a.put(first, t).await.unwrap(), PutOutcome::Stored);
    let (x, y) = tokio::join!(race_writes(a, t, 0), race_writes(b, t, 1));
    let newest = x.into_iter().chain(y).max().unwrap();
    let got = a.get(b"raced", t).await.unwrap().unwrap();
    assert_eq!(got.value, newest.to_string().into_bytes());
    assert_eq!(got.updated, t + f64::from(newest));
}

async fn purge_removes_expired_names_and_unused_addresses(s: &impl NameStore) {
    let late = T0 + 400.0 * DAY;
    let purged = s.purge_expired(late).await.unwrap();
    assert!(purged.names > 0 && purged.addresses > 0, "{purged:?}");
    assert_eq!(
        s.purge_expired(late).await.unwrap(),
        Purged::default(),
        "nothing left to purge"
    );
    assert_eq!(s.usage(A, late).await.unwrap(), 0);
    // The freed address accepts names again.
    assert_eq!(
        s.put(put("again", b"v", 1, A, late, false), late)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("names.db").display());
    let store = SqlStore::open(&url, limits()).await.unwrap();
    suite(&store).await;
    // Reopening runs the migrations again without harm and keeps the data.
    let again = SqlStore::open(&url, limits()).await.unwrap();
    two_stores_never_revert_a_write(&store, &again).await;
    assert!(
        again
            .get(b"again", T0 + 400.0 * DAY)
            .await
            .unwrap()
            .is_some()
    );
}

/// Creates a fresh database on a server, runs the suite, drops it.
async fn on_server(admin_url: &str, url_for: impl Fn(&str) -> String) {
    let db = TestDatabase::create(admin_url, "keyway_test").await;
    let store = SqlStore::open(&url_for(&db.name), limits()).await.unwrap();
    suite(&store).await;
    let second = SqlStore::open(&url_for(&db.name), limits()).await.unwrap();
    two_stores_never_revert_a_write(&store, &second).await;
    second.close().await;
    store.close().await;
    db.drop().await;
}

/// The reference's DDL (specs/namebump-schema.sql), as a namebump 0.0.16
/// deployment has it.
const REFERENCE_SCHEMA: [&str; 3] = [
    "CREATE TABLE ipv4s (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, v4_val INT UNSIGNED NOT NULL,
      timestamp BIGINT UNSIGNED NOT NULL, PRIMARY KEY (id), UNIQUE KEY v4_val (v4_val)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    "CREATE TABLE ipv6s (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, v6_glob_main INT UNSIGNED NOT NULL,
      v6_glob_extra SMALLINT UNSIGNED NOT NULL, v6_lan_id SMALLINT UNSIGNED NOT NULL,
      v6_iface_id BIGINT UNSIGNED NOT NULL, timestamp BIGINT UNSIGNED NOT NULL,
      PRIMARY KEY (id), UNIQUE KEY v6_val (v6_glob_main, v6_glob_extra, v6_lan_id, v6_iface_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    "CREATE TABLE names (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, name VARBINARY(50) NOT NULL,
      value VARBINARY(500) NOT NULL, owner_pub BINARY(33) NOT NULL,
      af TINYINT UNSIGNED NOT NULL, ip_id BIGINT UNSIGNED NOT NULL,
      timestamp BIGINT UNSIGNED NOT NULL, updated BIGINT UNSIGNED NOT NULL,
      PRIMARY KEY (id), UNIQUE KEY name (name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
];

/// A database the reference server created and wrote, opened by Keyway:
/// upgraded in place, its names served, and deletions durable on it too.
#[tokio::test]
async fn mysql_reference_database_is_upgraded_in_place() {
    let base = common::mysql_base();
    let db = TestDatabase::create(&format!("{base}/mysql"), "keyway_test_ref").await;
    let url = format!("{base}/{}", db.name);
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    for statement in REFERENCE_SCHEMA {
        sqlx::raw_sql(statement).execute(&mut conn).await.unwrap();
    }
    // What the reference stores for a PUT of "legacy" from 127.0.0.2.
    sqlx::query("INSERT INTO ipv4s (v4_val, timestamp) VALUES (?, ?)")
        .bind(0x7f00_0002_i64)
        .bind(T0 as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO names (name, value, owner_pub, af, ip_id, timestamp, updated) \
         VALUES (?, ?, ?, 2, 1, ?, ?)",
    )
    .bind(b"legacy".to_vec())
    .bind(b"v".to_vec())
    .bind(owner(20).to_vec())
    .bind(T0 as i64)
    .bind(T0 as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = SqlStore::open(&url, limits()).await.unwrap();
    let got = store.get(b"legacy", T0).await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.owner), (&b"v"[..], owner(20)));
    assert_eq!(
        store
            .delete(del("legacy", 20, T0 + 1.0), T0 + 1.0)
            .await
            .unwrap(),
        DelOutcome::Deleted
    );
    assert_eq!(
        store
            .put(put("legacy", b"v", 20, A, T0 + 0.5, false), T0 + 2.0)
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    assert_eq!(store.get(b"legacy", T0 + 2.0).await.unwrap(), None);
    // Reopening (migrations again) keeps the tombstone and the rules.
    store.close().await;
    let store = SqlStore::open(&url, limits()).await.unwrap();
    assert_eq!(
        store
            .put(put("legacy", b"v", 20, A, T0 + 0.5, false), T0 + 2.0)
            .await
            .unwrap(),
        PutOutcome::Stale
    );
    suite(&store).await;
    store.close().await;
    db.drop().await;
}

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    let base = common::postgres_base();
    on_server(&format!("{base}/postgres"), |db| format!("{base}/{db}")).await;
}

#[tokio::test]
async fn mysql_store_passes_the_suite() {
    let base = common::mysql_base();
    on_server(&format!("{base}/mysql"), |db| format!("{base}/{db}")).await;
}

/// A new PostgreSQL database (named after `prefix`), its URL, and a store
/// on it with the suite's limits.
async fn fresh_postgres(prefix: &str) -> (TestDatabase, String, SqlStore) {
    let base = common::postgres_base();
    let db = TestDatabase::create(&format!("{base}/postgres"), prefix).await;
    let url = format!("{base}/{}", db.name);
    let store = SqlStore::open(&url, limits()).await.unwrap();
    (db, url, store)
}

/// A refresh of a live name from the address that holds it is one
/// statement on PostgreSQL (issue 12, CPU per PUT: the read and the guarded
/// write travel together); every other case still decides from what the
/// row held. A claim of a new name is one too: that read claims when no
/// row holds the name (6 round trips at first, then 2).
#[tokio::test]
async fn postgres_refreshes_in_one_round_trip() {
    let (db, _, store) = fresh_postgres("keyway_test_rt").await;
    let metrics = store.db_metrics().unwrap();
    let here6 = v6("2001:db8:1:2::5");
    for (name, ip) in [("rt4", A), ("rt6", here6)] {
        assert_eq!(
            store
                .put(put(name, b"v1", 1, ip, T0, false), T0)
                .await
                .unwrap(),
            PutOutcome::Stored
        );
        let trips = |before: u64| metrics.round_trips() - before;
        let before = metrics.round_trips();
        assert_eq!(
            store
                .put(put(name, b"v2", 1, ip, T0 + 1.0, false), T0)
                .await
                .unwrap(),
            PutOutcome::Stored
        );
        assert_eq!(trips(before), 1, "{name}: a refresh in place");
        let got = store.get(name.as_bytes(), T0).await.unwrap().unwrap();
        assert_eq!((got.value.as_slice(), got.updated), (&b"v2"[..], T0 + 1.0));
        // Refused from the row as read, in the same single statement, and
        // nothing written.
        for (refused, outcome) in [
            (
                put(name, b"x", 2, ip, T0 + 2.0, false),
                PutOutcome::NotOwner,
            ),
            (put(name, b"old", 1, ip, T0 + 0.5, false), PutOutcome::Stale),
            (
                put(name, b"v2", 1, ip, T0 + 1.0, false),
                PutOutcome::Unchanged,
            ),
        ] {
            let before = metrics.round_trips();
            assert_eq!(store.put(refused, T0).await.unwrap(), outcome);
            assert_eq!(trips(before), 1, "{name}: {outcome:?}");
        }
        let got = store.get(name.as_bytes(), T0).await.unwrap().unwrap();
        assert_eq!((got.value.as_slice(), got.owner), (&b"v2"[..], owner(1)));
    }
    // The fast path's read, which claims in the same statement when no
    // row holds the name.
    claim_of_a_new_name_takes(&store, 1).await;
    // From another address: the name moves, under the locks.
    let before = metrics.round_trips();
    assert_eq!(
        store
            .put(put("rt4", b"v3", 1, B, T0 + 3.0, false), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert!(metrics.round_trips() - before > 1);
    assert_eq!(store.usage(B, T0).await.unwrap(), 1);
    assert_eq!(store.usage(A, T0).await.unwrap(), 0);
    store.close().await;
    db.drop().await;
}

/// A burst of refreshes and claims queued with `put_then` (the UDP path)
/// travels in one statement on PostgreSQL: one round trip for all of them
/// (issue 12, CPU per PUT), each still decided as on its own.
#[tokio::test]
async fn postgres_batches_a_burst_of_puts_into_one_round_trip() {
    let (db, _, store) = fresh_postgres("keyway_test_batch").await;
    let metrics = store.db_metrics().unwrap();
    for i in 0..10 {
        let r = put(&format!("b{i}"), b"v1", 1, A, T0, false);
        assert_eq!(store.put(r, T0).await.unwrap(), PutOutcome::Stored);
    }
    // B's address row exists: its claims need no locking way.
    let r = put("c-first", b"n", 2, B, T0, false);
    assert_eq!(store.put(r, T0).await.unwrap(), PutOutcome::Stored);
    // An IPv6 name too: its address travels in the other columns.
    let here6 = v6("2001:db8:7:7::7");
    let r = put("b-v6", b"v1", 3, here6, T0, false);
    assert_eq!(store.put(r, T0).await.unwrap(), PutOutcome::Stored);
    let later = T0 + 1.0;
    let mut puts: Vec<_> = (0..10)
        .map(|i| put(&format!("b{i}"), b"v2", 1, A, later, false))
        .collect();
    puts.extend((0..10).map(|i| put(&format!("c{i}"), b"n", 2, B, later, false)));
    puts.push(put("b-v6", b"v2", 3, here6, later, false));
    let before = metrics.round_trips();
    // This test's runtime has one thread: every PUT is queued before the
    // batching task first runs.
    let outcomes = burst(&store, puts, later).await;
    assert!(
        outcomes.iter().all(|o| *o == Ok(PutOutcome::Stored)),
        "{outcomes:?}"
    );
    assert_eq!(metrics.round_trips() - before, 1);
    assert_eq!(store.usage(A, later).await.unwrap(), 10);
    assert_eq!(store.usage(B, later).await.unwrap(), 11);
    assert_eq!(store.usage(here6, later).await.unwrap(), 1);
    let record = store.get(b"b-v6", later).await.unwrap().unwrap();
    assert_eq!(record.value, b"v2");
    store.close().await;
    db.drop().await;
}

/// The names table's planner statistics on PostgreSQL, `-1` before any
/// analysis.
async fn names_reltuples(conn: &mut sqlx::AnyConnection) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT reltuples::BIGINT FROM pg_class WHERE oid = 'names'::regclass")
        .fetch_one(conn)
        .await
        .unwrap()
        .get(0)
}

/// A new PostgreSQL database's tables are analyzed by the store itself once
/// 1,000 PUTs came, so the plans it caches follow the table as it grows
/// (issue 12). Autovacuum is off for the table: only the store can have
/// analyzed it.
#[tokio::test]
async fn postgres_analyzes_a_growing_names_table() {
    let (db, url, store) = fresh_postgres("keyway_test_analyze").await;
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("ALTER TABLE names SET (autovacuum_enabled = false)")
        .execute(&mut conn)
        .await
        .unwrap();
    let claim = |i: u32| {
        put(
            &format!("g{i}"),
            b"v",
            1,
            IpKey::V4(0x0a00_0000 + i),
            T0,
            false,
        )
    };
    for i in 0..999 {
        assert_eq!(store.put(claim(i), T0).await.unwrap(), PutOutcome::Stored);
    }
    assert_eq!(names_reltuples(&mut conn).await, -1, "analyzed too early");
    assert_eq!(store.put(claim(999), T0).await.unwrap(), PutOutcome::Stored);
    let mut rows = -1;
    for _ in 0..100 {
        rows = names_reltuples(&mut conn).await;
        if rows >= 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Started with the 1,000th PUT, it may run before that PUT commits.
    assert!((999..=1_000).contains(&rows), "{rows}");
    conn.close().await.unwrap();
    store.close().await;
    db.drop().await;
}

/// On PostgreSQL the first claim from a new IPv4 address is one round trip
/// too (the claim function creates the address row, as the rules would),
/// unless the limits refuse every name: then the rules decide, and refuse.
#[tokio::test]
async fn postgres_first_claim_from_a_new_address_is_one_round_trip() {
    let (db, url, store) = fresh_postgres("keyway_test_new_addr").await;
    let metrics = store.db_metrics().unwrap();
    let before = metrics.round_trips();
    let r = put("fresh", b"v", 1, A, T0, false);
    assert_eq!(store.put(r, T0).await.unwrap(), PutOutcome::Stored);
    assert_eq!(metrics.round_trips() - before, 1);
    assert_eq!(store.usage(A, T0).await.unwrap(), 1);
    store.close().await;
    for refusing in [
        Limits {
            v4_names: 0,
            ..limits()
        },
        Limits {
            tombstones_per_address: 0,
            ..limits()
        },
    ] {
        let store = SqlStore::open(&url, refusing).await.unwrap();
        let r = put("refused", b"v", 1, B, T0, false);
        assert_eq!(store.put(r, T0).await.unwrap(), PutOutcome::AtQuota);
        assert!(store.get(b"refused", T0).await.unwrap().is_none());
        store.close().await;
    }
    db.drop().await;
}

/// A new name from an address that has a row, in `trips` round trips.
async fn claim_of_a_new_name_takes(store: &SqlStore, trips: u64) {
    let metrics = store.db_metrics().unwrap();
    let ip = IpKey::V4(0x7f00_0044);
    assert_eq!(
        store
            .put(put("first", b"v", 4, ip, T0, false), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    let before = metrics.round_trips();
    assert_eq!(
        store
            .put(put("second", b"v", 4, ip, T0, false), T0)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(metrics.round_trips() - before, trips);
    assert_eq!(store.usage(ip, T0).await.unwrap(), 2);
}

#[tokio::test]
async fn mysql_claims_in_six_round_trips() {
    let base = common::mysql_base();
    let db = TestDatabase::create(&format!("{base}/mysql"), "keyway_test_rt").await;
    let store = SqlStore::open(&format!("{base}/{}", db.name), limits())
        .await
        .unwrap();
    // The fast path's read (no row), then BEGIN, the address row's lock,
    // its counts, the INSERT and COMMIT; the name's row is not read a
    // second time (7 before).
    claim_of_a_new_name_takes(&store, 6).await;
    store.close().await;
    db.drop().await;
}

/// Connections stay with the store between requests (no pool ping at each
/// one, issue 12), but one whose request was cancelled half way is not
/// reused as it was left: on a store with a single connection, requests
/// after GETs dropped at any point of their statement are answered.
#[tokio::test]
async fn cancelled_requests_leave_the_store_usable() {
    let bases = [
        (common::postgres_base(), "postgres"),
        (common::mysql_base(), "mysql"),
    ];
    for (base, admin) in bases {
        let db = TestDatabase::create(&format!("{base}/{admin}"), "keyway_test_cancel").await;
        let store = SqlStore::open_with(&format!("{base}/{}", db.name), limits(), 1)
            .await
            .unwrap();
        assert_eq!(
            store
                .put(put("c", b"v0", 1, A, T0, false), T0)
                .await
                .unwrap(),
            PutOutcome::Stored
        );
        for i in 0..30u32 {
            let get = store.get(b"c", T0);
            let wait = std::time::Duration::from_micros(u64::from(i) * 40);
            let _ = tokio::time::timeout(wait, get).await;
            let updated = T0 + f64::from(i + 1);
            let value = format!("v{}", i + 1);
            assert_eq!(
                store
                    .put(put("c", value.as_bytes(), 1, A, updated, false), T0)
                    .await
                    .unwrap(),
                PutOutcome::Stored,
                "{admin}: PUT after GET {i} was dropped"
            );
            let got = store.get(b"c", T0).await.unwrap().unwrap();
            assert_eq!(got.value, value.as_bytes(), "{admin}: GET after {i}");
        }
        store.close().await;
        db.drop().await;
    }
}
