//! A chain in memory (feature `alloc`): for firmware with a heap, tests
//! and property checks. Indexed like the SQLite store, and as strict:
//! `modified` and `prevchange` are unique, as the original schema's
//! UNIQUE constraints make them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::chain::Chain;
use super::record::Meta;

pub use super::pull::{MAX_REPAIRS, PAGE};

mod pull;

/// Key, type and value; the value is `None` in a metadata-only copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBody {
    pub key: String,
    pub kind: String,
    pub value: Option<Vec<u8>>,
}

/// A uniqueness rule would be broken: the algorithms never do this to a
/// consistent chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub id: u64,
}

impl core::fmt::Display for Conflict {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "record {} would share a modified time or predecessor",
            self.id
        )
    }
}

/// One chain's records and their indexes. Cloning is the transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryChain {
    records: BTreeMap<u64, (Meta, MemoryBody)>,
    by_modified: BTreeMap<i64, u64>,
    by_prevchange: BTreeMap<i64, u64>,
    by_key: BTreeMap<(String, String), u64>,
    /// A partial mirror's back pointer (0: the whole chain).
    back: i64,
}

impl MemoryChain {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records in mchain order (oldest `modified` first).
    pub fn in_mchain_order(&self) -> impl DoubleEndedIterator<Item = (&Meta, &MemoryBody)> + '_ {
        self.by_modified.values().filter_map(|id| {
            let (meta, body) = self.records.get(id)?;
            Some((meta, body))
        })
    }

    /// Records modified after `t`, oldest first, at most `limit` (what
    /// `newRecords/<t>` serves).
    pub fn modified_after(&self, t: i64, limit: usize) -> Vec<(Meta, MemoryBody)> {
        self.by_modified
            .range((core::ops::Bound::Excluded(t), core::ops::Bound::Unbounded))
            .take(limit)
            .filter_map(|(_, id)| self.records.get(id).cloned())
            .collect()
    }

    /// The record with the largest `prevchange` ≤ `pdest` (what
    /// `crdr/<pdest>` serves).
    pub fn crdr(&self, pdest: i64) -> Option<(Meta, MemoryBody)> {
        let (_, id) = self.by_prevchange.range(..=pdest).next_back()?;
        self.records.get(id).cloned()
    }

    /// Lets go of all but the `keep` most recently modified records,
    /// moving the back pointer up.
    pub fn keep_newest(&mut self, keep: usize) {
        while self.len() > keep.max(1) {
            let Some((_, &id)) = self.by_modified.iter().next() else {
                return;
            };
            let Some((meta, body)) = self.records.remove(&id) else {
                return;
            };
            self.unlink(&meta, &body);
            self.back = meta.modified;
        }
    }

    /// The back pointer: 0 for a whole mirror.
    pub fn back_pointer(&self) -> i64 {
        self.back
    }

    /// Runs `f` on a copy and keeps the result only if it succeeds.
    pub fn transaction<T, E>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        let mut draft = self.clone();
        let out = f(&mut draft)?;
        *self = draft;
        Ok(out)
    }

    fn meta(&self, id: Option<&u64>) -> Option<Meta> {
        id.and_then(|id| self.records.get(id)).map(|(m, _)| *m)
    }

    /// Drops the index entries that name this record (a mirror may
    /// briefly hold an old copy of a key that a newer record already took).
    fn unlink(&mut self, meta: &Meta, body: &MemoryBody) {
        let id = meta.id;
        if self.by_modified.get(&meta.modified) == Some(&id) {
            self.by_modified.remove(&meta.modified);
        }
        if self.by_prevchange.get(&meta.prevchange) == Some(&id) {
            self.by_prevchange.remove(&meta.prevchange);
        }
        let key = (body.key.clone(), body.kind.clone());
        if self.by_key.get(&key) == Some(&id) {
            self.by_key.remove(&key);
        }
    }

    fn link(&mut self, meta: &Meta, body: &MemoryBody) -> Result<(), Conflict> {
        let conflict = Conflict { id: meta.id };
        if self.by_modified.contains_key(&meta.modified)
            || self.by_prevchange.contains_key(&meta.prevchange)
        {
            return Err(conflict);
        }
        self.by_modified.insert(meta.modified, meta.id);
        self.by_prevchange.insert(meta.prevchange, meta.id);
        self.by_key
            .insert((body.key.clone(), body.kind.clone()), meta.id);
        Ok(())
    }
}

