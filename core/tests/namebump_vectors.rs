//! Every vector of `tests/vectors/namebump.json` (copied from the spec's
//! `namebump-vectors.json`, produced by the reference namebump 0.0.16).
#![allow(clippy::unwrap_used)]

use ecdsa::hazmat;
use k256::Secp256k1;
use keyway_core::ecies;
use keyway_core::namebump::packet::MAX_PACKET_LEN;
use keyway_core::namebump::usage::{MAX_USAGE_LEN, Usage};
use keyway_core::namebump::{DO_BUMP, Op, Packet};
use keyway_core::signature::{self, sha1_digest};
use keyway_core::{Keypair, PublicKey};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../tests/vectors/namebump.json")).unwrap()
}

fn bytes(v: &Value, key: &str) -> Vec<u8> {
    base16ct::mixed::decode_vec(v[key].as_str().unwrap()).unwrap()
}

fn keypair(v: &Value, key: &str) -> Keypair {
    Keypair::from_secret_hex(v[key].as_str().unwrap()).unwrap()
}

fn array<const N: usize>(v: &Value, key: &str) -> [u8; N] {
    bytes(v, key).try_into().unwrap()
}

#[test]
fn keys_derive_their_compressed_public_keys() {
    let v = vectors();
    for (sk, pk) in [
        ("owner_priv", "owner_vkc"),
        ("reply_priv", "reply_pk"),
        ("server_priv", "server_pk"),
        ("ecies_ephemeral_priv", "ecies_ephemeral_pk"),
    ] {
        assert_eq!(
            keypair(&v, sk).public().as_bytes().as_slice(),
            bytes(&v, pk),
            "{sk}"
        );
    }
}

fn put_packet(v: &Value) -> Packet<'static> {
    let mut p = Packet::new(
        Op::Put,
        0x1234_5678,
        1_700_000_000.25,
        b"alice",
        b"hello world",
    );
    p.reply_pk = Some(array(v, "reply_pk"));
    p.behavior = DO_BUMP;
    p.ttl = 10.0;
    p.vkc = Some(array(v, "owner_vkc"));
    p
}

#[test]
fn put_packs_to_the_reference_bytes_and_digest() {
    let v = vectors();
    let p = put_packet(&v);
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = p.encode_signed_part(&mut buf).unwrap();
    assert_eq!(n as u64, v["put_msg_len"].as_u64().unwrap());
    assert_eq!(&buf[..n], bytes(&v, "put_msg_to_sign"));
    assert_eq!(p.digest().unwrap().as_slice(), bytes(&v, "put_sha1"));
    assert_eq!(sha1_digest([&buf[..n]]).as_slice(), bytes(&v, "put_sha1"));
    assert_eq!(Packet::decode(&buf[..n]).unwrap(), p);
}

#[test]
fn rfc6979_signature_is_byte_identical_and_low_s() {
    let v = vectors();
    let mut p = put_packet(&v);
    p.sign(&keypair(&v, "owner_priv")).unwrap();
    assert_eq!(p.sig.unwrap().as_slice(), bytes(&v, "put_sig_rfc6979_sha1"));
    assert!(v["put_sig_rfc6979_low_s"].as_bool().unwrap());
}

#[test]
fn fixed_nonce_signature_matches_up_to_s_normalisation() {
    // Our signer only emits low-S; the reference's fixed-k vector is high-S.
    // Signing with the same k must give its low-S twin, and both verify.
    let v = vectors();
    let owner = keypair(&v, "owner_priv");
    let digest: [u8; 20] = array(&v, "put_sha1");
    let d = k256::NonZeroScalar::from_repr(owner.secret_bytes().into()).unwrap();
    let k = k256::NonZeroScalar::from_repr(array::<32>(&v, "fixed_k").into()).unwrap();
    let (ours, _) = hazmat::sign_prehashed::<Secp256k1>(&d, &k, &digest).unwrap();
    let reference: [u8; 64] = array(&v, "put_sig_fixed_k");
    let reference_sig = k256::ecdsa::Signature::from_slice(&reference).unwrap();
    assert!(!v["put_sig_fixed_k_low_s"].as_bool().unwrap());
    assert_eq!(ours, reference_sig.normalize_s());
    assert_ne!(ours, reference_sig);
    assert!(v["put_sig_fixed_k_s_negated_verifies"].as_bool().unwrap());
    signature::verify_digest(owner.public(), &digest, &reference).unwrap();
    signature::verify_digest(owner.public(), &digest, &ours.to_bytes().into()).unwrap();
}

#[test]
fn random_nonce_reference_signature_verifies() {
    let v = vectors();
    let mut p = put_packet(&v);
    p.sig = Some(array(&v, "put_sig_random_example"));
    p.verify(&PublicKey::from_hex(v["owner_vkc"].as_str().unwrap()).unwrap())
        .unwrap();
}

