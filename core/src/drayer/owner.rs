//! The owner's writes (spec §6.2–6.4 with the corrections of §12.4):
//! each builds one signed record and applies it with the owner's key, so
//! the receiver's rules do the removals and re-sign what they orphan.
//!
//! - `modified = max(now, tip + 1)`: a clock that steps back or repeats a
//!   microsecond no longer blocks writes (spec D1).
//! - Deleting X rewrites its ID successor N with a pointer to the latest
//!   record other than X and N (the O1 fix: the original could point N at
//!   its own old version and fail).
//! - Deleting the ID tip X, which has no successor to rewrite (the
//!   original refused: spec D5), appends a placeholder in its stead: id
//!   X.id + 1, `prev` = X.prev, (key, type) = ([`PLACEHOLDER_KEY`],
//!   [`PLACEHOLDER_TYPE`]), empty value. Receivers remove X by their usual
//!   rules (skip or overshoot), exactly as if X's successor had been
//!   rewritten. The next new key takes the placeholder's place (same id
//!   and `prev`: to a receiver, a new version of that record), so at most
//!   one placeholder exists and it is always the ID tip.
//! - The caller's application timestamp is honoured (O18).

use ed25519_dalek::SigningKey;

use super::apply::{Applied, ApplyError, Mender, Verified, apply_verified};
use super::chain::Chain;
use super::record::{Hash, MAX_FIELD, Meta, RecordError, hash};

/// Why a write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError<E> {
    Apply(ApplyError<E>),
    /// No record for this (key, type).
    NotFound,
    /// ([`PLACEHOLDER_KEY`], [`PLACEHOLDER_TYPE`]) is the stream's own
    /// bookkeeping, not an application's to set or delete.
    Reserved,
    /// The chain has used every id.
    Full,
}

impl<E: core::fmt::Display> core::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Apply(e) => e.fmt(f),
            Self::NotFound => f.write_str("no such record"),
            Self::Reserved => write!(
                f,
                "({PLACEHOLDER_KEY}, {PLACEHOLDER_TYPE}) is reserved for the placeholder of a deleted newest record"
            ),
            Self::Full => f.write_str("the chain has used every id"),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> core::error::Error for WriteError<E> {}

impl<E> From<ApplyError<E>> for WriteError<E> {
    fn from(e: ApplyError<E>) -> Self {
        Self::Apply(e)
    }
}

/// Key of the placeholder that stands in for a deleted ID tip.
pub const PLACEHOLDER_KEY: &str = "placeholder";
/// Type of the placeholder: `drayer`, the original's type for the
/// stream's own records, which its readers look up only by the keys they
/// know (`primaryServers`, `siblings`), so none shows it as data.
pub const PLACEHOLDER_TYPE: &str = "drayer";

/// Whether (key, kind) names the placeholder.
pub fn is_reserved(key: &str, kind: &str) -> bool {
    key == PLACEHOLDER_KEY && kind == PLACEHOLDER_TYPE
}

/// Whether `meta` is a placeholder (by its signed key and type hashes).
pub fn is_placeholder(meta: &Meta) -> bool {
    meta.key_hash == hash(PLACEHOLDER_KEY.as_bytes())
        && meta.type_hash == hash(PLACEHOLDER_TYPE.as_bytes())
}

/// The next version time: now, or just after the tip if the clock lags.
fn next_modified(now: i64, tip: Option<&Meta>) -> i64 {
    now.max(tip.map_or(0, |t| t.modified.saturating_add(1)))
        .max(1)
}

#[allow(clippy::too_many_arguments)]
fn write<C: Chain>(
    chain: &mut C,
    owner: &SigningKey,
    key: &str,
    kind: &str,
    value_hash: Hash,
    body: C::Body,
    now: i64,
    timestamp: Option<i64>,
    sign: bool,
) -> Result<Meta, WriteError<C::Error>> {
    let store = |e| WriteError::Apply(ApplyError::Store(e));
    if is_reserved(key, kind) {
        return Err(WriteError::Reserved);
    }
    let tip = chain.tip().map_err(store)?;
    let mtip = tip.map_or(0, |t| t.modified);
    let modified = next_modified(now, tip.as_ref());
    // A version must not point at its own old version.
    let new_version = |current: Meta| {
        let is_tip = tip.is_some_and(|t| t.id == current.id);
        let prevchange = if is_tip { current.prevchange } else { mtip };
        (current.id, current.prev, prevchange)
    };
    let (id, prev, prevchange) = match chain.by_key(key, kind).map_err(store)? {
        Some(current) => new_version(current),
        None => match chain.id_tip().map_err(store)? {
            // A new key takes the placeholder's place: a new version of
            // it, so receivers drop it as they drop any old version.
            Some(last) if is_placeholder(&last) => new_version(last),
            last => {
                let last = last.map_or(0, |m| m.id);
                if last >= MAX_FIELD {
                    return Err(WriteError::Full);
                }
                (last + 1, last, mtip)
            }
        },
    };
    let mut meta = Meta::new(
        id,
        timestamp.unwrap_or(modified),
        modified,
        prev,
        prevchange,
        key,
        kind,
        value_hash,
    );
    if sign {
        meta.sign(owner);
    }
    commit(chain, owner, &meta, body)
}

