//! Every vector of `tests/vectors/sidewire.json` (from the reference's
//! generator, sidewire 0.1.9) and the rankings over the bundled pool of
//! `tests/vectors/sidewire-broker-pool.json`.
#![allow(clippy::unwrap_used)]

use keyway_core::Keypair;
use keyway_core::sidewire::app_packet::HEADER_LEN;
use keyway_core::sidewire::rendezvous::{self, Broker, Ranked, Ranking};
use keyway_core::sidewire::{AppPacket, MsgType};
use keyway_core::signature::sha1_digest;
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/vectors/sidewire.json")).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    base16ct::mixed::decode_vec(v.as_str().unwrap()).unwrap()
}

fn key(v: &Value, name: &str) -> Keypair {
    let kp = Keypair::from_secret_hex(v[name]["private_key_hex"].as_str().unwrap()).unwrap();
    assert_eq!(
        kp.public().to_string(),
        v[name]["public_key_compressed_hex"].as_str().unwrap()
    );
    kp
}

fn packet_from_inputs<'a>(inputs: &Value, msg: &'a [u8]) -> AppPacket<'a> {
    AppPacket::new(
        bytes(&inputs["queue_id_hex"]).try_into().unwrap(),
        inputs["seq_no"].as_u64().unwrap() as u32,
        inputs["timestamp"].as_u64().unwrap(),
        MsgType::from(inputs["msg_type"].as_u64().unwrap() as u8),
        msg,
    )
}

#[test]
fn msg_packet_signs_to_the_low_s_twin_and_both_forms_verify() {
    let v = vectors();
    let case = &v["app_packet_msg"];
    let a = key(&v, "key_A");
    let msg = case["inputs"]["msg_ascii"].as_str().unwrap().as_bytes();
    let mut p = packet_from_inputs(&case["inputs"], msg);
    p.sign(&a);
    let mut buf = [0u8; 512];
    let n = p.encode(&mut buf).unwrap();
    assert_eq!(&buf[97..n], bytes(&case["signed_portion_hex"]));
    assert_eq!(
        sha1_digest([&buf[97..n]]).as_slice(),
        bytes(&case["sha1_of_signed_portion_hex"])
    );
    assert_eq!(n as u64, case["packet_len"].as_u64().unwrap());
    // The vector's RFC 6979 signature is high-S; ours is its low-S twin.
    assert!(case["s_is_high"].as_bool().unwrap());
    assert_eq!(&buf[..n], bytes(&case["high_low_s_twin_packet_hex"]));
    assert_eq!(&p.sig[..32], bytes(&case["sig_r_hex"]));
    for form in ["packet_hex", "high_low_s_twin_packet_hex"] {
        let wire = bytes(&case[form]);
        let q = AppPacket::decode(&wire).unwrap();
        assert_eq!(q.verify().unwrap(), *a.public(), "{form}");
        assert_eq!((q.msg_type, q.msg, q.seq_no), (MsgType::Msg, msg, 7));
    }
}

#[test]
fn ack_packet_and_random_nonce_packet_verify() {
    let v = vectors();
    let case = &v["app_packet_ack"];
    let b = key(&v, "key_B");
    let wire = bytes(&case["packet_hex"]);
    let q = AppPacket::decode(&wire).unwrap();
    assert_eq!(q.verify().unwrap(), *b.public());
    assert_eq!((q.msg_type, q.msg), (MsgType::Ack, &b"ack"[..]));
    assert_eq!(&wire[97..], bytes(&case["signed_portion_hex"]));
    assert_eq!(wire.len(), HEADER_LEN + 3);
    // The receiver's ACK for the MSG vector is this packet, signed by B.
    let msg_case = &v["app_packet_msg"];
    let msg = bytes(&msg_case["packet_hex"]);
    let mut ack = AppPacket::decode(&msg)
        .unwrap()
        .ack(case["inputs"]["timestamp"].as_u64().unwrap());
    ack.sign(&b);
    let mut buf = [0u8; 256];
    let n = ack.encode(&mut buf).unwrap();
    assert_eq!(&buf[97..n], bytes(&case["signed_portion_hex"]));
    AppPacket::decode(&buf[..n]).unwrap().verify().unwrap();

    let random = bytes(&v["app_packet_msg_random_nonce_example"]["packet_hex"]);
    let a = key(&v, "key_A");
    assert_eq!(
        AppPacket::decode(&random).unwrap().verify().unwrap(),
        *a.public()
    );
    assert_eq!(&random[..33], &msg[..33]);
    assert_eq!(&random[97..], &msg[97..]);
}

fn ranked_hosts<'a>(af: u8, dest: &[u8; 33], pool: &[&'a str]) -> Vec<&'a str> {
    let brokers: Vec<Broker<'_>> = pool
        .iter()
        .map(|h| Broker {
            host: h,
            weight: 1.0,
        })
        .collect();
    let mut scratch = vec![Ranked::default(); pool.len()];
    rendezvous::rank(af, dest, &brokers, Ranking::Compatible, &mut scratch)
        .iter()
        .map(|r| pool[r.index])
        .collect()
}

