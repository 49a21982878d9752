//! Any bytes: decode must not panic, and whatever it accepts must
//! re-encode to exactly the same bytes (the codec is canonical).
#![no_main]

use keyway_core::namebump::Packet;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::usage::Usage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        let mut buf = [0u8; MAX_PACKET_LEN];
        let n = p
            .encode(&mut buf)
            .expect("a decoded packet always re-encodes");
        assert_eq!(&buf[..n], data);
        let _ = p.verify_self_signed();
    }
    let _ = Usage::decode(data);
});
