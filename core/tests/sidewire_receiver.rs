//! The receive rules under attack: floods from other keys and remote
//! fields at the edges of their types.
#![allow(clippy::unwrap_used)]

use keyway_core::sidewire::{AppPacket, MsgType, Receiver, Slot, Verdict};

const NOW: u64 = 1_700_000_000;

/// The Router's default table (`RouterConfig::replay_slots`).
const ROUTER_SLOTS: usize = 1 << 16;
/// and its default sketch (`RouterConfig::replay_watermarks`).
const ROUTER_WATERMARKS: usize = 1 << 18;

fn msg(src: [u8; 33], queue: [u8; 32], seq: u32, ts: u64) -> AppPacket<'static> {
    // The receiver judges packets whose signature was checked already; the
    // signature itself plays no part here.
    let mut p = AppPacket::new(queue, seq, ts, MsgType::Msg, b"m");
    p.src_pk = src;
    p
}

fn key(i: u32) -> [u8; 33] {
    let mut k = [2u8; 33];
    k[1..5].copy_from_slice(&i.to_be_bytes());
    k
}

/// Issue 11 item 1: throwaway keys flooding the table with messages
/// stamped at the future edge of the window cannot stop A's fresh
/// messages from being delivered (and so ACKed).
#[test]
fn a_flood_from_other_keys_does_not_silence_a_peer() {
    let mut r = Receiver::new(
        vec![Slot::EMPTY; ROUTER_SLOTS].into_boxed_slice(),
        vec![0u64; ROUTER_WATERMARKS].into_boxed_slice(),
        [0x5a; 16],
    );
    let a = key(u32::MAX);
    // A is a regular peer before the attack.
    assert!(matches!(
        r.on_packet(&msg(a, [1; 32], 0, NOW), NOW),
        Verdict::Deliver { .. }
    ));
    // 200 keys, 400 messages each: 80,000 messages over 40 s, each
    // stamped up to 120 s ahead of the receiver's clock.
    let mut now = NOW;
    for round in 0..400u32 {
        if round % 10 == 0 {
            now += 1;
        }
        for k in 0..200u32 {
            let ahead = 100 + u64::from((k + round) % 21);
            let p = msg(key(k), [k as u8; 32], round, now + ahead);
            let _ = r.on_packet(&p, now);
        }
    }
    for seq in 1..=5u32 {
        // A payload of its own: the same one renumbered in its queue is a
        // duplicate by content (the receiver's renumbering rule).
        let body = seq.to_be_bytes();
        let mut p = msg(a, [2; 32], seq, now);
        p.msg = &body;
        let verdict = r.on_packet(&p, now);
        let Verdict::Deliver { ack } = verdict else {
            panic!("A's fresh message {seq} refused: {verdict:?}")
        };
        assert_eq!((ack.msg_type, ack.seq_no), (MsgType::Ack, seq));
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

    /// Issue 11 item 4: a sender's timestamp is any u64, and so is the
    /// receiver's clock; judging the pair never overflows (this runs in
    /// debug builds, where overflow panics), and the window is exactly
    /// ±120 s with the age saturated to i64.
    #[test]
    fn any_timestamp_is_judged_without_overflow(
        ts in proptest::prelude::any::<u64>(),
        now in proptest::prelude::any::<u64>(),
        near in -130i64..130,
        edge in proptest::prelude::any::<bool>(),
    ) {
        // Half the cases near the clock or at the ends of the range.
        let ts = if edge { now.saturating_add_signed(near) } else { ts };
        for (ts, now) in [(ts, now), (u64::MAX, now), (0, now), (ts, u64::MAX), (ts, 0)] {
            let mut r = Receiver::new([Slot::EMPTY; 8], [0u64; 8], [1; 16]);
            let p = msg(key(1), [1; 32], 0, ts);
            let verdict = r.on_packet(&p, now);
            let exact = i128::from(now) - i128::from(ts);
            match verdict {
                Verdict::Stale { age } => {
                    proptest::prop_assert!(exact.unsigned_abs() > 120);
                    proptest::prop_assert_eq!(
                        i128::from(age),
                        exact.clamp(i128::from(i64::MIN), i128::from(i64::MAX))
                    );
                }
                Verdict::Deliver { ack } => {
                    proptest::prop_assert!(exact.unsigned_abs() <= 120);
                    proptest::prop_assert_eq!(ack.timestamp, now);
                    // A copy is known for as long as it could be fresh.
                    proptest::prop_assert!(r.known_copy(&p, now).is_some());
                    let again = r.on_packet(&p, now);
                    proptest::prop_assert!(matches!(again, Verdict::Duplicate { .. }), "{:?}", again);
                }
                other => proptest::prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
