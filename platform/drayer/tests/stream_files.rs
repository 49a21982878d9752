//! Stream files on SQLite: the original's 2019 file opens and verifies
//! without being modified, the golden scenario (spec §13.3) comes out byte
//! for byte in the original schema with a mirror pulled after every step,
//! and refused records leave nothing behind.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use keyway_core::drayer::{Chain, SigningKey};
use keyway_drayer::sqlite::{Body, SqliteChain};
use keyway_drayer::sync::{Local, pull};
use keyway_drayer::{Stream, StreamError, wire};
use rusqlite::Connection;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../../tests/vectors/drayer.json")).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    base16ct::mixed::decode_vec(text).unwrap()
}

fn clocktower() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/clocktower.drayer"
    ))
}

#[test]
fn clocktower_opens_verifies_and_is_not_modified() {
    let before = std::fs::read(clocktower()).unwrap();
    let stream = Stream::open_read_only(clocktower()).unwrap();
    assert_eq!(
        stream.public_key_base64(),
        "AewXtC3ClMwbVkb/ixLGZKaEDvYVZAi2aaUzKJniZYg="
    );
    let report = stream.verify().unwrap();
    assert_eq!(
        (report.records, report.problems.len()),
        (2, 0),
        "{report:?}"
    );
    let v = vectors();
    for record in v["original_extra"]["clocktower"]["records"]
        .as_array()
        .unwrap()
    {
        let value = stream
            .get(
                record["key"].as_str().unwrap(),
                record["type"].as_str().unwrap(),
            )
            .unwrap()
            .unwrap();
        // The vectors give the short value in full, the long one by length.
        match record["value_hex"].as_str() {
            Some(expected) => assert_eq!(hex(&value), expected),
            None => assert_eq!(value.len() as u64, record["value_len"].as_u64().unwrap()),
        }
    }
    let listed: Vec<(u64, String)> = stream
        .list(None)
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.key))
        .collect();
    assert_eq!(
        listed,
        [
            (1, "Hello All from ClockTower!".to_owned()),
            (2, "primaryServers".to_owned())
        ]
    );
    drop(stream);
    assert_eq!(
        std::fs::read(clocktower()).unwrap(),
        before,
        "reads never write"
    );
}