#[test]
fn sha256_signature_does_not_verify() {
    // The reference rejects SHA-256-hashed signatures (`sha256_sig_verifies`
    // is false); so must we: sign the SHA-256 digest with the same k.
    let v = vectors();
    assert!(!v["sha256_sig_verifies"].as_bool().unwrap());
    let owner = keypair(&v, "owner_priv");
    let msg = bytes(&v, "put_msg_to_sign");
    let z = <sha2::Sha256 as sha2::Digest>::digest(&msg);
    let d = k256::NonZeroScalar::from_repr(owner.secret_bytes().into()).unwrap();
    let k = k256::NonZeroScalar::from_repr(array::<32>(&v, "fixed_k").into()).unwrap();
    let (sig, _) = hazmat::sign_prehashed::<Secp256k1>(&d, &k, &z).unwrap();
    let mut p = put_packet(&v);
    p.sig = Some(sig.to_bytes().into());
    assert!(p.verify(owner.public()).is_err());
}

#[test]
fn signed_plaintext_decodes_and_verifies() {
    let v = vectors();
    let wire = bytes(&v, "put_plaintext_with_sig");
    let p = Packet::decode(&wire).unwrap();
    assert_eq!(
        (p.op, p.pkid, p.name, p.value),
        (Op::Put, 0x1234_5678, &b"alice"[..], &b"hello world"[..])
    );
    assert_eq!(p.updated, 1_700_000_000.25);
    assert_eq!(p.sig.unwrap().as_slice(), bytes(&v, "put_sig_fixed_k"));
    assert_eq!(
        p.verify_self_signed().unwrap().as_bytes().as_slice(),
        bytes(&v, "owner_vkc")
    );
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = p.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], wire);
}

#[test]
fn ecies_with_fixed_ephemeral_and_iv_is_byte_identical_both_ways() {
    let v = vectors();
    let server = keypair(&v, "server_priv");
    let ephemeral = keypair(&v, "ecies_ephemeral_priv");
    let iv: [u8; 16] = array(&v, "ecies_iv");
    let plaintext = bytes(&v, "put_plaintext_with_sig");
    let wire = bytes(&v, "ecies_wire");
    assert_eq!(wire.len() as u64, v["ecies_wire_len"].as_u64().unwrap());
    assert_eq!(
        ecies::ciphertext_len(plaintext.len()) as u64,
        v["ecies_ct_len"].as_u64().unwrap()
    );
    assert_eq!(&wire[49..81], bytes(&v, "ecies_tag"));

    let mut out = vec![0u8; wire.len()];
    let opened = ecies::open(&server, &wire, &mut out).unwrap();
    assert_eq!(opened, plaintext);

    let mut sealed = vec![0u8; ecies::sealed_len(plaintext.len())];
    let n = ecies::seal_with(server.public(), &plaintext, &ephemeral, &iv, &mut sealed).unwrap();
    assert_eq!(&sealed[..n], wire);
}

#[test]
fn get_plaintext_matches_the_unsigned_reference_get() {
    let v = vectors();
    let reply: [u8; 33] = array(&v, "reply_pk");
    let mut g = Packet::new(Op::Get, 0x0A0B_0C0D, 1_700_000_000.5, b"alice", b"");
    g.reply_pk = Some(reply);
    g.vkc = Some(reply); // the reference client's GET without a kp
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = g.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], bytes(&v, "get_plaintext"));
    assert_eq!(Packet::decode(&buf[..n]).unwrap(), g);
}

#[test]
fn server_put_reply_is_the_echo_with_the_server_key() {
    let v = vectors();
    let request = bytes(&v, "put_plaintext_with_sig");
    let mut reply = Packet::decode(&request).unwrap();
    reply.reply_pk = Some(array(&v, "server_pk"));
    reply.sig = None;
    let mut buf = [0u8; MAX_PACKET_LEN];
    let n = reply.encode(&mut buf).unwrap();
    assert_eq!(&buf[..n], bytes(&v, "put_reply_plaintext"));
}

#[test]
fn usage_value_is_byte_identical() {
    let v = vectors();
    let expected = v["usage_value_example"].as_str().unwrap().as_bytes();
    let mut buf = [0u8; MAX_USAGE_LEN];
    let n = Usage {
        af: 2,
        names_used: 1,
        name_limit: 20,
    }
    .encode(&mut buf)
    .unwrap();
    assert_eq!(&buf[..n], expected);
    assert_eq!(
        Usage::decode(expected).unwrap(),
        Usage {
            af: 2,
            names_used: 1,
            name_limit: 20
        }
    );
}
