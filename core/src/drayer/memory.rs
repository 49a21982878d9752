//! A chain in memory (feature `alloc`): for firmware with a heap, tests
//! and property checks. Indexed like the SQLite store, and as strict:
//! `modified` and `prevchange` are unique, as the original schema's
//! UNIQUE constraints make them.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::apply::{Applied, ApplyError, Mender, Repair, Verified, apply, apply_verified};
use super::chain::Chain;
use super::pull::{
    Event, Mode, PageRecord, Pull, PullError, PullLimits, Request, Stop, record_size,
};
use super::record::Meta;
use crate::time::Instant;
use ed25519_dalek::VerifyingKey;

pub use super::pull::{MAX_REPAIRS, PAGE};

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

    /// Mirrors `source` in memory with the pull every face uses
    /// ([`Pull`]): pages after the local tip until an empty one, `crdr`
    /// answers fetched when a repair is needed, stopping at the first
    /// refused record. Returns the records inserted and the repairs fetched.
    pub fn sync_from(
        &mut self,
        source: &Self,
        stream: &VerifyingKey,
    ) -> Result<(usize, usize), ApplyError<Conflict>> {
        self.pull_from(source, stream, Mode::Whole)
    }

    /// A partial mirror of `source` (spec D8) by the same pull: on first
    /// use it starts from `source`'s newest `keep` records (its back
    /// pointer is the oldest one's predecessor), then syncs like any
    /// mirror, lets go of its oldest records beyond `keep` (at least 1)
    /// and takes a silent patch of the oldest record held.
    pub fn sync_newest_from(
        &mut self,
        source: &Self,
        stream: &VerifyingKey,
        keep: usize,
    ) -> Result<(usize, usize), ApplyError<Conflict>> {
        self.pull_from(source, stream, Mode::Newest { keep })
    }

    /// Drives a [`Pull`] with `source` as the peer and this chain as the
    /// store. No clock: a source in memory gets [`PullLimits::NONE`].
    fn pull_from(
        &mut self,
        source: &Self,
        stream: &VerifyingKey,
        mode: Mode,
    ) -> Result<(usize, usize), ApplyError<Conflict>> {
        let now = Instant::ZERO;
        let tip = self.mtip().map_err(ApplyError::Store)?;
        let mut pull = Pull::new(now, tip, mode, PullLimits::NONE);
        // The page being applied, and the answer to the next request
        // (asked while the page is applied, as the shells do).
        let mut page: Vec<(Verified, MemoryBody)> = Vec::new();
        let mut newest: Vec<(Meta, MemoryBody)> = Vec::new();
        let mut refused: Option<ApplyError<Conflict>> = None;
        loop {
            while let Some(event) = pull.poll_event() {
                match event {
                    Event::StartPartial { .. } => {
                        self.start_partial(&newest, stream)?;
                        let tip = self.mtip().map_err(ApplyError::Store)?;
                        let _ = pull.handle_started(now, tip);
                    }
                    Event::Apply { from, to } => {
                        let (done, inserted, stop) = self.apply_range(
                            page.get(from..to).unwrap_or(&[]),
                            stream,
                            pull.repairs(),
                        );
                        let stop = stop.map(|(id, e)| {
                            let stop = match e {
                                ApplyError::NeedsRepair { pdest, .. } => {
                                    Stop::NeedsRepair { id, pdest }
                                }
                                _ => Stop::Refused { id },
                            };
                            refused = Some(e);
                            stop
                        });
                        let _ = pull.handle_applied(now, done, inserted, stop);
                    }
                    Event::KeepNewest { keep } => {
                        self.keep_newest(keep);
                        let _ = pull.handle_kept(now, self.back);
                    }
                    Event::RefreshOldest(patch) => self.refresh_oldest(&patch, stream)?,
                    Event::Done(pulled) => return Ok((pulled.inserted, pulled.repairs)),
                    Event::Failed(e) => return Err(pull_error(e, refused)),
                }
            }
            let Some(transmit) = pull.poll_transmit(now, &mut []) else {
                // Neither work nor a request: the pull waits for nothing
                // this driver holds (it cannot happen; end rather than spin).
                return Ok((0, 0));
            };
            match transmit.request {
                Request::Page { after } => {
                    let received = source.modified_after(after, PAGE);
                    let sizes = received.iter().map(page_record);
                    let taken = pull.handle_page(now, sizes).unwrap_or(0);
                    page.clear();
                    let mut bad = None;
                    for (meta, body) in received.into_iter().take(taken) {
                        match Verified::check(&meta, stream) {
                            Ok(verified) => page.push((verified, body)),
                            Err(e) => {
                                bad = Some((meta.id, e));
                                break;
                            }
                        }
                    }
                    if taken > 0 {
                        let _ = pull.handle_verified(now, page.len(), bad);
                    }
                }
                Request::Newest { n } => {
                    newest = source
                        .in_mchain_order()
                        .rev()
                        .take(n)
                        .map(|(m, b)| (*m, b.clone()))
                        .collect();
                    newest.reverse();
                    let _ = pull.handle_newest(now, Some(newest.iter().map(page_record)));
                }
                Request::Crdr { pdest } => {
                    let _ = pull.handle_crdr(now, source.crdr(pdest).map(|(m, _)| m));
                }
            }
        }
    }

    /// The tip's `modified` (0 when empty).
    fn mtip(&self) -> Result<i64, Conflict> {
        Ok(self.tip()?.map_or(0, |m| m.modified))
    }

    /// Applies verified records in order, each in its own transaction,
    /// up to the first refused one: how many applied, how many were new,
    /// and the refused record's id and error.
    fn apply_range(
        &mut self,
        records: &[(Verified, MemoryBody)],
        stream: &VerifyingKey,
        repairs: &[Repair],
    ) -> (usize, usize, Option<(u64, ApplyError<Conflict>)>) {
        let (mut done, mut inserted) = (0, 0);
        for (record, body) in records {
            let result = self.transaction(|chain| {
                apply_verified(
                    chain,
                    stream,
                    record,
                    body.clone(),
                    body.value.as_deref(),
                    &Mender::Mirror(repairs),
                )
            });
            match result {
                Ok(applied) => {
                    done += 1;
                    inserted += usize::from(applied == Applied::Inserted);
                }
                Err(e) => return (done, inserted, Some((record.meta().id, e))),
            }
        }
        (done, inserted, None)
    }

    /// Starts an empty partial mirror from a source's newest records,
    /// oldest first: the oldest one's predecessor becomes the back pointer.
    fn start_partial(
        &mut self,
        newest: &[(Meta, MemoryBody)],
        stream: &VerifyingKey,
    ) -> Result<(), ApplyError<Conflict>> {
        self.transaction(|c| {
            if let Some((oldest, _)) = newest.first() {
                c.back = oldest.prevchange;
            }
            for (meta, body) in newest {
                apply(
                    c,
                    stream,
                    meta,
                    body.clone(),
                    body.value.as_deref(),
                    &Mender::Mirror(&[]),
                )?;
            }
            Ok(())
        })
    }

    /// Takes `patch` (the owner's answer to `crdr/<back>`) if it is the
    /// oldest record held, re-pointed further back.
    fn refresh_oldest(
        &mut self,
        patch: &Meta,
        stream: &VerifyingKey,
    ) -> Result<(), ApplyError<Conflict>> {
        let Some(oldest) = self.in_mchain_order().next().map(|(m, _)| *m) else {
            return Ok(());
        };
        if !patch.repoints(&oldest) {
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

/// What the pull judges of a record.
fn page_record((meta, body): &(Meta, MemoryBody)) -> PageRecord {
    PageRecord {
        modified: meta.modified,
        size: record_size(
            body.key.len(),
            body.kind.len(),
            body.value.as_ref().map_or(0, Vec::len),
        ),
    }
}

/// A pull's end as [`MemoryChain::sync_from`] has always reported it: the
/// store's error for a refused record, the signature's for a bad one.
fn pull_error(e: PullError, refused: Option<ApplyError<Conflict>>) -> ApplyError<Conflict> {
    match (e, refused) {
        (
            PullError::Refused {
                signature: Some(e), ..
            },
            _,
        ) => ApplyError::Record(e),
        (PullError::Refused { .. }, Some(e)) => e,
        // A source that does not move forward sent a record at or before
        // the tip asked after.
        (PullError::NoProgress { cursor, modified }, _) => ApplyError::BeforeTip {
            modified,
            tip: cursor,
        },
        // Not reached with no limits and a source that can list its
        // newest; reported as the nearest store error.
        (PullError::Refused { id, .. }, None) => ApplyError::Store(Conflict { id }),
        (_, _) => ApplyError::Store(Conflict { id: 0 }),
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
