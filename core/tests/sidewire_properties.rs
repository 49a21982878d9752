//! Properties of the MQTT codec and the AppPacket over generated inputs.
#![allow(clippy::unwrap_used)]

use keyway_core::mqtt::{self, Packet, QoS};
use keyway_core::sidewire::{AppPacket, MsgType};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
