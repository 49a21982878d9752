//! Properties of the MQTT codec and the AppPacket over generated inputs.
#![allow(clippy::unwrap_used)]

use keyway_core::mqtt::{self, Packet, QoS};
use keyway_core::sidewire::{AppPacket, MsgType, Receiver, Slot, Verdict};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever arrives, from one source or several, in any order and
    /// however full the table or small the watermark sketch, no MSG is
    /// delivered twice, and a MSG seen for the first time within its
    /// window is delivered unless the table had to forget a later one.
    #[test]
    fn no_message_is_delivered_twice(
        stamps in proptest::collection::vec(0u64..300, 1..40),
        arrivals in proptest::collection::vec((0usize..40, 0u64..20), 1..200),
        slots in 0usize..24,
        cells in 0usize..12,
        sources in 1u8..4,
        seed in any::<[u8; 16]>(),
    ) {
        const START: u64 = 1_700_000_000;
        let packets: Vec<AppPacket<'_>> = stamps
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                let mut p = AppPacket::new([i as u8; 32], 0, START + ts, MsgType::Msg, b"m");
                p.src_pk = [2 + i as u8 % sources; 33];
                p
            })
            .collect();
        let mut table = vec![Slot::EMPTY; slots];
        let mut cells = vec![0u64; cells];
        let mut r = Receiver::new(table.as_mut_slice(), cells.as_mut_slice(), seed);
        let mut delivered = vec![false; packets.len()];
        let mut now = START;
        for (which, step) in arrivals {
            now += step;
            let i = which % packets.len();
            match r.on_packet(&packets[i], now) {
                Verdict::Deliver { .. } => {
                    prop_assert!(!delivered[i], "message {} delivered twice", i);
                    delivered[i] = true;
                }
                Verdict::Duplicate { .. } => prop_assert!(delivered[i]),
                Verdict::Stale { age } => prop_assert!(age.unsigned_abs() > 120),
                Verdict::TooOld | Verdict::Conflict => {}
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn mqtt_decode_never_panics_nor_reads_past_its_input(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        max in 2usize..700,
    ) {
        if let Ok(Some((_, used))) = mqtt::decode(&bytes, max) {
            prop_assert!(used <= bytes.len() && used <= max);
        }
    }

    #[test]
    fn publish_round_trips_and_waits_on_every_prefix(
        topic in proptest::collection::vec(any::<u8>(), 0..80),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        id in 1u16..,
        qos1 in any::<bool>(),
    ) {
        let qos = if qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        let mut buf = vec![0u8; 512];
        let n = mqtt::encode_publish(&topic, qos, id, &payload, &mut buf).unwrap();
        let (packet, used) = mqtt::decode(&buf[..n], 1024).unwrap().unwrap();
        prop_assert_eq!(used, n);
        prop_assert_eq!(packet, Packet::Publish {
            dup: false, qos, retain: false, topic: &topic,
            packet_id: qos1.then_some(id), payload: &payload,
        });
        for cut in [0, 1, n / 2, n - 1] {
            prop_assert_eq!(mqtt::decode(&buf[..cut], 1024), Ok(None));
        }
    }

    #[test]
    fn app_packet_decode_inverts_encode(
        queue in any::<[u8; 32]>(), seq in any::<u32>(), ts in any::<u64>(), ty in any::<u8>(),
        msg in proptest::collection::vec(any::<u8>(), 0..300),
        src in any::<[u8; 33]>(), sig in any::<[u8; 64]>(),
    ) {
        let p = AppPacket { src_pk: src, sig, queue_id: queue, seq_no: seq, timestamp: ts,
                            msg_type: MsgType::from(ty), msg: &msg };
        let mut buf = vec![0u8; 512];
        let n = p.encode(&mut buf).unwrap();
        prop_assert_eq!(AppPacket::decode(&buf[..n]).unwrap(), p);
        // Arbitrary keys and signatures never verify by accident, nor panic.
        prop_assert!(p.verify().is_err());
    }
}
