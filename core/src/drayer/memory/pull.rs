//! The in-memory chain as a shell of the pull machine: the source is
//! another chain in memory, the store is this one, and there is no clock
//! (a source in the same process gets `PullLimits::NONE`).

use alloc::vec::Vec;

use super::{Conflict, MemoryBody, MemoryChain, PAGE};
use crate::drayer::apply::{Applied, ApplyError, Mender, Repair, Verified, apply, apply_verified};
use crate::drayer::chain::Chain;
use crate::drayer::pull::{Event, Mode, PageRecord, Pull, PullError, PullLimits, Request, Stop};
use crate::drayer::record::Meta;
use crate::time::Instant;
use ed25519_dalek::VerifyingKey;

impl MemoryChain {
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
                        let tip = self.mtip().map_err(ApplyError::Store)?;
                        let stop = stop.map(|(id, e)| {
                            let stop = match e {
                                ApplyError::NeedsRepair { pdest, .. } => {
                                    Stop::NeedsRepair { id, pdest }
                                }
                                ApplyError::Gap { .. } => Stop::Behind { id, tip },
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
}

/// What the pull judges of a record.
fn page_record((meta, body): &(Meta, MemoryBody)) -> PageRecord {
    PageRecord::new(meta, &body.key, &body.kind, body.value.as_deref())
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
        // A source that kept changing: the last record it could not follow.
        (PullError::Refused { .. } | PullError::Unsettled { .. }, Some(e)) => e,
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
