//! Properties of published names (issue 17): every signed PUT a server
//! publishes verifies under its own key, and no byte of it can be changed
//! without the replica noticing.
#![allow(clippy::unwrap_used)]

use keyway_core::Keypair;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::published::{
    MAX_KEY_LEN, PublishedError, RECORD_TYPE, stream_key, verify_record,
};
use keyway_core::namebump::{MAX_NAME_LEN, MAX_VALUE_LEN, Op, Packet};
use proptest::prelude::*;

fn keypair(seed: u8) -> Keypair {
    Keypair::from_secret_bytes(&[seed.max(1); 32]).unwrap()
}

/// A signed PUT as a client sends it, encoded.
fn signed_put(seed: u8, name: &[u8], value: &[u8], updated: f64, pkid: u32) -> Vec<u8> {
    let mut put = Packet::new(Op::Put, pkid, updated, name, value);
    put.reply_pk = Some(*keypair(seed.wrapping_add(7)).public().as_bytes());
    put.sign(&keypair(seed)).unwrap();
    let mut out = [0u8; MAX_PACKET_LEN];
    let n = put.encode(&mut out).unwrap();
    out[..n].to_vec()
}

fn key_of(name: &[u8]) -> String {
    let mut buf = [0u8; MAX_KEY_LEN];
    stream_key(name, &mut buf).unwrap().to_owned()
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..=MAX_NAME_LEN)
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=MAX_VALUE_LEN)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_published_put_verifies_as_signed(
        seed in 1u8..4, name in name_strategy(), value in value_strategy(),
        updated in 1.0e9f64..2.0e9, pkid in any::<u32>(),
    ) {
        let record = signed_put(seed, &name, &value, updated, pkid);
        let got = verify_record(&key_of(&name), &record).unwrap();
        prop_assert_eq!(got.name, &name[..]);
        prop_assert_eq!(got.value, &value[..]);
        let owner = keypair(seed);
        prop_assert_eq!(&got.owner, owner.public().as_bytes());
        prop_assert_eq!(got.updated, updated);
        prop_assert_eq!(got.timestamp(), updated.round() as i64);
        prop_assert_eq!(RECORD_TYPE, "namebump");
    }

    /// Any single flipped bit (value, name, time, key, signature…) is
    /// refused: a server cannot alter what the owner signed.
    #[test]
    fn any_altered_byte_is_refused(
        name in name_strategy(), value in value_strategy(),
        at in any::<proptest::sample::Index>(), bit in 0u8..8,
    ) {
        let mut record = signed_put(1, &name, &value, 1.7e9, 9);
        let i = at.index(record.len());
        record[i] ^= 1 << bit;
        prop_assert!(verify_record(&key_of(&name), &record).is_err(),
            "flipping bit {} of byte {} went unnoticed", bit, i);
    }

    /// A signed value filed under another name's key is refused.
    #[test]
    fn a_record_under_another_key_is_refused(
        name in name_strategy(), other in name_strategy(), value in value_strategy(),
    ) {
        prop_assume!(name != other);
        let record = signed_put(2, &name, &value, 1.7e9, 1);
        prop_assert_eq!(
            verify_record(&key_of(&other), &record),
            Err(PublishedError::WrongKey)
        );
    }

    /// Keys are injective and only hex digits.
    #[test]
    fn keys_name_one_name(a in name_strategy(), b in name_strategy()) {
        let (ka, kb) = (key_of(&a), key_of(&b));
        prop_assert_eq!(ka == kb, a == b);
        prop_assert!(ka.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }
}

#[test]
fn unsigned_and_other_ops_are_refused() {
    let mut put = Packet::new(Op::Put, 1, 1.7e9, b"alice", b"v");
    put.reply_pk = Some(*keypair(3).public().as_bytes());
    let mut out = [0u8; MAX_PACKET_LEN];
    let n = put.encode(&mut out).unwrap();
    assert!(matches!(
        verify_record(&key_of(b"alice"), &out[..n]),
        Err(PublishedError::Signature(_))
    ));
    let mut del = Packet::new(Op::Del, 1, 1.7e9, b"alice", b"");
    del.sign(&keypair(3)).unwrap();
    let n = del.encode(&mut out).unwrap();
    assert_eq!(
        verify_record(&key_of(b"alice"), &out[..n]),
        Err(PublishedError::NotAPut)
    );
    assert!(matches!(
        verify_record("616c696365", b"short"),
        Err(PublishedError::Malformed(_))
    ));
}
