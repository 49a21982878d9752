//! The loop that drives one [`Pull`]: it makes the requests the machine
//! emits, feeds it the answers and does the store work it asks for.
//!
//! A pipeline: while a blocking thread applies page k, page k+1 is
//! checked on the verifier threads and page k+2 is on its way (the
//! machine asks for the next page as soon as it takes one; the source
//! reads ahead). A page that cannot be taken, or a failed request, is
//! reported after the page before it is applied.

use keyway_core::drayer::pull::{
    Event, Mode, PageRecord, Pull, PullError, PullLimits, Pulled, Request, Stop,
};
use keyway_core::drayer::{ApplyError, Meta, RecordError, Repair, Verified};
use keyway_core::time::Instant;

use super::store::{Store, off_thread};
use super::{Source, SyncError};
use crate::sqlite::Body;
use crate::stream::{Stream, StreamError};
use crate::verifiers::{Checking, Checks, Verifiers};

/// Records as a peer sent them.
type Page = Vec<(Meta, Body)>;

/// A page received and being checked, held until the pull takes it.
struct Received {
    page: Page,
    checking: Checking,
}

/// Runs a pull of `mode` from `source` into `stream` within `limits`.
pub(super) async fn run<S: Source>(
    stream: &mut Stream,
    source: &mut S,
    mode: Mode,
    limits: &PullLimits,
) -> Result<Pulled, SyncError<S::Error>> {
    let origin = tokio::time::Instant::now();
    // The machine's clock: microseconds since the pull started (tokio's
    // clock, so paused-time tests drive it too).
    let now = move || {
        Instant::from_micros(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX))
    };
    // The deadline is the machine's; the whole pull, opening the
    // connection included, runs within it.
    let deadline = Pull::new(Instant::ZERO, 0, mode, *limits)
        .poll_timeout()
        // Beyond what the clock can hold (a limit of centuries): no timer.
        .and_then(|d| origin.checked_add(std::time::Duration::from_micros(d.as_micros())));
    let work = async {
        let mut store = Store::open(stream).await?;
        let tip = store.run(|s| s.tip()).await?.map_err(SyncError::Local)?;
        // Started at the origin: opening the file counts against the
        // pull's time, and the machine's deadline is the timer's.
        let pull = Pull::new(Instant::ZERO, tip, mode, *limits);
        Driver {
            pull,
            store,
            now: &now,
            verifiers: Verifiers::new(),
            page: Vec::new(),
            newest: Vec::new(),
            held: None,
            refusal: None,
        }
        .run(source)
        .await
    };
    match deadline {
        Some(at) => tokio::time::timeout_at(at, work)
            .await
            .unwrap_or(Err(SyncError::TimeLimit(limits.max_time))),
        None => work.await,
    }
}

struct Driver<'n, S: Source, N: Fn() -> Instant> {
    pull: Pull,
    store: Store,
    now: &'n N,
    verifiers: Verifiers,
    /// The page being applied, as verified.
    page: Vec<(Verified, Body)>,
    /// The `newest` answer a partial mirror starts from.
    newest: Page,
    /// The answer to the page request made ahead.
    held: Option<Result<Received, S::Error>>,
    /// The store's reason for the last record it refused.
    refusal: Option<StreamError>,
}

