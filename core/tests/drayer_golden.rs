//! The golden scenario of spec §13.3 (`tests/vectors/drayer.json`), byte for
//! byte: the owner's rows after every step, and a mirror that syncs after
//! every step (newRecords from its tip, crdr for repairs) holding the same
//! rows; plus the 136-byte string of §13.4.
#![allow(clippy::unwrap_used)]

use keyway_core::drayer::memory::{MemoryBody, MemoryChain};
use keyway_core::drayer::{Meta, SigningKey, VerifyingKey, delete, hash, set};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/vectors/drayer.json")).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    base16ct::mixed::decode_vec(v.as_str().unwrap()).unwrap()
}

fn owner_key(scenario: &Value) -> SigningKey {
    let seed: [u8; 32] = hex(&scenario["seed_hex"]).try_into().unwrap();
    let key = SigningKey::from_bytes(&seed);
    assert_eq!(
        key.verifying_key().to_bytes().to_vec(),
        hex(&scenario["pubkey_hex"])
    );
    key
}

/// The rows as the vectors list them, in mchain order.
fn rows(chain: &MemoryChain) -> Vec<Value> {
    chain
        .in_mchain_order()
        .map(|(m, b)| {
            let enc = |b: &[u8]| base16ct::lower::encode_string(b);
            serde_json::json!({
                "id": m.id, "type": b.kind, "key": b.key,
                "value_hex": enc(b.value.as_deref().unwrap()),
                "hash_hex": enc(&m.value_hash),
                "timestamp": m.timestamp, "modified": m.modified,
                "prev": m.prev, "prevchange": m.prevchange, "chain_hex": "",
                "signed_bytes_hex": enc(&m.signed_bytes()),
                "signature_hex": enc(&m.signature),
            })
        })
        .collect()
}

fn sync(mirror: &mut MemoryChain, owner: &MemoryChain, stream: &VerifyingKey) -> (usize, usize) {
    mirror.sync_from(owner, stream).unwrap()
}

#[test]
fn owner_and_mirror_reproduce_every_step_byte_for_byte() {
    let v = vectors();
    let scenario = &v["original_scenario"];
    let key = owner_key(scenario);
    let stream = key.verifying_key();
    let mut owner = MemoryChain::new();
    let mut mirror = MemoryChain::new();
    let ops = [
        ("set", "obj", "hello"),
        ("set", "publicSocialPost", "greeting"),
        ("set", "file", "index.html"),
        ("set", "drayer", "primaryServers"),
        ("set", "obj", "hello"),
        ("del", "publicSocialPost", "greeting"),
        ("set", "drayer", "primaryServers"),
        ("set", "drayer", "primaryServers"),
    ];
    let steps = scenario["steps"].as_array().unwrap();
    assert_eq!(steps.len(), ops.len());
    let mut repairs = 0;
    for (step, (op, kind, k)) in steps.iter().zip(ops) {
        let now = step["clock_us"].as_i64().unwrap();
        let expected = step["owner_rows_by_modified"].as_array().unwrap();
        if op == "set" {
            let row = expected
                .iter()
                .find(|r| r["type"] == kind && r["key"] == k)
                .unwrap();
            let value = hex(&row["value_hex"]);
            let body = MemoryBody {
                key: k.into(),
                kind: kind.into(),
                value: Some(value.clone()),
            };
            owner
                .transaction(|c| set(c, &key, k, kind, hash(&value), body, now, None))
                .unwrap();
        } else {
            owner
                .transaction(|c| delete(c, &key, k, kind, now))
                .unwrap();
        }
        assert_eq!(rows(&owner), *expected, "owner after step {}", step["step"]);
        let (applied, fetched) = sync(&mut mirror, &owner, &stream);
        assert_eq!(
            rows(&mirror),
            *expected,
            "mirror after step {}",
            step["step"]
        );
        assert!(applied >= 1);
        repairs += fetched;
    }
    // Steps 5 and 6 orphan records on the mirror: it fetched the owner's patches.
    assert!(repairs >= 2, "{repairs} crdr fetches");
    // A fresh mirror of the final state agrees too.
    let mut fresh = MemoryChain::new();
    sync(&mut fresh, &owner, &stream);
    assert_eq!(fresh, owner);
}

#[test]
fn the_signing_string_keeps_byte_order_and_sign() {
    let v = vectors();
    let edge = &v["original_extra"]["edge"];
    let f = &edge["fields"];
    let key = owner_key(&v["original_scenario"]);
    let mut meta = Meta::new(
        f["id"].as_u64().unwrap(),
        f["timestamp"].as_i64().unwrap(),
        f["modified"].as_i64().unwrap(),
        f["prev"].as_u64().unwrap(),
        f["prevchange"].as_i64().unwrap(),
        f["key"].as_str().unwrap(),
        f["type"].as_str().unwrap(),
        hash(b""),
    );
    assert_eq!(meta.signed_bytes().to_vec(), hex(&edge["signed_bytes_hex"]));
    meta.sign(&key);
    assert_eq!(meta.signature.to_vec(), hex(&edge["signature_hex"]));
}