/// All rows, as the vectors list them (mchain order).
fn rows(path: &Path) -> Vec<Value> {
    let conn = Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT id, type, key, value, hash, timestamp, modified, prev, prevchange, signature, chain
             FROM record ORDER BY modified",
        )
        .unwrap();
    statement
        .query_map([], |r| {
            let blob = |i| r.get::<_, Vec<u8>>(i).map(|b| hex(&b));
            Ok(serde_json::json!({
                "id": r.get::<_, i64>(0)?, "type": r.get::<_, String>(1)?, "key": r.get::<_, String>(2)?,
                "value_hex": blob(3)?, "hash_hex": blob(4)?,
                "timestamp": r.get::<_, i64>(5)?, "modified": r.get::<_, i64>(6)?,
                "prev": r.get::<_, i64>(7)?, "prevchange": r.get::<_, i64>(8)?,
                "signature_hex": blob(9)?, "chain_hex": blob(10)?,
            }))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn the_golden_scenario_in_the_original_schema() {
    let v = vectors();
    let scenario = &v["original_scenario"];
    let dir = tempfile::tempdir().unwrap();
    let (owner_path, mirror_path) = (
        dir.path().join("owner.stream"),
        dir.path().join("mirror.stream"),
    );
    let key = SigningKey::from_bytes(
        &unhex(scenario["seed_hex"].as_str().unwrap())
            .try_into()
            .unwrap(),
    );
    let mut owner = Stream::create_with_key(&owner_path, key).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("owner.stream.privatekey")).unwrap(),
        scenario["privatekey_file_contents"].as_str().unwrap()
    );
    let mut mirror = Stream::mirror(&mirror_path, *owner.public_key()).unwrap();
    let ops = [
        (true, "obj", "hello"),
        (true, "publicSocialPost", "greeting"),
        (true, "file", "index.html"),
        (true, "drayer", "primaryServers"),
        (true, "obj", "hello"),
        (false, "publicSocialPost", "greeting"),
        (true, "drayer", "primaryServers"),
        (true, "drayer", "primaryServers"),
    ];
    let mut repairs = 0;
    for (step, (is_set, kind, k)) in scenario["steps"].as_array().unwrap().iter().zip(ops) {
        let now = step["clock_us"].as_i64().unwrap();
        let expected: Vec<Value> = step["owner_rows_by_modified"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("signed_bytes_hex");
                r
            })
            .collect();
        if is_set {
            let row = expected
                .iter()
                .find(|r| r["type"] == kind && r["key"] == k)
                .unwrap();
            let value = unhex(row["value_hex"].as_str().unwrap());
            owner.set_at(k, kind, &value, now, None).unwrap();
        } else {
            owner.delete_at(k, kind, now).unwrap();
        }
        assert_eq!(rows(&owner_path), expected, "owner after {}", step["step"]);
        repairs += pull(&mut mirror, &mut Local(&mut owner))
            .await
            .unwrap()
            .repairs;
        assert_eq!(
            rows(&mirror_path),
            expected,
            "mirror after {}",
            step["step"]
        );
    }
    assert!(repairs >= 2);
    // The HTTP answers the original server gave after step 8, byte for byte.
    let stream = *owner.public_key();
    let records = owner.modified_after(0, 100).unwrap();
    let page = wire::encode_records(&records, &stream);
    assert_eq!(
        hex(&page),
        scenario["newRecords_0_response_hex"].as_str().unwrap()
    );
    let (meta, body) = owner.crdr(0).unwrap().unwrap();
    let mut one = Vec::new();
    wire::encode_record(&mut one, &meta, &body, &stream);
    assert_eq!(hex(&one), scenario["crdr_0_response_hex"].as_str().unwrap());
    assert_eq!(wire::decode_records(&page, &stream).unwrap(), records);
    assert_eq!(wire::decode_record(&one, &stream).unwrap(), (meta, body));
    assert_eq!(owner.verify().unwrap().problems, Vec::<String>::new());
    assert_eq!(mirror.verify().unwrap().problems, Vec::<String>::new());
    // The mirror cannot write.
    assert!(matches!(
        mirror.set("x", "obj", b"y"),
        Err(StreamError::NotOwner(_))
    ));
    // Reopening the owner's file finds its key again.
    drop(owner);
    let mut owner = Stream::open(&owner_path).unwrap();
    assert!(owner.is_owner());
    owner.set("again", "obj", b"\xa1x").unwrap();
}

#[test]
fn a_refused_record_stores_nothing_and_verify_names_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stream");
    let mut owner = Stream::create(&path).unwrap();
    owner.set("a", "obj", b"\xa11").unwrap();
    owner.set("b", "obj", b"\xa12").unwrap();
    let mirror_path = dir.path().join("m.stream");
    let mut mirror = Stream::mirror(&mirror_path, *owner.public_key()).unwrap();
    let records = owner.modified_after(0, 100).unwrap();
    let (mut meta, body) = records[0].clone();
    meta.signature[0] ^= 1;
    assert!(mirror.apply_received(&meta, body.clone(), &[]).is_err());
    let tampered = Body {
        value: Some(b"other".to_vec()),
        ..body
    };
    assert!(mirror.apply_received(&records[0].0, tampered, &[]).is_err());
    assert!(rows(&mirror_path).is_empty(), "nothing stored");

    // Damage a row behind the stream's back: verify names it.
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE record SET value = x'00' WHERE key = 'a'", [])
        .unwrap();
    conn.execute("UPDATE record SET prev = 7 WHERE key = 'b'", [])
        .unwrap();
    let report = owner.verify().unwrap();
    assert_eq!(report.records, 2);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("record 1") && p.contains("hash")),
        "{report:?}"
    );
    assert!(
        report.problems.iter().any(|p| p.contains("ID chain")),
        "{report:?}"
    );
    // The chain is still readable through the trait.
    assert!(SqliteChain::new(&conn).tip().unwrap().is_some());
}

