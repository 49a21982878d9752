//! The registry's wire formats (feature `registry`) with no std: fold a
//! name, sign, encode and decode a write request, verify it, judge it, and
//! encode and decode the reply, all in stack buffers. Built with this
//! crate's `registry` feature, which also brings the global allocator:
//! unicode-normalization links `alloc` (for long runs of combining marks),
//! though none of these steps allocates for ASCII names.

use keyway_core::Keypair;
use keyway_core::registry::{
    MAX_REPLY_LEN, MAX_REQUEST_LEN, Op, Outcome, SignedRequest, Status, Username, WriteReply,
    WriteRequest, check_fresh, decide,
};

use crate::CounterRng;

/// Returns 0 on success, else the number of the step that failed.
pub fn registry_round_trip(seed: u64, now_ms: u64) -> u32 {
    let mut rng = CounterRng(seed);
    let owner = Keypair::generate(&mut rng);
    let Ok(name) = Username::fold("Stra\u{00DF}e_01") else {
        return 1;
    };
    if name.as_str() != "strasse_01" {
        return 2;
    }
    let signed = WriteRequest::sign(Op::Register, name, [3; 32], now_ms, &owner);
    let mut wire = [0u8; MAX_REQUEST_LEN];
    let Ok(n) = signed.encode(&mut wire) else {
        return 3;
    };
    let Ok(back) = SignedRequest::decode(&wire[..n]) else {
        return 4;
    };
    if back != signed || back.verify().is_err() {
        return 5;
    }
    if check_fresh(now_ms, back.request.timestamp_ms, None).is_err() {
        return 6;
    }
    if decide(Op::Register, owner.public(), None) != Outcome::Append {
        return 7;
    }
    let reply = WriteReply {
        status: Status::Err("Username already taken"),
        position: 42,
    };
    let mut out = [0u8; MAX_REPLY_LEN];
    let Ok(m) = reply.encode(&mut out) else {
        return 8;
    };
    if WriteReply::decode(&out[..m]) != Ok(reply) {
        return 9;
    }
    0
}
