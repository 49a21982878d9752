//! Applying a record to a chain: the corrected receiver of spec §12.4,
//! used by mirrors for received records and by the owner for its own.
//!
//! 1. Verify. A record at or before the tip is a duplicate (same id and
//!    signature at that time), fork evidence (another id at that time:
//!    two writers share the key, spec D4; reported, nothing deleted), or
//!    refused.
//! 2. Anchor: `prevchange` is 0, a record held here, or (a partial
//!    mirror, spec D8) at or below the back pointer, else a record is
//!    missing and the batch stops.
//! 3. Skip rule: records modified after `prevchange` are gone.
//! 4. Overshoot rule: if the next id already skips this one, the record
//!    was deleted; otherwise every record with an id in (`prev`, `id`] is
//!    gone (the skipped ones and the old version).
//! 5. Repair: a surviving record whose mchain predecessor went in step 4
//!    must point further back. The owner re-signs it; a mirror needs the
//!    owner's patched copy (`crdr`), which it passes in `repairs` — until
//!    it has it, [`ApplyError::NeedsRepair`] says which to fetch. No
//!    dangling pointer is ever left behind (the original's bug O2).
//! 6. Store the record.
//!
//! It mutates as it goes: run it in a transaction and roll back on error.

use core::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::chain::Chain;
use super::record::{Meta, RecordError};

/// What happened to an applied record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Inserted,
    /// Already held, byte for byte: nothing changed.
    Duplicate,
}

/// Who mends pointers left dangling by a removal.
#[derive(Debug)]
pub enum Mender<'a> {
    /// The owner: re-signs the record to point further back.
    Owner(&'a SigningKey),
    /// A mirror: the owner's answers to `crdr/<pdest>` fetched so far.
    Mirror(&'a [Repair]),
}

/// The owner's answer to `crdr/<pdest>`: the record with the largest
/// `prevchange` ≤ `pdest`, or `None` when it has none (HTTP 404).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repair {
    pub pdest: i64,
    pub answer: Option<Meta>,
}

/// Why a record was not applied.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError<E> {
    Store(E),
    Record(RecordError),
    /// At or before the tip, and not a copy of the record held then.
    BeforeTip {
        modified: i64,
        tip: i64,
    },
    /// `prevchange` names a record not held here: an earlier record is
    /// missing (sync from further back).
    Gap {
        prevchange: i64,
    },
    /// The ID chain already skips this id: the record was deleted.
    AlreadyDeleted {
        id: u64,
    },
    /// Two different records were made at the same time: two writers
    /// used the stream's key. Nothing was changed.
    Fork {
        modified: i64,
        held: u64,
        offered: u64,
    },
    /// Record `target` must point at `pdest` or earlier: fetch the
    /// owner's copy with `crdr/<pdest>` and apply again with it.
    NeedsRepair {
        target: u64,
        pdest: i64,
    },
    /// A repair record broke the rules of spec §6.7 (it must point
    /// further back, not be older, and mend the hole).
    BadRepair {
        id: u64,
    },
}

