//! Properties of the registry's wire formats (issue 17): signed requests
//! and replies round-trip, any bytes decode without panicking and what
//! decodes re-encodes to the same bytes, any flipped byte of a signed
//! request is refused or fails verification, and folding is idempotent
//! and yields only canonical names.
#![cfg(feature = "registry")]
#![allow(clippy::unwrap_used)]

use keyway_core::Keypair;
use keyway_core::registry::reply::{MAX_REPLY_LEN, Status, WriteReply};
use keyway_core::registry::request::{MAX_REQUEST_LEN, Op, SignedRequest, WriteRequest};
use keyway_core::registry::username::{MAX_LEN, MIN_LEN, Username, is_allowed};
use proptest::prelude::*;

fn keypair(seed: u8) -> Keypair {
    let mut secret = [seed.max(1); 32];
    secret[0] = 0x11;
    Keypair::from_secret_bytes(&secret).unwrap()
}

fn name() -> impl Strategy<Value = Username> {
    "[a-z0-9_-]{3,32}".prop_map(|s| Username::from_canonical(s.as_bytes()).unwrap())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Register), Just(Op::Delete)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_requests_round_trip_and_verify(
        op in op(), name in name(), registry in any::<[u8; 32]>(), ts in any::<u64>(), seed in any::<u8>()
    ) {
        let owner = keypair(seed);
        let signed = WriteRequest::sign(op, name, registry, ts, &owner);
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = signed.encode(&mut buf).unwrap();
        let back = SignedRequest::decode(&buf[..n]).unwrap();
        prop_assert_eq!(back, signed);
        prop_assert!(back.verify().is_ok());
        prop_assert_eq!(back.request.owner, *owner.public());
    }

    #[test]
    fn a_flipped_byte_never_passes(
        name in name(), ts in any::<u64>(), at in any::<prop::sample::Index>(), bit in 0u8..8
    ) {
        let signed = WriteRequest::sign(Op::Register, name, [9; 32], ts, &keypair(3));
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = signed.encode(&mut buf).unwrap();
        buf[at.index(n)] ^= 1 << bit;
        if let Ok(tampered) = SignedRequest::decode(&buf[..n]) {
            prop_assert!(tampered.verify().is_err());
        }
    }

    #[test]
    fn any_bytes_as_request(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(request) = SignedRequest::decode(&bytes) {
            let mut out = [0u8; MAX_REQUEST_LEN];
            let n = request.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &bytes[..]);
        }
    }

    #[test]
    fn any_bytes_as_reply(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
        if let Ok(reply) = WriteReply::decode(&bytes) {
            let mut out = [0u8; MAX_REPLY_LEN];
            let n = reply.encode(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &bytes[..]);
        }
    }

    #[test]
    fn replies_round_trip(position in any::<i64>(), kind in 0u8..3, text in "[ -~]{1,124}") {
        let status = match kind {
            0 => Status::Ok,
            1 => Status::Idempotent,
            _ => Status::Err(&text),
        };
        let reply = WriteReply { status, position };
        let mut out = [0u8; MAX_REPLY_LEN];
        let n = reply.encode(&mut out).unwrap();
        prop_assert_eq!(WriteReply::decode(&out[..n]).unwrap(), reply);
    }

    #[test]
    fn folding_is_canonical_and_idempotent(input in "\\PC{0,40}") {
        if let Ok(name) = Username::fold(&input) {
            let bytes = name.as_bytes();
            prop_assert!((MIN_LEN..=MAX_LEN).contains(&bytes.len()));
            prop_assert!(bytes.iter().all(|&b| is_allowed(b)));
            prop_assert_eq!(Username::fold(name.as_str()).unwrap(), name);
            prop_assert_eq!(Username::from_canonical(bytes).unwrap(), name);
        }
    }

    #[test]
    fn case_never_matters(name in "[a-zA-Z0-9_-]{3,32}") {
        prop_assert_eq!(
            Username::fold(&name).unwrap(),
            Username::fold(&name.to_ascii_uppercase()).unwrap()
        );
    }
}
