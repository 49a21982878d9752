//! The registry's rules, apart from any store: whether a verified write
//! is fresh, and what it does to the name's current owner.
//!
//! A server runs [`check_fresh`] and [`decide`] inside the one
//! transaction that also appends the record, so check and set are one
//! step (two registrations of one name: exactly one `OK`). A replica can
//! run the same rules over the stream to check the server followed them.

use crate::identity::PublicKey;

use super::request::Op;

/// `register` of a name someone else holds (hyper-registry's words).
pub const ERR_TAKEN: &str = "Username already taken";
/// `delete` of a free name (hyper-registry's words).
pub const ERR_NOT_FOUND: &str = "Username not found";
/// `delete` by someone other than the owner (hyper-registry's words).
pub const ERR_NOT_OWNER: &str = "Unauthorized: only the owner can delete this username";
/// The request's owner is not the link's proven identity.
pub const ERR_NOT_CALLER: &str = "Unauthorized: the request is not signed by the caller";
/// The owner's signature does not verify.
pub const ERR_BAD_SIGNATURE: &str = "Bad signature";
/// The body is not a request (bad name, bad key, wrong length, …).
pub const ERR_MALFORMED: &str = "Malformed request";
/// The request names another registry's stream.
pub const ERR_OTHER_REGISTRY: &str = "Request is for another registry";
/// The timestamp is outside the freshness window (the caller's clock is off).
pub const ERR_EXPIRED: &str = "Request expired: check the clock";
/// The timestamp is not after the owner's last accepted write.
pub const ERR_REPLAYED: &str = "Replayed request";
/// The server could not store the write (nothing was stored).
pub const ERR_INTERNAL: &str = "Internal error";
/// The server has too many writes waiting; try again.
pub const ERR_BUSY: &str = "Busy";

/// How far a request's timestamp may be from the server's clock.
pub const FRESH_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Whether a request made at `request_ms` may be accepted at `now_ms`,
/// given the owner's last accepted timestamp. `Err` holds the reply text.
pub fn check_fresh(now_ms: u64, request_ms: u64, last_ms: Option<u64>) -> Result<(), &'static str> {
    if request_ms.saturating_add(FRESH_WINDOW_MS) < now_ms
        || request_ms > now_ms.saturating_add(FRESH_WINDOW_MS)
    {
        return Err(ERR_EXPIRED);
    }
    if last_ms.is_some_and(|last| request_ms <= last) {
        return Err(ERR_REPLAYED);
    }
    Ok(())
}

/// What a fresh, verified write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Append the request as a record; reply `OK`.
    Append,
    /// Nothing to do; reply `IDEMPOTENT` with the current record's position.
    Idempotent,
    /// Reply `ERR:<text>`; nothing is stored.
    Refuse(&'static str),
}

/// The outcome of `op` by `caller` on a name whose owner is `current`
/// (`None`: free, never registered or deleted).
pub fn decide(op: Op, caller: &PublicKey, current: Option<&PublicKey>) -> Outcome {
    match (op, current) {
        (Op::Register, None) => Outcome::Append,
        (Op::Register, Some(owner)) if owner == caller => Outcome::Idempotent,
        (Op::Register, Some(_)) => Outcome::Refuse(ERR_TAKEN),
        (Op::Delete, None) => Outcome::Refuse(ERR_NOT_FOUND),
        (Op::Delete, Some(owner)) if owner == caller => Outcome::Append,
        (Op::Delete, Some(_)) => Outcome::Refuse(ERR_NOT_OWNER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use rand_core::UnwrapErr;

    #[test]
    fn hyper_registry_table() {
        let mut rng = UnwrapErr(getrandom::SysRng);
        let (a, b) = (Keypair::generate(&mut rng), Keypair::generate(&mut rng));
        let (a, b) = (a.public(), b.public());
        assert_eq!(decide(Op::Register, a, None), Outcome::Append);
        assert_eq!(decide(Op::Register, a, Some(a)), Outcome::Idempotent);
        assert_eq!(decide(Op::Register, b, Some(a)), Outcome::Refuse(ERR_TAKEN));
        assert_eq!(decide(Op::Delete, a, None), Outcome::Refuse(ERR_NOT_FOUND));
        assert_eq!(decide(Op::Delete, a, Some(a)), Outcome::Append);
        assert_eq!(
            decide(Op::Delete, b, Some(a)),
            Outcome::Refuse(ERR_NOT_OWNER)
        );
    }

    #[test]
    fn freshness() {
        let now = 1_795_000_000_000;
        assert_eq!(check_fresh(now, now, None), Ok(()));
        assert_eq!(check_fresh(now, now - FRESH_WINDOW_MS, None), Ok(()));
        assert_eq!(
            check_fresh(now, now - FRESH_WINDOW_MS - 1, None),
            Err(ERR_EXPIRED)
        );
        assert_eq!(
            check_fresh(now, now + FRESH_WINDOW_MS + 1, None),
            Err(ERR_EXPIRED)
        );
        assert_eq!(check_fresh(now, now, Some(now)), Err(ERR_REPLAYED));
        assert_eq!(check_fresh(now, now, Some(now - 1)), Ok(()));
        assert_eq!(check_fresh(0, u64::MAX, None), Err(ERR_EXPIRED));
    }
}