impl Chain for MemoryChain {
    type Error = Conflict;
    type Body = MemoryBody;

    fn tip(&self) -> Result<Option<Meta>, Conflict> {
        Ok(self.meta(self.by_modified.values().next_back()))
    }

    fn id_tip(&self) -> Result<Option<Meta>, Conflict> {
        Ok(self.records.values().next_back().map(|(m, _)| *m))
    }

    fn by_id(&self, id: u64) -> Result<Option<Meta>, Conflict> {
        Ok(self.meta(Some(&id)))
    }

    fn by_modified(&self, modified: i64) -> Result<Option<Meta>, Conflict> {
        Ok(self.meta(self.by_modified.get(&modified)))
    }

    fn by_prevchange(&self, modified: i64) -> Result<Option<Meta>, Conflict> {
        Ok(self.meta(self.by_prevchange.get(&modified)))
    }

    fn by_key(&self, key: &str, kind: &str) -> Result<Option<Meta>, Conflict> {
        Ok(self.meta(self.by_key.get(&(String::from(key), String::from(kind)))))
    }

    fn last_before(&self, modified: i64) -> Result<Option<Meta>, Conflict> {
        Ok(self.meta(
            self.by_modified
                .range(..modified)
                .next_back()
                .map(|(_, id)| id),
        ))
    }

    fn first_after(&self, modified: i64) -> Result<Option<Meta>, Conflict> {
        let after = self
            .by_modified
            .range((
                core::ops::Bound::Excluded(modified),
                core::ops::Bound::Unbounded,
            ))
            .next();
        Ok(self.meta(after.map(|(_, id)| id)))
    }

    fn first_id_after(&self, id: u64) -> Result<Option<Meta>, Conflict> {
        let after = self
            .records
            .range((core::ops::Bound::Excluded(id), core::ops::Bound::Unbounded))
            .next();
        Ok(after.map(|(_, (m, _))| *m))
    }

    fn body_for(&self, key: &str, kind: &str, value: &[u8]) -> MemoryBody {
        MemoryBody {
            key: String::from(key),
            kind: String::from(kind),
            value: Some(value.to_vec()),
        }
    }

    fn body(&self, id: u64) -> Result<Option<MemoryBody>, Conflict> {
        Ok(self.records.get(&id).map(|(_, b)| b.clone()))
    }

    fn put(&mut self, meta: &Meta, body: MemoryBody) -> Result<(), Conflict> {
        if let Some((old, old_body)) = self.records.remove(&meta.id) {
            self.unlink(&old, &old_body);
        }
        self.link(meta, &body)?;
        self.records.insert(meta.id, (*meta, body));
        Ok(())
    }

    fn set_meta(&mut self, meta: &Meta) -> Result<(), Conflict> {
        let Some((_, body)) = self.records.get(&meta.id) else {
            return Err(Conflict { id: meta.id });
        };
        let body = body.clone();
        self.put(meta, body)
    }

    fn remove(&mut self, id: u64) -> Result<(), Conflict> {
        if let Some((meta, body)) = self.records.remove(&id) {
            self.unlink(&meta, &body);
        }
        Ok(())
    }

    fn back(&self) -> Result<i64, Conflict> {
        Ok(self.back)
    }

    fn set_back(&mut self, back: i64) -> Result<(), Conflict> {
        self.back = back;
        Ok(())
    }
}
