//! Which decrypted replies belong to the request (bugs 10, 31, 41).
//!
//! A reply is read only if it decrypts under the attempt's fresh reply
//! key, so a stale reply to an earlier call (such as one of the reference
//! server's 5 UDP copies) cannot even be opened. Of what opens, a reply
//! must carry the request's pkid and op, or be an error reply: ours echo
//! the pkid, the reference's carry a random one (bug 31) and are known by
//! their name.

use crate::namebump::reply::ERROR_NAME;
use crate::namebump::{Op, Packet};

/// Whether `reply` answers the request `pkid`/`op`.
pub(super) fn answers(reply: &Packet<'_>, pkid: u32, op: Op) -> bool {
    let ours = reply.pkid == pkid && (reply.op == op || reply.op == Op::Error);
    let reference_error = reply.op == Op::Error && reply.name == ERROR_NAME;
    ours || reference_error
}
