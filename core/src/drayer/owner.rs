//! The owner's writes (spec §6.2–6.4 with the corrections of §12.4):
//! each builds one signed record and applies it with the owner's key, so
//! the receiver's rules do the removals and re-sign what they orphan.
//!
//! - `modified = max(now, tip + 1)`: a clock that steps back or repeats a
//!   microsecond no longer blocks writes (spec D1).
//! - Deleting X rewrites its ID successor N with a pointer to the latest
//!   record other than X and N (the O1 fix: the original could point N at
//!   its own old version and fail).
//! - The caller's application timestamp is honoured (O18).

use ed25519_dalek::SigningKey;

use super::apply::{Applied, ApplyError, Mender, Verified, apply_verified};
use super::chain::Chain;
use super::record::{Hash, MAX_FIELD, Meta, RecordError};

/// Why a write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError<E> {
    Apply(ApplyError<E>),
    /// No record for this (key, type).
    NotFound,
    /// The record with the largest id cannot be deleted: deletion works by
    /// rewriting the next record's `prev` (the original's limit, kept for
    /// compatibility).
    IdTip,
    /// The chain has used every id.
    Full,
}

impl<E: core::fmt::Display> core::fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Apply(e) => e.fmt(f),
            Self::NotFound => f.write_str("no such record"),
            Self::IdTip => f.write_str(
                "the most recently added record cannot be deleted (Drayer deletes by rewriting the next record)",
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
    let tip = chain.tip().map_err(store)?;
    let mtip = tip.map_or(0, |t| t.modified);
    let modified = next_modified(now, tip.as_ref());
    let (id, prev, prevchange) = match chain.by_key(key, kind).map_err(store)? {
        Some(current) => {
            // A version must not point at its own old version.
            let is_tip = tip.is_some_and(|t| t.id == current.id);
            let prevchange = if is_tip { current.prevchange } else { mtip };
            (current.id, current.prev, prevchange)
        }
        None => {
            let last = chain.id_tip().map_err(store)?.map_or(0, |m| m.id);
            if last >= MAX_FIELD {
                return Err(WriteError::Full);
            }
            (last + 1, last, mtip)
        }
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

/// Deletes (key, kind).
pub fn delete<C: Chain>(
    chain: &mut C,
    owner: &SigningKey,
    key: &str,
    kind: &str,
    now: i64,
) -> Result<Meta, WriteError<C::Error>> {
    let store = |e| WriteError::Apply(ApplyError::Store(e));
    let x = chain
        .by_key(key, kind)
        .map_err(store)?
        .ok_or(WriteError::NotFound)?;
    let n = match chain.first_id_after(x.id).map_err(store)? {
        Some(n) if n.prev == x.id => n,
        _ => return Err(WriteError::IdTip),
    };
    let tip = chain.tip().map_err(store)?;
    // The latest record other than X and N.
    let mut below = i64::MAX;
    let prevchange = loop {
        match chain.last_before(below).map_err(store)? {
            Some(m) if m.id == x.id || m.id == n.id => below = m.modified,
            Some(m) => break m.modified,
            None => break 0,
        }
    };
    let mut rewritten = Meta {
        prev: x.prev,
        modified: next_modified(now, tip.as_ref()),
        prevchange,
        ..n
    };
    rewritten.sign(owner);
    let body = chain
        .body(n.id)
        .map_err(store)?
        .ok_or(WriteError::NotFound)?;
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