impl<S: Source, N: Fn() -> Instant> Driver<'_, S, N> {
    async fn run(mut self, source: &mut S) -> Result<Pulled, SyncError<S::Error>> {
        loop {
            // Requests first: the next page is on its way while this one
            // is applied.
            if let Some(transmit) = self.pull.poll_transmit((self.now)(), &mut []) {
                self.request(source, transmit.request).await?;
                continue;
            }
            if let Some(event) = self.pull.poll_event() {
                if let Some(end) = self.event(event).await? {
                    return end;
                }
                continue;
            }
            let Some(held) = self.held.take() else {
                // The machine waits on nothing this loop holds: a bug, not
                // a peer's doing; end rather than spin.
                return Err(SyncError::Interrupted);
            };
            self.take_page(source, held.map_err(SyncError::Source)?)
                .await?;
        }
    }

    async fn request(
        &mut self,
        source: &mut S,
        request: Request,
    ) -> Result<(), SyncError<S::Error>> {
        let now = self.now;
        match request {
            Request::Page { after } => {
                let received = source.modified_after(after).await.map(|page| {
                    let metas = page.iter().map(|(m, _)| *m).collect();
                    let checking = self.verifiers.start(metas, self.store.public);
                    Received { page, checking }
                });
                self.held = Some(received);
            }
            Request::Newest { n } => {
                let newest = source.newest(n).await.map_err(SyncError::Source)?;
                let sizes = newest.as_ref().map(|n| n.iter().map(page_record));
                out_of_turn(self.pull.handle_newest(now(), sizes))?;
                self.newest = newest.unwrap_or_default();
            }
            Request::Crdr { pdest } => {
                let answer = source.crdr(pdest).await.map_err(SyncError::Source)?;
                out_of_turn(self.pull.handle_crdr(now(), answer))?;
            }
        }
        Ok(())
    }

    /// Gives the pull a page it asked for; starts reading the next one
    /// ahead if it took all of this one.
    async fn take_page(
        &mut self,
        source: &mut S,
        received: Received,
    ) -> Result<(), SyncError<S::Error>> {
        let Received { mut page, checking } = received;
        let now = self.now;
        let taken = out_of_turn(self.pull.handle_page(now(), page.iter().map(page_record)))?;
        if taken == 0 {
            return Ok(());
        }
        // Taken whole, the budget had room: the machine has asked for the
        // next page, and the source may read on from there.
        let whole = taken == page.len();
        page.truncate(taken);
        if let Some((last, _)) = page.last().filter(|_| whole) {
            source.prefetch(last.modified, self.pull.bytes_left());
        }
        let (records, bad) = off_thread(move || verified_prefix(page, checking.finish())).await?;
        self.page = records;
        out_of_turn(self.pull.handle_verified(now(), self.page.len(), bad))
    }

    /// Does the store work of `event`; `Some` when the pull has ended.
    async fn event(
        &mut self,
        event: Event,
    ) -> Result<Option<Result<Pulled, SyncError<S::Error>>>, SyncError<S::Error>> {
        let now = self.now;
        let local = SyncError::Local;
        match event {
            Event::StartPartial { .. } => {
                let newest = std::mem::take(&mut self.newest);
                let tip = self
                    .store
                    .run(move |s| {
                        s.start_partial(&newest)?;
                        s.tip()
                    })
                    .await?
                    .map_err(local)?;
                out_of_turn(self.pull.handle_started(now(), tip))?;
            }
            Event::Apply { from, to } => self.apply(from, to).await?,
            Event::KeepNewest { keep } => {
                let back = self
                    .store
                    .run(move |s| {
                        s.keep_newest(keep)?;
                        s.back_pointer()
                    })
                    .await?
                    .map_err(local)?;
                out_of_turn(self.pull.handle_kept(now(), back))?;
            }
            Event::RefreshOldest(patch) => {
                self.store
                    .run(move |s| s.refresh_oldest(&patch))
                    .await?
                    .map_err(local)?;
            }
            Event::Done(pulled) => return Ok(Some(Ok(pulled))),
            Event::Failed(e) => return Ok(Some(Err(self.error(e)))),
        }
        Ok(None)
    }

    /// Applies records `from..to` of the page in one transaction.
    async fn apply(&mut self, from: usize, to: usize) -> Result<(), SyncError<S::Error>> {
        let records = std::mem::take(&mut self.page);
        let repairs: Vec<Repair> = self.pull.repairs().to_vec();
        let (records, batch) = self
            .store
            .run(move |s| {
                let batch = s.apply_batch(records.get(from..to).unwrap_or(&[]), &repairs);
                (records, batch)
            })
            .await?;
        let batch = batch.map_err(SyncError::Local)?;
        let id = records
            .get(from + batch.done)
            .map_or(0, |(r, _)| r.meta().id);
        self.page = records;
        let behind = matches!(
            batch.stopped,
            Some(StreamError::Apply(ApplyError::Gap { .. }))
        );
        // The machine asks again after the tip: what the batch applied.
        let tip = if behind {
            self.store
                .run(|s| s.tip())
                .await?
                .map_err(SyncError::Local)?
        } else {
            0
        };
        let stop = batch.stopped.map(|e| {
            let stop = match &e {
                StreamError::Apply(ApplyError::NeedsRepair { pdest, .. }) => {
                    Stop::NeedsRepair { id, pdest: *pdest }
                }
                StreamError::Apply(ApplyError::Gap { .. }) => Stop::Behind { id, tip },
                _ => Stop::Refused { id },
            };
            self.refusal = Some(e);
            stop
        });
        out_of_turn(
            self.pull
                .handle_applied((self.now)(), batch.done, batch.inserted, stop),
        )
    }

    /// The machine's reason as this crate has always reported it.
    fn error(&mut self, e: PullError) -> SyncError<S::Error> {
        match e {
            PullError::Unsupported => SyncError::Unsupported,
            PullError::Refused {
                id,
                signature: Some(e),
            } => SyncError::Refused {
                id,
                source: StreamError::Apply(ApplyError::Record(e)),
            },
            PullError::Refused {
                id,
                signature: None,
            } => SyncError::Refused {
                id,
                source: self
                    .refusal
                    .take()
                    .unwrap_or_else(|| StreamError::Record("not verified".into())),
            },
            PullError::NoProgress { cursor, modified } => {
                SyncError::NoProgress { cursor, modified }
            }
            PullError::Unsettled { restarts } => SyncError::Unsettled { restarts },
            PullError::TimeLimit(d) => SyncError::TimeLimit(d),
            PullError::ByteLimit(n) => SyncError::ByteLimit(n),
        }
    }
}

/// What the pull judges of a record.
fn page_record((meta, body): &(Meta, Body)) -> PageRecord {
    PageRecord::new(meta, &body.key, &body.kind, body.value.as_deref())
}

/// An input the machine was not waiting for: this loop's bug.
fn out_of_turn<T, E: std::error::Error + 'static>(
    r: Result<T, keyway_core::drayer::pull::OutOfTurn>,
) -> Result<T, SyncError<E>> {
    r.map_err(|_| SyncError::Interrupted)
}

/// The record that failed its signature check: its id and why.
type Unverified = (u64, RecordError);

/// The records of `page` up to the first bad signature, and that one.
fn verified_prefix(page: Page, checks: Checks) -> (Vec<(Verified, Body)>, Option<Unverified>) {
    let mut records = Vec::with_capacity(page.len());
    for ((meta, body), check) in page.into_iter().zip(checks) {
        match check {
            Ok(verified) => records.push((verified, body)),
            Err(e) => return (records, Some((meta.id, e))),
        }
    }
    (records, None)
}
