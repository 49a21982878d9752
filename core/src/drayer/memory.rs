//! A chain in memory (feature `alloc`): for firmware with a heap, tests
//! and property checks. Indexed like the SQLite store, and as strict:
//! `modified` and `prevchange` are unique, as the original schema's
//! UNIQUE constraints make them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::apply::{Applied, ApplyError, Mender, Repair, apply};
use super::chain::Chain;
use super::record::Meta;
use ed25519_dalek::VerifyingKey;

/// Records per `newRecords` page (spec O4: the original never applied it).
pub const PAGE: usize = 100;

/// Repairs fetched for one record before giving up.
pub const MAX_REPAIRS: usize = 16;

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

    /// Mirrors `source` in memory the way the HTTP client does: pages of
    /// [`PAGE`] records after the local tip (again while a page is full),
    /// each record in its own transaction, fetching `crdr` answers when a
    /// repair is needed. Stops at the first refused record. Returns the
    /// records inserted and the repairs fetched.
    pub fn sync_from(
        &mut self,
        source: &Self,
        stream: &VerifyingKey,
    ) -> Result<(usize, usize), ApplyError<Conflict>> {
        let (mut inserted, mut fetched) = (0, 0);
        loop {
            let tip = self
                .tip()
                .map_err(ApplyError::Store)?
                .map_or(0, |m| m.modified);
            let page = source.modified_after(tip, PAGE);
            for (meta, body) in &page {
                let mut repairs: Vec<Repair> = Vec::new();
                loop {
                    let result = self.transaction(|chain| {
                        apply(
                            chain,
                            stream,
                            meta,
                            body.clone(),
                            body.value.as_deref(),
                            &Mender::Mirror(&repairs),
                        )
                    });
                    match result {
                        Ok(Applied::Inserted) => inserted += 1,
                        Ok(Applied::Duplicate) => {}
                        Err(ApplyError::NeedsRepair { pdest, .. })
                            if repairs.len() < MAX_REPAIRS =>
                        {
                            let answer = source.crdr(pdest).map(|(m, _)| m);
                            repairs.push(Repair { pdest, answer });
                            fetched += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                    break;
                }
            }
            // Each page of a chain in memory comes after the tip and moves
            // it; were one ever not to, asking again would never end.
            let moved = self
                .tip()
                .map_err(ApplyError::Store)?
                .is_some_and(|m| m.modified > tip);
            if page.len() < PAGE || !moved {
                return Ok((inserted, fetched));
            }
        }
    }

    /// A partial mirror of `source` (spec D8): on first use it starts from
    /// `source`'s newest `keep` records (its back pointer is the oldest
    /// one's predecessor), then syncs like any mirror and lets go of its
    /// oldest records beyond `keep`.
    pub fn sync_newest_from(
        &mut self,
        source: &Self,
        stream: &VerifyingKey,
        keep: usize,
    ) -> Result<(usize, usize), ApplyError<Conflict>> {
        if self.is_empty() && keep > 0 {
            let newest: Vec<(Meta, MemoryBody)> = source
                .in_mchain_order()
                .rev()
                .take(keep)
                .map(|(m, b)| (*m, b.clone()))
                .collect();
            if let Some((oldest, _)) = newest.last() {
                self.back = oldest.prevchange;
            }
            for (meta, body) in newest.into_iter().rev() {
                let value = body.value.clone();
                self.transaction(|c| {
                    apply(
                        c,
                        stream,
                        &meta,
                        body,
                        value.as_deref(),
                        &Mender::Mirror(&[]),
                    )
                })?;
            }
        }
        let pulled = self.sync_from(source, stream)?;
        self.keep_newest(keep);
        // A silent patch of the oldest record held (its predecessor, not
        // held, was deleted or moved) shows no orphan here: ask for it.
        let oldest = self.in_mchain_order().next().map(|(m, _)| *m);
        if let Some(oldest) = oldest
            && let Some((patch, _)) = source.crdr(self.back)
        {
            self.refresh_oldest(&oldest, &patch, stream)?;
        }
        Ok(pulled)
    }

    /// Takes `patch` (the owner's answer to `crdr/<back>`) if it is the
    /// oldest record held, re-pointed further back.
    fn refresh_oldest(
        &mut self,
        oldest: &Meta,
        patch: &Meta,
        stream: &VerifyingKey,
    ) -> Result<(), ApplyError<Conflict>> {
        if !patch.repoints(oldest) {
            return Ok(());
        }
        patch.verify(stream)?;
        self.set_meta(patch).map_err(ApplyError::Store)?;
        self.back = patch.prevchange;
        Ok(())
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
