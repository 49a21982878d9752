//! A hostile broker against the MQTT session machine: the input is a
//! script of steps (bytes in any chunking, time passing, commands, writes
//! completing). Properties: nothing panics or overflows (debug assertions
//! are on), the session always takes offered bytes once its events and
//! transmits are drained, no message is larger than the packet cap, and a
//! live session always has a timer.
#![no_main]

use std::time::Duration;

use keyway_core::mqtt::{Event, QoS, Session, SessionConfig};
use keyway_core::time::Instant;
use libfuzzer_sys::fuzz_target;

const MAX_PACKET: usize = 256;

fuzz_target!(|data: &[u8]| {
    let config = SessionConfig {
        keep_alive: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(1),
        max_packet: MAX_PACKET,
    };
    let mut now = Instant::ZERO;
    let Ok(mut session) = Session::new(now, config, b"fuzz", [0u8; 300], [0u8; 512]) else {
        return;
    };
    let _ = session.handle_subscribe(now, b"own", QoS::AtLeastOnce);
    session.handle_connected(now);
    let mut out = [0u8; 64];
    let mut rest = data;
    // Each step: a control byte, then (for bytes) a length and the bytes.
    while let [control, tail @ ..] = rest {
        rest = tail;
        now += Duration::from_millis(u64::from(control >> 4) * 150);
        match control & 7 {
            0 | 1 | 2 => {
                let [len, tail @ ..] = rest else { break };
                let take = usize::from(*len).min(tail.len());
                let (bytes, after) = tail.split_at(take);
                rest = after;
                let mut at = 0;
                let mut idle = 0;
                while at < bytes.len() {
                    let took = session.handle_received(now, &bytes[at..]);
                    at += took;
                    while let Some(event) = session.poll_event() {
                        if let Event::Message { topic, payload } = event {
                            assert!(topic.len() + payload.len() < MAX_PACKET);
                        }
                    }
                    while session.poll_transmit(now, &mut out).is_some() {
                        session.handle_written(now);
                    }
                    idle = if took == 0 { idle + 1 } else { 0 };
                    assert!(idle < 2, "the session stopped taking bytes");
                }
            }
            3 => session.handle_timeout(now),
            4 => {
                let _ = session.handle_publish(now, b"dest", QoS::AtLeastOnce, &[*control; 40]);
            }
            5 => {
                // A write the broker takes, or one it does not (no handle_written).
                if session.poll_transmit(now, &mut out).is_some() && control & 8 == 0 {
                    session.handle_written(now);
                }
            }
            6 => {
                let _ = session.handle_subscribe(now, b"more", QoS::AtMostOnce);
            }
            _ => session.handle_disconnect(now),
        }
        while session.poll_event().is_some() {}
        assert!(session.is_closed() || session.poll_timeout().is_some());
    }
});
