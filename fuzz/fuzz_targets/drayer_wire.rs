//! Drayer's network inputs: newRecords pages, crdr answers and DrayerUDP
//! datagrams. Decoding any bytes returns a value or an error, never
//! panics; whatever decodes re-encodes to something that decodes the same.
#![no_main]

use keyway_core::drayer::SigningKey;
use keyway_drayer::{discovery, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let stream = SigningKey::from_bytes(&[7; 32]).verifying_key();
    if let Ok(records) = wire::decode_records(data, &stream) {
        let again = wire::encode_records(&records, &stream);
        assert_eq!(wire::decode_records(&again, &stream).ok(), Some(records));
    }
    if let Ok((meta, body)) = wire::decode_record(data, &stream) {
        let mut again = Vec::new();
        wire::encode_record(&mut again, &meta, &body, &stream);
        assert_eq!(
            wire::decode_record(&again, &stream).ok(),
            Some((meta, body))
        );
    }
    let _ = discovery::decode(data);
    let _ = keyway_drayer::primary_servers::decode(data);
    let _ = keyway_drayer::file_record::decode(data);
});
