//! The link's Noise layer (`keyway_core::link::noise`: snow plus the seeded
//! random source) against published test vectors for
//! `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s` (issue 16, item 9). The data
//! file names its source.
#![cfg(feature = "link")]
#![allow(clippy::unwrap_used)]

use keyway_core::link::noise::{self, PROTOCOL_NAME};
use serde_json::Value;

const VECTORS: &str = include_str!("data/noise_xxpsk3_25519_chachapoly_blake2s.json");

fn hex(v: &Value) -> Vec<u8> {
    let text = v.as_str().unwrap();
    let mut out = vec![0u8; text.len() / 2];
    base16ct::mixed::decode(text, &mut out).unwrap();
    out
}

fn key(v: &Value) -> [u8; 32] {
    hex(v).try_into().unwrap()
}

#[test]
fn the_noise_layer_reproduces_the_published_vectors() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    assert!(doc["source"].as_str().unwrap().contains("cacophony"));
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        assert_eq!(v["protocol_name"], PROTOCOL_NAME);
        let init_psks = v["init_psks"].as_array().unwrap();
        let resp_psks = v["resp_psks"].as_array().unwrap();
        assert_eq!((init_psks.len(), resp_psks.len()), (1, 1));
        let mut init = noise::handshake_with(
            true,
            &hex(&v["init_prologue"]),
            &key(&v["init_static"]),
            key(&v["init_ephemeral"]),
            &key(&init_psks[0]),
        )
        .unwrap();
        let mut resp = noise::handshake_with(
            false,
            &hex(&v["resp_prologue"]),
            &key(&v["resp_static"]),
            key(&v["resp_ephemeral"]),
            &key(&resp_psks[0]),
        )
        .unwrap();
        let messages = v["messages"].as_array().unwrap();
        assert!(messages.len() > 3, "vectors go past the handshake");
        let mut buf = vec![0u8; 65_535];
        let mut plain = vec![0u8; 65_535];
        // The three XX messages alternate initiator, responder, initiator.
        for (i, m) in messages[..3].iter().enumerate() {
            let (sender, receiver) = if i % 2 == 0 {
                (&mut init, &mut resp)
            } else {
                (&mut resp, &mut init)
            };
            let payload = hex(&m["payload"]);
            let n = sender.write_message(&payload, &mut buf).unwrap();
            assert_eq!(buf[..n], hex(&m["ciphertext"])[..], "handshake message {i}");
            let p = receiver.read_message(&buf[..n], &mut plain).unwrap();
            assert_eq!(plain[..p], payload[..], "handshake message {i}");
        }
        assert!(init.is_handshake_finished() && resp.is_handshake_finished());
        let h = hex(&v["handshake_hash"]);
        assert_eq!(init.get_handshake_hash(), &h[..]);
        assert_eq!(resp.get_handshake_hash(), &h[..]);
        let mut init = init.into_transport_mode().unwrap();
        let mut resp = resp.into_transport_mode().unwrap();
        // Transport messages keep alternating, starting with the responder.
        for (i, m) in messages.iter().enumerate().skip(3) {
            let (sender, receiver) = if i % 2 == 0 {
                (&mut init, &mut resp)
            } else {
                (&mut resp, &mut init)
            };
            let payload = hex(&m["payload"]);
            let n = sender.write_message(&payload, &mut buf).unwrap();
            assert_eq!(buf[..n], hex(&m["ciphertext"])[..], "transport message {i}");
            let p = receiver.read_message(&buf[..n], &mut plain).unwrap();
            assert_eq!(plain[..p], payload[..], "transport message {i}");
        }
    }
}

#[test]
fn a_different_psk_diverges_at_the_third_message() {
    let doc: Value = serde_json::from_str(VECTORS).unwrap();
    let v = &doc["vectors"][0];
    let mut psk = key(&v["init_psks"][0]);
    psk[0] ^= 1;
    let mut init = noise::handshake_with(
        true,
        &hex(&v["init_prologue"]),
        &key(&v["init_static"]),
        key(&v["init_ephemeral"]),
        &psk,
    )
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let mut resp = noise::handshake_with(
        false,
        &hex(&v["resp_prologue"]),
        &key(&v["resp_static"]),
        key(&v["resp_ephemeral"]),
        &key(&v["resp_psks"][0]),
    )
    .unwrap();
    let mut plain = vec![0u8; 1024];
    let messages = v["messages"].as_array().unwrap();
    for (i, m) in messages[..2].iter().enumerate() {
        let (s, r) = if i == 0 {
            (&mut init, &mut resp)
        } else {
            (&mut resp, &mut init)
        };
        let n = s.write_message(&hex(&m["payload"]), &mut buf).unwrap();
        assert_eq!(buf[..n], hex(&m["ciphertext"])[..]);
        r.read_message(&buf[..n], &mut plain).unwrap();
    }
    let n = init
        .write_message(&hex(&messages[2]["payload"]), &mut buf)
        .unwrap();
    assert_ne!(buf[..n], hex(&messages[2]["ciphertext"])[..]);
    assert!(resp.read_message(&buf[..n], &mut plain).is_err());
}