impl<E: fmt::Display> fmt::Display for ApplyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => write!(f, "storage: {e}"),
            Self::Record(e) => e.fmt(f),
            Self::BeforeTip { modified, tip } => write!(
                f,
                "record modified at {modified} is not after the chain's tip ({tip})"
            ),
            Self::Gap { prevchange } => write!(
                f,
                "record follows one modified at {prevchange}, which this chain does not hold"
            ),
            Self::AlreadyDeleted { id } => write!(f, "record {id} was already deleted"),
            Self::Fork {
                modified,
                held,
                offered,
            } => write!(
                f,
                "fork: records {held} (held) and {offered} (offered) were both made at {modified}; \
                 two writers share this stream's key"
            ),
            Self::NeedsRepair { target, pdest } => write!(
                f,
                "record {target} needs the owner's repaired copy (crdr/{pdest})"
            ),
            Self::BadRepair { id } => write!(f, "repair record {id} is not an acceptable patch"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for ApplyError<E> {}

impl<E> From<RecordError> for ApplyError<E> {
    fn from(e: RecordError) -> Self {
        Self::Record(e)
    }
}

/// Applies `meta` (with `body`, and `value` when present to check its
/// hash) to `chain`, signed by `stream`.
pub fn apply<C: Chain>(
    chain: &mut C,
    stream: &VerifyingKey,
    meta: &Meta,
    body: C::Body,
    value: Option<&[u8]>,
    mender: &Mender<'_>,
) -> Result<Applied, ApplyError<C::Error>> {
    let record = Verified::check(meta, stream)?;
    apply_verified(chain, stream, &record, body, value, mender)
}

/// A record whose signature has been checked under the stream's key (or
/// that the owner has just signed): checks can run ahead, in parallel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified(Meta);

impl Verified {
    /// Checks `meta`'s ranges and signature.
    pub fn check(meta: &Meta, stream: &VerifyingKey) -> Result<Self, RecordError> {
        meta.verify(stream)?;
        Ok(Self(*meta))
    }

    /// A record the owner signed a moment ago.
    pub(crate) fn signed_here(meta: &Meta) -> Result<Self, RecordError> {
        meta.check_ranges()?;
        Ok(Self(*meta))
    }

    pub fn meta(&self) -> &Meta {
        &self.0
    }
}

/// [`apply`] for a record already verified.
pub fn apply_verified<C: Chain>(
    chain: &mut C,
    stream: &VerifyingKey,
    record: &Verified,
    body: C::Body,
    value: Option<&[u8]>,
    mender: &Mender<'_>,
) -> Result<Applied, ApplyError<C::Error>> {
    let meta = &record.0;
    if let Some(value) = value {
        meta.check_value(value)?;
    }
    let store = ApplyError::Store;
    let tip = chain.tip().map_err(store)?;
    // The common case in a sync: the record follows the tip, so it is
    // anchored and nothing lies after its predecessor.
    let extends_tip = tip.is_some_and(|t| t.modified == meta.prevchange);
    if let Some(tip) = tip
        && meta.modified <= tip.modified
    {
        return match chain.by_modified(meta.modified).map_err(store)? {
            Some(held) if held.id == meta.id && held.signature == meta.signature => {
                Ok(Applied::Duplicate)
            }
            Some(held) if held.id != meta.id => Err(ApplyError::Fork {
                modified: meta.modified,
                held: held.id,
                offered: meta.id,
            }),
            _ => Err(ApplyError::BeforeTip {
                modified: meta.modified,
                tip: tip.modified,
            }),
        };
    }
    let back = chain.back().map_err(store)?;
    // A partial mirror holds nothing at or before its back pointer: a
    // record that follows one there (a delete rewrote it to skip records
    // the mirror never held) is anchored, and the skip rule below leaves
    // it the oldest record held.
    let below_back = back != 0 && meta.prevchange < back;
    let anchored = |chain: &C| -> Result<bool, C::Error> {
        Ok(meta.prevchange == 0
            || meta.prevchange == back
            || below_back
            || chain.by_modified(meta.prevchange)?.is_some())
    };
    if !extends_tip && !anchored(chain).map_err(store)? {
        return Err(ApplyError::Gap {
            prevchange: meta.prevchange,
        });
    }
    if let Some(next) = chain.first_id_after(meta.id).map_err(store)?
        && next.prev < meta.id
    {
        return Err(ApplyError::AlreadyDeleted { id: meta.id });
    }

    // Skip rule: whatever was modified after the predecessor goes, and
    // with it every record that could point at it.
    let mut removed_any = false;
    while !extends_tip && let Some(gone) = chain.first_after(meta.prevchange).map_err(store)? {
        chain.remove(gone.id).map_err(store)?;
        removed_any = true;
    }
    if below_back {
        chain.set_back(meta.prevchange).map_err(store)?;
    }

    // Overshoot rule, then repair the successors of what it removed.
    let mut cursor = meta.prev;
    while let Some(gone) = chain.first_id_after(cursor).map_err(store)? {
        if gone.id > meta.id {
            break;
        }
        cursor = gone.id;
        chain.remove(gone.id).map_err(store)?;
        removed_any = true;
        // Ids in (cursor, id] are still to go: neither mended nor pointed at.
        let pending = |m: &Meta| m.id > cursor && m.id <= meta.id;
        if let Some(orphan) = chain.by_prevchange(gone.modified).map_err(store)?
            && !pending(&orphan)
        {
            mend(chain, stream, orphan, &pending, mender)?;
        }
    }
    // The predecessor itself may not have been among the removed.
    if removed_any && !anchored(chain).map_err(store)? {
        return Err(ApplyError::Gap {
            prevchange: meta.prevchange,
        });
    }
    // Any old version of this id was in (prev, id] and is gone.
    chain.insert(meta, body).map_err(store)?;
    Ok(Applied::Inserted)
}

/// Points `orphan` (whose predecessor is gone) at the latest surviving
/// record before it: the owner re-signs it; a mirror takes the owner's
/// patched copy from `crdr`. If the owner no longer has this version of
/// the orphan (its `crdr` answer is another record: the orphan was since
/// moved or deleted, and a correct owner's answer would otherwise be the
/// orphan), the mirror drops it too and mends its successor in turn; a
/// moved record comes back later in the same sync.
fn mend<C: Chain>(
    chain: &mut C,
    stream: &VerifyingKey,
    mut orphan: Meta,
    pending: &dyn Fn(&Meta) -> bool,
    mender: &Mender<'_>,
) -> Result<(), ApplyError<C::Error>> {
    let store = ApplyError::Store;
    // A partial mirror's oldest record follows its back pointer.
    let back = chain.back().map_err(store)?;
    loop {
        let mut below = orphan.modified;
        let pdest = loop {
            match chain.last_before(below).map_err(store)? {
                Some(m) if pending(&m) => below = m.modified,
                Some(m) => break m.modified,
                None => break back,
            }
        };
        let repairs = match mender {
            Mender::Owner(key) => {
                // Between pdest and the orphan lie only records still to
                // be removed (that is how pdest was found): remove them now,
                // so no two records point at pdest even for a moment.
                remove_between(chain, pdest, orphan.modified)?;
                return chain.set_meta(&orphan.repointed(pdest, key)).map_err(store);
            }
            Mender::Mirror(repairs) => repairs,
        };
        let Some(repair) = repairs.iter().find(|r| r.pdest == pdest) else {
            return Err(ApplyError::NeedsRepair {
                target: orphan.id,
                pdest,
            });
        };
        if let Some(patch) = repair.answer {
            if patch.prevchange > pdest {
                return Err(ApplyError::BadRepair { id: patch.id });
            }
            if patch.id == orphan.id && patch.modified == orphan.modified {
                patch.verify(stream)?;
                if !patch.repoints(&orphan) {
                    return Err(ApplyError::BadRepair { id: patch.id });
                }
                // The owner has nothing between the patch's pointer and
                // it: what this mirror still holds there was since moved
                // (it comes back later in the sync) or deleted (spec §6.7's
                // range delete). Those records' successors are in the range
                // or the orphan, so nothing else is left dangling.
                remove_between(chain, patch.prevchange, orphan.modified)?;
                if back != 0 && patch.prevchange < back {
                    // The owner has nothing between the new pointer and
                    // the old back pointer either.
                    chain.set_back(patch.prevchange).map_err(store)?;
                }
                return chain.set_meta(&patch).map_err(store);
            }
        }
        chain.remove(orphan.id).map_err(store)?;
        match chain.by_prevchange(orphan.modified).map_err(store)? {
            Some(next) if !pending(&next) => orphan = next,
            _ => return Ok(()),
        }
    }
}

/// Removes every record modified strictly between `after` and `before`.
fn remove_between<C: Chain>(
    chain: &mut C,
    after: i64,
    before: i64,
) -> Result<(), ApplyError<C::Error>> {
    while let Some(stale) = chain.first_after(after).map_err(ApplyError::Store)? {
        if stale.modified >= before {
            break;
        }
        chain.remove(stale.id).map_err(ApplyError::Store)?;
    }
    Ok(())
}
