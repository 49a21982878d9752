//! A broker's bytes through a node's whole inbound pipeline, as the Router
//! runs it: MQTT stream → PUBLISH on our topic → size cap → AppPacket →
//! exact-copy shortcut → screening budgets → signature check → replay
//! table. Chunks may be re-signed with one of four fixed keys, so the
//! fuzzer also drives the receiver with validly signed packets whose
//! timestamps, queues and sequence numbers it chooses, and the clock
//! moves by the input's say. Properties: nothing panics or overflows
//! (debug assertions are on), and no MSG (source, queue, seq, signed
//! bytes) is ever delivered twice.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use keyway_core::mqtt::{self, Packet};
use keyway_core::sidewire::AppPacket;
use keyway_core::sidewire::app_packet::MsgType;
use keyway_core::sidewire::receiver::{Receiver, Slot, Verdict};
use keyway_core::sidewire::screen::{Peer, Screen, ScreenLimits};
use keyway_core::{Keypair, PublicKey};
use libfuzzer_sys::fuzz_target;

/// The Router's cap on one MQTT packet from a broker.
const MAX_PACKET: usize = 2048;
const T0: u64 = 1_700_000_000;

fn keys() -> &'static [Keypair; 4] {
    static KEYS: OnceLock<[Keypair; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [1u8, 2, 3, 4].map(|i| Keypair::from_secret_bytes(&[i; 32]).expect("valid scalar"))
    })
}

fn topic() -> &'static str {
    static TOPIC: OnceLock<String> = OnceLock::new();
    TOPIC.get_or_init(|| {
        Keypair::from_secret_bytes(&[9; 32])
            .expect("valid scalar")
            .public()
            .to_string()
    })
}

fuzz_target!(|data: &[u8]| {
    // Small tables, so that eviction and the watermark sketch are reached.
    let mut receiver = Receiver::new([Slot::EMPTY; 16], [0u64; 8], [5; 16]);
    let mut screen = Screen::new([Peer::EMPTY; 8], [6; 16], ScreenLimits::default(), 0.0);
    let mut delivered = HashSet::new();
    let mut now = T0;
    let mut rest = data;
    // Each chunk: control byte, length byte, that many bytes of MQTT stream.
    while let [control, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (chunk, after) = tail.split_at(take);
        rest = after;
        now = now.saturating_add(u64::from(control >> 4) * 17);
        let resign = control & 1 != 0;
        let signer = &keys()[usize::from(control >> 1) & 3];
        let mut stream = chunk;
        while let Ok(Some((packet, used))) = mqtt::decode(stream, MAX_PACKET) {
            stream = &stream[used..];
            let Packet::Publish {
                topic: t, payload, ..
            } = packet
            else {
                continue;
            };
            // Our topic, or a resigned packet (the fuzzer cannot guess it).
            if t != topic().as_bytes() && !resign {
                continue;
            }
            let Ok(mut app) = AppPacket::decode(payload) else {
                continue;
            };
            if resign {
                app.sign(signer);
            }
            if app.msg_type == MsgType::Msg && receiver.known_copy(&app, now).is_some() {
                continue;
            }
            let elapsed = (now - T0) as f64;
            if screen.admit(&app.src_pk, elapsed).is_none() {
                continue;
            }
            let valid = PublicKey::from_bytes(&app.src_pk)
                .ok()
                .filter(|from| app.verify_as(from).is_ok());
            if valid.is_none() {
                screen.failed(&app.src_pk, elapsed);
                continue;
            }
            screen.verified(&app.src_pk, elapsed);
            if let Verdict::Deliver { ack } = receiver.on_packet(&app, now) {
                assert_eq!((ack.queue_id, ack.seq_no), (app.queue_id, app.seq_no));
                let id = (app.src_pk, app.queue_id, app.seq_no, app.digest());
                assert!(delivered.insert(id), "a MSG was delivered twice");
            }
        }
    }
});
