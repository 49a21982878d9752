//! Any bytes from a broker: the MQTT decoder must not panic, must respect
//! the size cap, and whatever PUBLISH it accepts is parsed as an AppPacket
//! and verified the way a router would.
#![no_main]

use keyway_core::mqtt::{self, Packet};
use keyway_core::sidewire::AppPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((packet, used))) = mqtt::decode(rest, 2048) {
        assert!(used > 0 && used <= rest.len() && used <= 2048);
        if let Packet::Publish { payload, .. } = packet
            && let Ok(app) = AppPacket::decode(payload)
        {
            let _ = app.verify();
        }
        if let Packet::Subscribe { filters, .. } = packet {
            for filter in mqtt::filters(filters) {
                let _ = filter;
            }
        }
        rest = &rest[used..];
    }
});