/// Sets (key, kind) to a value with hash `value_hash` (the body holds the
/// value), inserting or updating. `now` is the owner's clock in µs;
/// `timestamp` defaults to the record's `modified`.
#[allow(clippy::too_many_arguments)]
pub fn set<C: Chain>(
    chain: &mut C,
    owner: &SigningKey,
    key: &str,
    kind: &str,
    value_hash: Hash,
    body: C::Body,
    now: i64,
    timestamp: Option<i64>,
) -> Result<Meta, WriteError<C::Error>> {
    write(
        chain, owner, key, kind, value_hash, body, now, timestamp, true,
    )
}

/// [`set`], storing the record with an all-zero signature and returning
/// its unsigned metadata, so that a batch of writes can be signed on
/// other threads while the store works (signing is half of an insert's
/// cost). No decision of the owner's algorithms reads the new record's
/// signature, so the chain evolves exactly as under [`set`]. The caller
/// must sign each returned `Meta` and pass it to [`seal`] before the
/// transaction commits: an unsealed record does not verify.
#[allow(clippy::too_many_arguments)]
pub fn set_unsigned<C: Chain>(
    chain: &mut C,
    owner: &SigningKey,
    key: &str,
    kind: &str,
    value_hash: Hash,
    body: C::Body,
    now: i64,
    timestamp: Option<i64>,
) -> Result<Meta, WriteError<C::Error>> {
    write(
        chain, owner, key, kind, value_hash, body, now, timestamp, false,
    )
}

/// Stores the signature of a record written by [`set_unsigned`], if the
/// record is still held as it was written. A later write of the same batch
/// may have replaced it (same id, its own seal follows), removed it, or
/// re-signed it while repairing the modification chain (a real signature
/// already): those are left alone. Returns whether it was stored.
pub fn seal<C: Chain>(chain: &mut C, signed: &Meta) -> Result<bool, C::Error> {
    let unsigned = Meta {
        signature: [0; 64],
        ..*signed
    };
    match chain.by_id(signed.id)? {
        Some(held) if held == unsigned => {
            chain.set_meta(signed)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Deletes (key, kind): rewrites its ID successor to skip it, or, when it
/// has none (it is the ID tip), appends a placeholder that skips it.
pub fn delete<C: Chain>(
    chain: &mut C,
    owner: &SigningKey,
    key: &str,
    kind: &str,
    now: i64,
) -> Result<Meta, WriteError<C::Error>> {
    let store = |e| WriteError::Apply(ApplyError::Store(e));
    if is_reserved(key, kind) {
        return Err(WriteError::Reserved);
    }
    let x = chain
        .by_key(key, kind)
        .map_err(store)?
        .ok_or(WriteError::NotFound)?;
    let next = chain.first_id_after(x.id).map_err(store)?;
    let tip = chain.tip().map_err(store)?;
    let modified = next_modified(now, tip.as_ref());
    // The latest record other than X and N (the O1 fix); for the ID tip,
    // other than X.
    let skip = next.map_or(x.id, |n| n.id);
    let mut below = i64::MAX;
    let prevchange = loop {
        match chain.last_before(below).map_err(store)? {
            Some(m) if m.id == x.id || m.id == skip => below = m.modified,
            Some(m) => break m.modified,
            None => break 0,
        }
    };
    let (mut rewritten, body) = match next {
        Some(n) if n.prev == x.id => {
            let body = chain
                .body(n.id)
                .map_err(store)?
                .ok_or(WriteError::NotFound)?;
            let rewritten = Meta {
                prev: x.prev,
                modified,
                prevchange,
                ..n
            };
            (rewritten, body)
        }
        // Only a chain that is not whole has a later id that skips X.
        Some(_) => return Err(WriteError::Apply(ApplyError::AlreadyDeleted { id: x.id })),
        None => {
            if x.id >= MAX_FIELD {
                return Err(WriteError::Full);
            }
            let placeholder = Meta::new(
                x.id + 1,
                modified,
                modified,
                x.prev,
                prevchange,
                PLACEHOLDER_KEY,
                PLACEHOLDER_TYPE,
                hash(&[]),
            );
            let body = chain.body_for(PLACEHOLDER_KEY, PLACEHOLDER_TYPE, &[]);
            (placeholder, body)
        }
    };
    rewritten.sign(owner);
    commit(chain, owner, &rewritten, body)
}

fn commit<C: Chain>(
    chain: &mut C,
    owner: &SigningKey,
    meta: &Meta,
    body: C::Body,
) -> Result<Meta, WriteError<C::Error>> {
    // Just signed with the owner's key: no need to verify it again.
    let record = Verified::signed_here(meta).map_err(ApplyError::Record)?;
    match apply_verified(
        chain,
        &owner.verifying_key(),
        &record,
        body,
        None,
        &Mender::Owner(owner),
    )? {
        Applied::Inserted => Ok(*meta),
        // A fresh `modified` is after the tip: never a duplicate.
        Applied::Duplicate => Err(WriteError::Apply(ApplyError::Record(
            RecordError::OutOfRange,
        ))),
    }
}
