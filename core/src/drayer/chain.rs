//! What the Drayer algorithms need from a store of one chain's records.
//!
//! Every lookup is by an indexed key (spec §7.2), so a store with the
//! recommended indexes makes each operation O(log n). The store keeps each
//! record's body (key, type, value) next to its [`Meta`]; the algorithms
//! only move bodies around. Atomicity is the caller's: run each operation
//! in one transaction and roll back when it returns an error.

use super::record::Meta;

/// One chain's records, keyed by id.
pub trait Chain {
    type Error;
    /// Key, type and value as the store keeps them.
    type Body;

    /// The record with the largest `modified` (the mchain tip).
    fn tip(&self) -> Result<Option<Meta>, Self::Error>;
    /// The record with the largest id.
    fn id_tip(&self) -> Result<Option<Meta>, Self::Error>;
    fn by_id(&self, id: u64) -> Result<Option<Meta>, Self::Error>;
    fn by_modified(&self, modified: i64) -> Result<Option<Meta>, Self::Error>;
    /// The record whose `prevchange` is `modified`: the mchain successor
    /// of the record modified then.
    fn by_prevchange(&self, modified: i64) -> Result<Option<Meta>, Self::Error>;
    /// The current record for (key, type).
    fn by_key(&self, key: &str, kind: &str) -> Result<Option<Meta>, Self::Error>;
    /// The record with the largest `modified` below `modified`.
    fn last_before(&self, modified: i64) -> Result<Option<Meta>, Self::Error>;
    /// The record with the smallest `modified` above `modified`.
    fn first_after(&self, modified: i64) -> Result<Option<Meta>, Self::Error>;
    /// The record with the smallest id above `id`.
    fn first_id_after(&self, id: u64) -> Result<Option<Meta>, Self::Error>;

    /// A body holding (key, kind) and `value`, for a record the owner
    /// makes up (the placeholder of a deleted ID tip).
    fn body_for(&self, key: &str, kind: &str, value: &[u8]) -> Self::Body;
    /// The body of record `id`.
    fn body(&self, id: u64) -> Result<Option<Self::Body>, Self::Error>;
    /// Stores a record, replacing any record with its id.
    fn put(&mut self, meta: &Meta, body: Self::Body) -> Result<(), Self::Error>;
    /// Stores a record whose id is not held (the algorithms have just
    /// removed any old version): a store may skip looking for one.
    fn insert(&mut self, meta: &Meta, body: Self::Body) -> Result<(), Self::Error> {
        self.put(meta, body)
    }
    /// Replaces the metadata of record `meta.id`, keeping its body (a
    /// re-signed pointer).
    fn set_meta(&mut self, meta: &Meta) -> Result<(), Self::Error>;
    fn remove(&mut self, id: u64) -> Result<(), Self::Error>;

    /// A partial mirror's declared back pointer (spec D8): the `modified`
    /// its oldest record follows. Records before it are not held, so a
    /// `prevchange` equal to it is anchored. 0 for a whole chain.
    fn back(&self) -> Result<i64, Self::Error> {
        Ok(0)
    }

    /// Moves the back pointer (a partial mirror's oldest record was
    /// repointed further back, or older records were let go). Whole
    /// chains keep 0.
    fn set_back(&mut self, _back: i64) -> Result<(), Self::Error> {
        Ok(())
    }
}
