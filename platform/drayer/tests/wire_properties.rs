//! Properties of Drayer's network decoders over generated inputs: any
//! bytes give a value or an error (never a panic), and every record, page
//! and datagram we encode decodes back to itself.
#![allow(clippy::unwrap_used)]

use keyway_core::drayer::{Meta, SigningKey, hash};
use keyway_drayer::sqlite::Body;
use keyway_drayer::{discovery, primary_servers, wire};
use proptest::prelude::*;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

prop_compose! {
    fn record()(
        id in 1u64..=i64::MAX as u64,
        timestamp in any::<i64>(),
        modified in 1i64..,
        prev in 0u64..=i64::MAX as u64,
        prevchange in 0i64..,
        key in "\\PC{0,40}",
        kind in "[a-zA-Z]{0,20}",
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        signature in proptest::array::uniform32(any::<u8>()),
    ) -> (Meta, Body) {
        let value_hash = value.as_deref().map_or([7; 32], hash);
        let mut meta = Meta::new(id, timestamp, modified, prev, prevchange, &key, &kind, value_hash);
        meta.signature[..32].copy_from_slice(&signature);
        (meta, Body { key, kind, value })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let stream = key().verifying_key();
        let _ = wire::decode_records(&bytes, &stream);
        let _ = wire::decode_record(&bytes, &stream);
        let _ = discovery::decode(&bytes);
        let _ = primary_servers::decode(&bytes);
        let _ = keyway_drayer::file_record::decode(&bytes);
        let mut framed = discovery::MAGIC.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = discovery::decode(&framed);
    }

    #[test]
    fn pages_round_trip(records in proptest::collection::vec(record(), 0..8)) {
        let stream = key().verifying_key();
        let page = wire::encode_records(&records, &stream);
        prop_assert_eq!(wire::decode_records(&page, &stream).unwrap(), records.clone());
        for (meta, body) in &records {
            let mut one = Vec::new();
            wire::encode_record(&mut one, meta, body, &stream);
            prop_assert_eq!(wire::decode_record(&one, &stream).unwrap(), (*meta, body.clone()));
            // Cut short anywhere: an error, not a panic or a wrong record.
            for cut in [0, 1, one.len() / 2, one.len() - 1] {
                prop_assert!(wire::decode_record(&one[..cut], &stream).is_err());
            }
        }
    }

    #[test]
    fn announcements_round_trip(
        (meta, body) in record(),
        port in 1u16..,
        time in any::<i64>(),
    ) {
        let stream = key().verifying_key();
        let told = discovery::encode_record(&meta, &body.key, port, &stream);
        prop_assert_eq!(
            discovery::decode(&told).unwrap(),
            Some(discovery::Datagram::Record {
                chain: *stream.as_bytes(),
                modified: meta.modified,
                httpport: port,
            })
        );
        let asked = discovery::encode_get_records_since(&stream, time);
        prop_assert_eq!(
            discovery::decode(&asked).unwrap(),
            Some(discovery::Datagram::GetRecordsSince { chain: *stream.as_bytes(), time })
        );
    }
}
