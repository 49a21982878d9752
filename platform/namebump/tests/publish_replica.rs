//! `--publish-stream` and the replica (issue 17): a mirror of the stream a
//! publishing store writes answers GETs as the store does, through puts,
//! updates, deletes, bumps and expiries; a record the server alters is
//! refused by the replica; a new stream is filled from the table.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use keyway_core::Keypair;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::published::{MAX_KEY_LEN, RECORD_TYPE, stream_key};
use keyway_core::namebump::{Op, Packet};
use keyway_drayer::Stream;
use keyway_drayer::sync::{Local, pull};
use keyway_namebump::replica::{self, ReplicaError};
use keyway_namebump::store::{
    DelOutcome, DelRequest, IpKey, Limits, NameStore, PutOutcome, PutRequest, SqlStore, StoreError,
};

const T0: f64 = 1_800_000_000.0;
const DAY: f64 = 86_400.0;
const A: IpKey = IpKey::V4(0x7f00_0002);
const B: IpKey = IpKey::V4(0x7f00_0003);
const C: IpKey = IpKey::V4(0x7f00_0004);

fn key(n: u8) -> Keypair {
    Keypair::from_secret_bytes(&[n; 32]).unwrap()
}

fn packet(owner: &Keypair, op: Op, name: &str, value: &[u8], updated: f64) -> Vec<u8> {
    let mut p = Packet::new(op, 7, updated, name.as_bytes(), value);
    p.reply_pk = Some(*key(99).public().as_bytes());
    p.sign(owner).unwrap();
    let mut out = [0u8; MAX_PACKET_LEN];
    let n = p.encode(&mut out).unwrap();
    out[..n].to_vec()
}

fn put(owner: &Keypair, name: &str, value: &[u8], ip: IpKey, updated: f64) -> PutRequest {
    PutRequest {
        name: name.as_bytes().to_vec(),
        value: value.to_vec(),
        owner: *owner.public().as_bytes(),
        ip,
        updated,
        bump: true,
        signed: Some(packet(owner, Op::Put, name, value, updated)),
    }
}

fn del(owner: &Keypair, name: &str, updated: f64) -> DelRequest {
    DelRequest {
        name: name.as_bytes().to_vec(),
        owner: *owner.public().as_bytes(),
        updated,
    }
}

/// A `sqlite:` URL of `names.db` in `dir`.
fn names_db(dir: &tempfile::TempDir) -> String {
    format!("sqlite:{}", dir.path().join("names.db").display())
}

/// A store publishing its names as the stream at `stream`, and the
/// stream's public key.
async fn publishing(db: &str, limits: Limits, stream: &Path) -> (SqlStore, String) {
    SqlStore::open_publishing(db, limits, stream).await.unwrap()
}