#[test]
fn small_pool_rankings_match_for_every_af_byte() {
    let v = vectors();
    let case = &v["rendezvous_small_pool"];
    let dest: [u8; 33] = bytes(&case["dest_pub_hex"]).try_into().unwrap();
    for (field, af) in [("ipv4_af2_ranking", 2u8), ("ipv6_af10_linux_ranking", 10)] {
        let expected = case[field].as_array().unwrap();
        let hosts: Vec<&str> = expected
            .iter()
            .map(|e| e["host"].as_str().unwrap())
            .collect();
        // Feed the pool in reverse so the order really comes from the hash.
        let pool: Vec<&str> = hosts.iter().rev().copied().collect();
        assert_eq!(ranked_hosts(af, &dest, &pool), hosts, "{field}");
        for e in expected {
            let d = rendezvous::digest(af, &dest, e["host"].as_str().unwrap());
            assert_eq!(d.as_slice(), bytes(&e["sha256_hex"]));
            let reference: f64 = e["score_repr"].as_str().unwrap().parse().unwrap();
            let ours = rendezvous::score(&d);
            // libm's log may differ from glibc's in the last place.
            assert!(
                (ours - reference).abs() <= reference * 4.0 * f64::EPSILON,
                "{ours} vs {reference}"
            );
        }
    }
    // Windows (23) and macOS (30) AF bytes give other orders: keep Linux's.
    let v6: Vec<&str> = case["ipv6_af10_linux_ranking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    for (field, af) in [
        ("ipv6_windows_af23_ranking", 23u8),
        ("ipv6_macos_af30_ranking", 30),
    ] {
        let expected: Vec<&str> = case[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert_eq!(ranked_hosts(af, &dest, &v6), expected, "{field}");
    }
}

#[test]
fn bundled_pool_rankings_match_for_both_keys() {
    let v = vectors();
    let pool: Value = serde_json::from_str(include_str!(
        "../../tests/vectors/sidewire-broker-pool.json"
    ))
    .unwrap();
    let hosts = |family: &str| -> Vec<String> {
        pool["effective"][family]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["host"].as_str().unwrap().to_owned())
            .collect()
    };
    let (v4, v6) = (hosts("IPv4"), hosts("IPv6"));
    assert_eq!((v4.len(), v6.len()), (11, 3));
    for (case, key_name) in [
        ("rendezvous_bundled_pool_for_dest_A", "key_A"),
        ("rendezvous_bundled_pool_for_dest_B", "key_B"),
    ] {
        let dest: [u8; 33] = *key(&v, key_name).public().as_bytes();
        for (family, af, pool) in [("ipv4", 2u8, &v4), ("ipv6", 10, &v6)] {
            let expected: Vec<&str> = v[case][family]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
                .collect();
            let pool: Vec<&str> = pool.iter().map(String::as_str).collect();
            assert_eq!(ranked_hosts(af, &dest, &pool), expected, "{case} {family}");
        }
    }
}

#[test]
fn mqtt_frames_are_byte_identical() {
    use keyway_core::mqtt::{self, CONNACK_ACCEPTED, Packet, QoS};
    let v = vectors();
    let m = &v["mqtt"];
    let a = key(&v, "key_A").public().to_string();
    let b = key(&v, "key_B").public().to_string();
    let payload = bytes(&v["app_packet_msg"]["packet_hex"]);
    let mut buf = vec![0u8; 512];
    let fields = [
        "connect_clientid_abcdefghijklmno_keepalive10_hex",
        "subscribe_pid1_topic_pubA_qos1_hex",
        "publish_qos1_pid2_topic_pubB_payload_app_packet_msg_hex",
        "puback_pid2_hex",
        "pingreq_hex",
        "disconnect_hex",
    ];
    for field in fields {
        let n = match field {
            "connect_clientid_abcdefghijklmno_keepalive10_hex" => {
                mqtt::encode_connect(b"abcdefghijklmno", 10, &mut buf)
            }
            "subscribe_pid1_topic_pubA_qos1_hex" => {
                mqtt::encode_subscribe(1, a.as_bytes(), QoS::AtLeastOnce, &mut buf)
            }
            "publish_qos1_pid2_topic_pubB_payload_app_packet_msg_hex" => {
                mqtt::encode_publish(b.as_bytes(), QoS::AtLeastOnce, 2, &payload, &mut buf)
            }
            "puback_pid2_hex" => mqtt::encode_puback(2, &mut buf),
            "pingreq_hex" => mqtt::encode_pingreq(&mut buf),
            _ => mqtt::encode_disconnect(&mut buf),
        }
        .unwrap();
        let expected = bytes(&m[field]);
        assert_eq!(&buf[..n], expected, "{field}");
        let (_, used) = mqtt::decode(&expected, 4096).unwrap().unwrap();
        assert_eq!(used, expected.len(), "{field}");
    }
    assert_eq!(
        CONNACK_ACCEPTED.as_slice(),
        bytes(&m["expected_connack_hex"])
    );
    let publish = bytes(&m["publish_qos1_pid2_topic_pubB_payload_app_packet_msg_hex"]);
    let Some((
        Packet::Publish {
            topic,
            packet_id,
            payload: p,
            qos,
            ..
        },
        _,
    )) = mqtt::decode(&publish, 4096).unwrap()
    else {
        panic!("not a PUBLISH")
    };
    assert_eq!(
        (topic, packet_id, qos, p),
        (b.as_bytes(), Some(2), QoS::AtLeastOnce, &payload[..])
    );
    assert_eq!(
        mqtt::decode(&CONNACK_ACCEPTED, 16).unwrap().unwrap().0,
        Packet::Connack {
            session_present: false,
            return_code: 0
        }
    );
}
