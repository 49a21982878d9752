//! A broker's bytes through a node's whole inbound pipeline, as the Router
//! runs it: MQTT stream → PUBLISH on our topic → size cap → AppPacket →
//! exact-copy shortcut → screening budgets → signature check → replay
//! table. Chunks are raw broker bytes, AppPacket bytes in a PUBLISH on our
//! topic, or packets built from the chunk's fields and signed by one of
//! four fixed keys, so the fuzzer also drives the receiver with validly
//! signed packets whose timestamps, queues and sequence numbers it
//! chooses; the clock moves by the input's say. Properties: nothing
//! panics or overflows (debug assertions are on), and no MSG (source,
//! queue, seq, signed bytes) is ever delivered twice.
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

/// The bytes a broker delivers for one chunk of input: raw (any MQTT
/// stream), an AppPacket's bytes in a PUBLISH on our topic, or a packet
/// built from the chunk's fields and signed by `signer` (so the receiver
/// sees valid signatures on timestamps, queues and sequence numbers the
/// fuzzer picks, across the freshness window's edges).
fn broker_bytes(mode: u8, chunk: &[u8], signer: &Keypair, now: u64, out: &mut Vec<u8>) {
    let mut packet_buf = [0u8; MAX_PACKET];
    let payload: &[u8] = match mode {
        0 => {
            out.extend_from_slice(chunk);
            return;
        }
        1 => chunk,
        _ => {
            let [queue, seq, skew, kind, msg @ ..] = chunk else {
                return;
            };
            let ts = now.wrapping_add_signed(i64::from(*skew as i8) * 2);
            let kind = match kind & 3 {
                0 | 1 => MsgType::Msg,
                2 => MsgType::Ack,
                _ => MsgType::from(*kind),
            };
            let mut app = AppPacket::new([*queue & 7; 32], u32::from(*seq & 15), ts, kind, msg);
            app.sign(signer);
            match app.encode(&mut packet_buf) {
                Ok(n) => &packet_buf[..n],
                Err(_) => return,
            }
        }
    };
    let mut frame = [0u8; MAX_PACKET + 64];
    if let Ok(n) = mqtt::encode_publish(
        topic().as_bytes(),
        mqtt::QoS::AtLeastOnce,
        1,
        payload,
        &mut frame,
    ) {
        out.extend_from_slice(&frame[..n]);
    }
}

fuzz_target!(|data: &[u8]| {
    // Small tables, so that eviction and the watermark sketch are reached.
    let mut receiver = Receiver::new([Slot::EMPTY; 16], [0u64; 8], [5; 16]);
    let mut screen = Screen::new([Peer::EMPTY; 8], [6; 16], ScreenLimits::default(), 0.0);
    let mut delivered = HashSet::new();
    let mut now = T0;
    let mut rest = data;
    let mut stream = Vec::new();
    // Each chunk: control byte, length byte, that many bytes.
    while let [control, len, tail @ ..] = rest {
        let take = usize::from(*len).min(tail.len());
        let (chunk, after) = tail.split_at(take);
        rest = after;
        now = now.saturating_add(u64::from(control >> 5) * 9);
        let signer = &keys()[usize::from(control >> 2) & 3];
        stream.clear();
        broker_bytes(control & 3, chunk, signer, now, &mut stream);
        let mut bytes = &stream[..];
        while let Ok(Some((packet, used))) = mqtt::decode(bytes, MAX_PACKET) {
            bytes = &bytes[used..];
            let Packet::Publish {
                topic: t, payload, ..
            } = packet
            else {
                continue;
            };
            if t != topic().as_bytes() {
                continue;
            }
            let Ok(app) = AppPacket::decode(payload) else {
                continue;
            };
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