/// Waits (bounded) until the publisher has written every change.
async fn settle(store: &SqlStore) {
    for _ in 0..1000 {
        if store.publish_backlog().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the publisher did not catch up within 10 s");
}

/// Brings the mirror at `mirror` up to date with the stream at `stream`.
async fn mirror(stream: &Path, mirror: &Path) {
    let mut source = Stream::open_read_only(stream).unwrap();
    let mut copy = Stream::mirror(mirror, *source.public_key()).unwrap();
    pull(&mut copy, &mut Local(&mut source)).await.unwrap();
}

/// The replica answers every name exactly as the store does at `now`.
async fn agree(store: &SqlStore, replica_path: &Path, names: &[&str], now: f64) {
    for name in names {
        let want = store.get(name.as_bytes(), now).await.unwrap();
        let got = replica::get(replica_path, name.as_bytes()).unwrap();
        match (want, got) {
            (None, None) => {}
            (Some(w), Some(g)) => {
                assert_eq!(
                    (g.value, g.owner, g.timestamp),
                    (w.value, w.owner, w.timestamp as f64),
                    "{name}"
                );
            }
            (w, g) => panic!("{name}: store {w:?}, replica {g:?}"),
        }
    }
}

fn record_key_of(name: &[u8]) -> String {
    stream_key(name, &mut [0u8; MAX_KEY_LEN])
        .unwrap()
        .to_owned()
}

fn limits() -> Limits {
    Limits {
        v4_names: 1,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_puts_updates_deletes_bumps_and_expiries() {
    let dir = tempfile::tempdir().unwrap();
    let db = names_db(&dir);
    let (stream, copy) = (
        dir.path().join("names.stream"),
        dir.path().join("copy.stream"),
    );
    let (store, public) = publishing(&db, limits(), &stream).await;
    assert_eq!(
        public,
        Stream::open_read_only(&stream).unwrap().public_key_base64()
    );
    let (k1, k2) = (key(1), key(2));
    let names = ["a", "b", "c", "d", "never"];

    // Puts.
    for (name, ip, owner) in [("a", A, &k1), ("b", B, &k1), ("c", C, &k2)] {
        let outcome = store
            .put(put(owner, name, b"v1", ip, T0), T0)
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
    }
    settle(&store).await;
    mirror(&stream, &copy).await;
    agree(&store, &copy, &names, T0).await;
    assert_eq!(replica::get(&copy, b"c").unwrap().unwrap().value, b"v1");

    // An update and a delete.
    let t = T0 + 10.0;
    assert_eq!(
        store.put(put(&k1, "a", b"v2", A, t), t).await.unwrap(),
        PutOutcome::Stored
    );
    assert_eq!(
        store.delete(del(&k1, "b", t + 1.0), t + 1.0).await.unwrap(),
        DelOutcome::Deleted
    );
    settle(&store).await;
    mirror(&stream, &copy).await;
    agree(&store, &copy, &names, t + 1.0).await;
    assert_eq!(replica::get(&copy, b"a").unwrap().unwrap().value, b"v2");
    assert_eq!(replica::get(&copy, b"b").unwrap(), None);

    // A refresh on day 29, then a bump: A's quota is one name; "a"
    // (claimed at T0) is bumpable 30 days on, and a claim of "d" from A
    // evicts it.
    let day29 = T0 + 29.0 * DAY;
    assert_eq!(
        store
            .put(put(&k1, "a", b"v3", A, day29), day29)
            .await
            .unwrap(),
        PutOutcome::Stored
    );
    settle(&store).await;
    mirror(&stream, &copy).await;
    agree(&store, &copy, &names, day29).await;
    assert_eq!(replica::get(&copy, b"a").unwrap().unwrap().timestamp, day29);
    let t = T0 + 31.0 * DAY;
    assert_eq!(
        store
            .put(put(&k2, "d", b"dv", A, t + 1.0), t + 1.0)
            .await
            .unwrap(),
        PutOutcome::StoredAfterBump
    );
    // An expiry: "c" was last written at T0, over 30 days ago.
    let purged = store.purge_expired(t + 2.0).await.unwrap();
    assert!(purged.names >= 1, "{purged:?}");
    settle(&store).await;
    mirror(&stream, &copy).await;
    agree(&store, &copy, &names, t + 2.0).await;
    assert_eq!(replica::get(&copy, b"a").unwrap(), None, "bumped");
    assert_eq!(replica::get(&copy, b"c").unwrap(), None, "expired");
    assert_eq!(replica::get(&copy, b"d").unwrap().unwrap().value, b"dv");
    // One record per live name, nothing else.
    assert_eq!(
        Stream::open_read_only(&copy)
            .unwrap()
            .list(Some(RECORD_TYPE))
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_server_alters_is_refused_by_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let db = names_db(&dir);
    let (stream, copy) = (
        dir.path().join("names.stream"),
        dir.path().join("copy.stream"),
    );
    let (store, _) = publishing(&db, Limits::default(), &stream).await;
    let owner = key(3);
    store
        .put(put(&owner, "bank", b"iban-1", A, T0), T0)
        .await
        .unwrap();
    store
        .put(put(&owner, "shop", b"url-1", A, T0), T0)
        .await
        .unwrap();
    settle(&store).await;

    // The server, holding the stream key, rewrites the value inside the
    // owner's packet (the stream signature is valid: the server made it).
    let mut server = Stream::open(&stream).unwrap();
    let mut buf = [0u8; MAX_KEY_LEN];
    let record_key = stream_key(b"bank", &mut buf).unwrap();
    let mut forged = server.get(record_key, RECORD_TYPE).unwrap().unwrap();
    let at = forged.len() - 33 - 64 - 1; // the value's last byte
    forged[at] ^= 1;
    server.set(record_key, RECORD_TYPE, &forged).unwrap();
    // And files the owner's signed "shop" under "bank"'s other spelling.
    let shop = server
        .get(
            stream_key(b"shop", &mut [0u8; MAX_KEY_LEN]).unwrap(),
            RECORD_TYPE,
        )
        .unwrap()
        .unwrap();
    let other = stream_key(b"bank2", &mut buf).unwrap().to_owned();
    server.set(&other, RECORD_TYPE, &shop).unwrap();
    drop(server);

    mirror(&stream, &copy).await;
    for name in ["bank", "bank2"] {
        let refused = replica::get(&copy, name.as_bytes()).unwrap_err();
        assert!(
            matches!(refused, ReplicaError::Forged { .. }),
            "{name}: {refused}"
        );
        assert!(
            refused.to_string().contains("not what its owner signed"),
            "{refused}"
        );
    }
    assert_eq!(
        replica::get(&copy, b"shop").unwrap().unwrap().value,
        b"url-1"
    );
    // The mirror's check of what a pull brought names both, and only them.
    let mut refused: Vec<String> = replica::check_since(&Stream::open_read_only(&copy).unwrap(), 0)
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    refused.sort();
    let mut want = vec![record_key_of(b"bank"), record_key_of(b"bank2")];
    want.sort();
    assert_eq!(refused, want);
    store.close().await;
}

/// A stream started on a table that already holds names (a new stream
/// file, or one lost) is filled from the table's signed packets, and a
/// record of a name the table no longer holds is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stream_is_reconciled_with_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = names_db(&dir);
    let first = dir.path().join("first.stream");
    let (store, _) = publishing(&db, Limits::default(), &first).await;
    let owner = key(4);
    for name in ["x", "y"] {
        store.put(put(&owner, name, b"v", A, T0), T0).await.unwrap();
    }
    settle(&store).await;
    store.close().await;
    drop(store);

    // Another stream file, holding a stale record the table does not have.
    let second = dir.path().join("second.stream");
    let mut stale = Stream::create(&second).unwrap();
    let record = packet(&owner, Op::Put, "gone", b"old", T0);
    stale
        .set(
            stream_key(b"gone", &mut [0u8; MAX_KEY_LEN]).unwrap(),
            RECORD_TYPE,
            &record,
        )
        .unwrap();
    drop(stale);
    let (store, _) = publishing(&db, Limits::default(), &second).await;
    settle(&store).await;
    let copy = dir.path().join("copy.stream");
    mirror(&second, &copy).await;
    agree(&store, &copy, &["x", "y", "gone"], T0).await;
    assert_eq!(replica::get(&copy, b"x").unwrap().unwrap().value, b"v");
    assert_eq!(replica::get(&copy, b"gone").unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn publishing_needs_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let refused = SqlStore::open_publishing(
        "postgres://localhost/namebump",
        Limits::default(),
        &dir.path().join("s.stream"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, StoreError::PublishNeedsSqlite(_)),
        "{refused}"
    );
    assert!(!dir.path().join("s.stream").exists());
}

/// A write acknowledged just before a crash, whose record the publisher
/// had not written yet: its mark committed with it, and the next start
/// publishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_left_by_a_crash_are_published_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("names.db");
    let db = format!("sqlite:{}", db_path.display());
    let stream = dir.path().join("names.stream");
    let (store, _) = publishing(&db, Limits::default(), &stream).await;
    let owner = key(5);
    store
        .put(put(&owner, "kept", b"v", A, T0), T0)
        .await
        .unwrap();
    settle(&store).await;
    store.close().await;
    drop(store);

    // The state a crash between the commit and the publication leaves:
    // the name's mark in the table, no record in the stream.
    let mut buf = [0u8; MAX_KEY_LEN];
    let record_key = stream_key(b"kept", &mut buf).unwrap();
    let mut owner_stream = Stream::open(&stream).unwrap();
    owner_stream.delete(record_key, RECORD_TYPE).unwrap();
    drop(owner_stream);
    let conn = rusqlite::Connection::open(&db_path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute(
        "INSERT INTO publish_dirty VALUES (?1, 1)",
        [b"kept".as_slice()],
    )
    .unwrap();
    // …and the stream as the last batch left it, so that only the mark
    // (not the start-up check of the stream's tip) can bring the record.
    let tip = Stream::open_read_only(&stream).unwrap().tip().unwrap();
    conn.execute(
        "UPDATE publish_state SET value = ?1 WHERE key = 'tip'",
        [tip.to_string()],
    )
    .unwrap();
    drop(conn);

    let (store, _) = publishing(&db, Limits::default(), &stream).await;
    settle(&store).await;
    let copy = dir.path().join("copy.stream");
    mirror(&stream, &copy).await;
    assert_eq!(replica::get(&copy, b"kept").unwrap().unwrap().value, b"v");
    store.close().await;
}

/// A start without publishing in between keeps the owners' proofs of the
/// names it did not touch; a name written meanwhile has none (the store
/// kept no packet) and is left out until its owner writes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_publishing_keeps_the_proofs_of_untouched_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = names_db(&dir);
    let stream = dir.path().join("names.stream");
    let owner = key(6);
    let (store, _) = publishing(&db, Limits::default(), &stream).await;
    store
        .put(put(&owner, "old", b"v", A, T0), T0)
        .await
        .unwrap();
    settle(&store).await;
    store.close().await;
    drop(store);

    let plain = SqlStore::open(&db, Limits::default()).await.unwrap();
    let t = T0 + 5.0;
    plain.put(put(&owner, "new", b"w", A, t), t).await.unwrap();
    assert_eq!(plain.publish_backlog().await.unwrap(), 0, "not publishing");
    plain.close().await;
    drop(plain);

    let (store, _) = publishing(&db, Limits::default(), &stream).await;
    settle(&store).await;
    let copy = dir.path().join("copy.stream");
    mirror(&stream, &copy).await;
    assert_eq!(replica::get(&copy, b"old").unwrap().unwrap().value, b"v");
    assert_eq!(replica::get(&copy, b"new").unwrap(), None, "no proof kept");
    // Its owner's next write publishes it.
    let t = T0 + 10.0;
    store.put(put(&owner, "new", b"w2", A, t), t).await.unwrap();
    settle(&store).await;
    mirror(&stream, &copy).await;
    assert_eq!(replica::get(&copy, b"new").unwrap().unwrap().value, b"w2");
    store.close().await;
}