#[tokio::test]
async fn a_pull_stops_at_a_bad_signature_keeping_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stream");
    let mut owner = Stream::create(&path).unwrap();
    for k in ["a", "b", "c", "d"] {
        owner.set(k, "obj", b"\xa1v").unwrap();
    }
    // Someone with write access to the owner's file damages record 3.
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE record SET signature = zeroblob(64) WHERE id = 3",
            [],
        )
        .unwrap();
    let mirror_path = dir.path().join("m.stream");
    let mut mirror = Stream::mirror(&mirror_path, *owner.public_key()).unwrap();
    let refused = pull(&mut mirror, &mut Local(&mut owner)).await.unwrap_err();
    assert!(
        matches!(
            refused,
            keyway_drayer::sync::SyncError::Refused { id: 3, .. }
        ),
        "{refused}"
    );
    let held: Vec<String> = mirror
        .list(None)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(held, ["a", "b"]);
}

#[test]
fn set_many_signs_off_thread_and_matches_writing_one_by_one() {
    // Batches larger than the signer's chunk, writing the same few keys
    // again and again (so later writes replace records still waiting for
    // their signatures), with deletions between batches.
    let dir = tempfile::tempdir().unwrap();
    let mut stream = Stream::create(&dir.path().join("many.stream")).unwrap();
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..4u32 {
        let entries: Vec<(String, Vec<u8>)> = (0..300u32)
            .map(|i| {
                let key = format!("k{}", (i * 7 + round) % 11);
                (key, format!("round {round} write {i}").into_bytes())
            })
            .collect();
        let written = stream
            .set_many(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str(), "obj", v.as_slice())),
            )
            .unwrap();
        assert_eq!(written, 300);
        for (k, v) in &entries {
            expected.insert(k.clone(), v.clone());
        }
        let victim = format!("k{round}");
        if stream.delete(&victim, "obj").is_ok() {
            expected.remove(&victim);
        }
        let report = stream.verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.records, expected.len());
        for (k, v) in &expected {
            assert_eq!(stream.get(k, "obj").unwrap().as_ref(), Some(v), "{k}");
        }
    }

    // All or nothing: a value over the limit late in a batch leaves no
    // record of the batch behind.
    let before = stream.count().unwrap();
    let huge = vec![0u8; wire::MAX_VALUE + 1];
    let mut batch: Vec<(String, &[u8])> = (0..200)
        .map(|i| (format!("new{i}"), b"small".as_slice()))
        .collect();
    batch.push(("huge".into(), &huge));
    let err = stream
        .set_many(batch.iter().map(|(k, v)| (k.as_str(), "obj", *v)))
        .unwrap_err();
    assert!(matches!(err, StreamError::TooLarge { .. }), "{err}");
    assert_eq!(stream.count().unwrap(), before);
    assert_eq!(stream.get("new0", "obj").unwrap(), None);
}

#[tokio::test]
async fn delete_many_matches_deleting_one_by_one_and_mirrors_follow() {
    let dir = tempfile::tempdir().unwrap();
    let mut stream = Stream::create(&dir.path().join("del.stream")).unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    stream
        .set_many(keys.iter().map(|k| (k.as_str(), "obj", k.as_bytes())))
        .unwrap();
    let mut mirror = Stream::mirror(&dir.path().join("m.stream"), *stream.public_key()).unwrap();
    pull(&mut mirror, &mut Local(&mut stream)).await.unwrap();
    // Every third key and the newest (the ID tip, spec D5), in one batch.
    let gone: Vec<&str> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0 || *i == 49)
        .map(|(_, k)| k.as_str())
        .collect();
    let deleted = stream
        .delete_many(gone.iter().map(|k| (*k, "obj")))
        .unwrap();
    assert_eq!(deleted, gone.len());
    let report = stream.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let held = |s: &Stream| -> Vec<String> {
        s.list(Some("obj"))
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect()
    };
    let want: Vec<String> = keys
        .iter()
        .filter(|k| !gone.contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(held(&stream), want);
    pull(&mut mirror, &mut Local(&mut stream)).await.unwrap();
    assert_eq!(held(&mirror), want, "the mirror follows the batch");
    assert!(mirror.verify().unwrap().problems.is_empty());

    // All or nothing: a key not held fails the batch, nothing deleted.
    let before = stream.count().unwrap();
    assert!(
        stream
            .delete_many([("k1", "obj"), ("nope", "obj")])
            .is_err()
    );
    assert_eq!(stream.count().unwrap(), before);
    assert!(stream.get("k1", "obj").unwrap().is_some());
}

/// The original could not delete the most recently added record (spec
/// D5): here it goes, a placeholder stands in for it (hidden from reads),
/// and a mirror that held it lets it go.
#[tokio::test]
async fn the_newest_record_is_deleted_and_a_file_mirror_follows() {
    use keyway_core::drayer::{PLACEHOLDER_KEY, PLACEHOLDER_TYPE, WriteError};

    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let mut owner = Stream::create_with_key(&dir.path().join("o"), key.clone()).unwrap();
    let mut mirror = Stream::mirror(&dir.path().join("m"), key.verifying_key()).unwrap();
    owner.set("a", "obj", b"1").unwrap();
    owner.set("b", "obj", b"2").unwrap();
    pull(&mut mirror, &mut Local(&mut owner)).await.unwrap();
    assert_eq!(mirror.get("b", "obj").unwrap().as_deref(), Some(&b"2"[..]));

    owner.delete("b", "obj").unwrap();
    pull(&mut mirror, &mut Local(&mut owner)).await.unwrap();
    for stream in [&owner, &mirror] {
        assert_eq!(stream.get("b", "obj").unwrap(), None);
        assert_eq!(stream.get("a", "obj").unwrap().as_deref(), Some(&b"1"[..]));
        let keys: Vec<String> = stream
            .list(None)
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["a"]);
        assert_eq!(stream.newest(None, 5).unwrap().len(), 1);
        assert_eq!(stream.get(PLACEHOLDER_KEY, PLACEHOLDER_TYPE).unwrap(), None);
        assert!(stream.verify().unwrap().problems.is_empty());
    }
    assert!(matches!(
        owner.set(PLACEHOLDER_KEY, PLACEHOLDER_TYPE, b""),
        Err(StreamError::Write(WriteError::Reserved))
    ));

    // The next record takes the placeholder's id; then everything goes.
    let c = owner.set("c", "obj", b"3").unwrap();
    assert_eq!(c.id, 3);
    owner.delete("c", "obj").unwrap();
    owner.delete("a", "obj").unwrap();
    pull(&mut mirror, &mut Local(&mut owner)).await.unwrap();
    assert!(mirror.list(None).unwrap().is_empty());
    assert_eq!(
        mirror.modified_after(0, 10).unwrap(),
        owner.modified_after(0, 10).unwrap()
    );
}

/// The SQLite store against the in-memory one, which the core's property
/// tests check: the same random writes with the same key and clock leave
/// the same records, and a file mirror pulling every few steps equals
/// the owner.
#[tokio::test]
async fn sqlite_streams_follow_the_in_memory_chain() {
    use keyway_core::drayer::memory::{MemoryBody, MemoryChain};
    use keyway_core::drayer::{Meta, delete, hash, is_placeholder, set};
    use keyway_drayer::sync::pull_newest;

    fn metas(stream: &Stream) -> Vec<Meta> {
        let mut all = stream.modified_after(0, usize::MAX).unwrap();
        all.sort_by_key(|(m, _)| m.modified);
        all.into_iter().map(|(m, _)| m).collect()
    }
    let mut state = 0x5eed_u64;
    let mut below = |n: u64| {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    };
    let key = SigningKey::from_bytes(&[7u8; 32]);
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let mut owner = Stream::create_with_key(&dir.path().join("o"), key.clone()).unwrap();
        let mut mirror = Stream::mirror(&dir.path().join("m"), key.verifying_key()).unwrap();
        let mut partial = Stream::mirror(&dir.path().join("p"), key.verifying_key()).unwrap();
        let mut memory = MemoryChain::new();
        let mut now = 1_600_000_000_000_000_i64;
        let every = 1 + below(5);
        let keep = 3 + below(4) as usize;
        for step in 0..60 {
            now += below(2_000) as i64 - 300;
            let mut k = format!("k{}", below(8));
            let roll = below(20);
            if roll < 5 {
                // One op in four deletes the newest record (the ID tip, or
                // the one before its placeholder).
                let newest = memory
                    .in_mchain_order()
                    .filter(|(m, _)| !is_placeholder(m))
                    .max_by_key(|(m, _)| m.id)
                    .map(|(_, b)| b.key.clone());
                if let Some(newest) = newest {
                    k = newest;
                }
            }
            if roll < 8 {
                let in_memory = memory.transaction(|c| delete(c, &key, &k, "obj", now));
                let on_file = owner.delete_at(&k, "obj", now);
                assert_eq!(
                    in_memory.is_ok(),
                    on_file.is_ok(),
                    "round {round} step {step}"
                );
            } else {
                let value = below(u64::MAX).to_le_bytes();
                let body = MemoryBody {
                    key: k.clone(),
                    kind: "obj".into(),
                    value: Some(value.to_vec()),
                };
                memory
                    .transaction(|c| set(c, &key, &k, "obj", hash(&value), body, now, None))
                    .unwrap();
                owner.set_at(&k, "obj", &value, now, None).unwrap();
            }
            let expected: Vec<Meta> = memory.in_mchain_order().map(|(m, _)| *m).collect();
            assert_eq!(metas(&owner), expected, "round {round} step {step}");
            assert_eq!(
                owner.list(None).unwrap().len(),
                memory
                    .in_mchain_order()
                    .filter(|(m, _)| !is_placeholder(m))
                    .count(),
                "round {round} step {step}: listed"
            );
            if step % every == 0 {
                pull(&mut mirror, &mut Local(&mut owner)).await.unwrap();
                assert_eq!(
                    metas(&mirror),
                    expected,
                    "mirror: round {round} step {step}"
                );
            }
            // A partial mirror holds exactly the owner's records after
            // its back pointer.
            pull_newest(&mut partial, &mut Local(&mut owner), keep)
                .await
                .unwrap_or_else(|e| panic!("partial: round {round} step {step}: {e}"));
            let back = partial.back_pointer().unwrap();
            let after_back: Vec<Meta> = expected
                .iter()
                .filter(|m| m.modified > back)
                .copied()
                .collect();
            assert_eq!(
                metas(&partial),
                after_back,
                "partial: round {round} step {step}"
            );
            assert!(partial.count().unwrap() <= keep);
        }
        assert!(owner.verify().unwrap().problems.is_empty());
        assert!(mirror.verify().unwrap().problems.is_empty());
        let mut fresh = Stream::mirror(&dir.path().join("f"), key.verifying_key()).unwrap();
        pull(&mut fresh, &mut Local(&mut owner)).await.unwrap();
        assert_eq!(metas(&fresh), metas(&owner), "fresh: round {round}");
    }
}
