//! Pulling a stream from a peer (spec §8.4, fixed): pages of records after
//! the local tip, asking again until a page comes back empty (the original
//! never paged, O4; its client's rule, again while a page holds ≥ 100,
//! would stop early at a page a server cut short by size); `crdr` answers
//! fetched when a record orphans a local one; the first refused record
//! stops the pull and is reported.
//!
//! A pull always ends: every record of a page must come after the time
//! asked for (and after the record before it), so each page moves the
//! cursor or the pull stops with [`SyncError::NoProgress`]; and a pull
//! stops at its [`PullLimits`] of time and bytes. Its SQLite work, and the
//! wait for signature checks, run on the blocking pool over a connection
//! of its own: a pull never holds one of the runtime's threads.

use std::time::Duration;

use keyway_core::drayer::{ApplyError, Meta, RecordError, Repair, Verified, VerifyingKey};

use crate::blocking;
use crate::sqlite::Body;
use crate::stream::{Stream, StreamError};
use crate::verifiers::{Checking, Checks, Verifiers};

/// Records per page: the server's limit L; the client asks again while it
/// receives ≥ L.
pub const PAGE: usize = 100;

/// `crdr` answers fetched for one record before giving up on it.
const MAX_REPAIRS: usize = 16;

/// What one record counts against [`PullLimits::max_bytes`] beyond its
/// value, key and type: its signed fields and field names on the wire.
pub const RECORD_OVERHEAD: u64 = 256;

/// Where records come from: another stream file, or an HTTP peer.
pub trait Source {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Up to [`PAGE`] records modified after `t`, oldest first.
    fn modified_after(
        &mut self,
        t: i64,
    ) -> impl Future<Output = Result<Vec<(Meta, Body)>, Self::Error>> + Send;
    /// Starts fetching the page after `t` in the background, so the peer
    /// and the network work while this node applies the current page;
    /// `max_bytes` is what is left of the pull's byte budget, beyond which
    /// nothing more need be read ahead.
    fn prefetch(&mut self, _t: i64, _max_bytes: u64) {}
    /// The `n` most recently modified records, oldest first; `None` if the
    /// peer cannot say (the original's API has no such request).
    fn newest(
        &mut self,
        _n: usize,
    ) -> impl Future<Output = Result<Option<Vec<(Meta, Body)>>, Self::Error>> + Send {
        async { Ok(None) }
    }
    /// The record with the largest `prevchange` ≤ `pdest`, if any.
    fn crdr(
        &mut self,
        pdest: i64,
    ) -> impl Future<Output = Result<Option<Meta>, Self::Error>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError<E: std::error::Error + 'static> {
    #[error("peer: {0}")]
    Source(#[source] E),
    #[error("the peer cannot list its newest records (a partial mirror needs a Keyway server)")]
    Unsupported,
    #[error("{0}")]
    Local(#[source] StreamError),
    #[error("record {id} refused: {source}")]
    Refused {
        id: u64,
        #[source]
        source: StreamError,
    },
    /// The peer sent a record that is not after the one before it (or
    /// after the time asked for): a peer that does not move forward would
    /// be asked for ever.
    #[error(
        "the peer sent a record modified at {modified} where only records after {cursor} belong: \
         it repeats itself or does not follow the protocol"
    )]
    NoProgress { cursor: i64, modified: i64 },
    #[error(
        "the pull stopped at its time limit ({0:?}); what it applied is kept and the next pull goes on from there"
    )]
    TimeLimit(Duration),
    #[error(
        "the pull stopped at its limit of {0} bytes; what it applied is kept and the next pull goes on from there"
    )]
    ByteLimit(u64),
    #[error("the runtime shut down during the pull")]
    Interrupted,
}

/// What a pull did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    pub inserted: usize,
    pub repairs: usize,
}

/// Bounds on one pull, whatever the peer does. A pull that reaches one
/// keeps what it applied (each page is committed), so the next pull goes
/// on from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullLimits {
    /// The whole pull: requests, checks and SQLite work (default
    /// [`Self::DEFAULT_MAX_TIME`]).
    pub max_time: Duration,
    /// Records received: their values, keys and types, and
    /// [`RECORD_OVERHEAD`] each (default [`Self::DEFAULT_MAX_BYTES`]).
    pub max_bytes: u64,
}

impl PullLimits {
    /// 15 minutes: a LAN or a decent link moves gigabytes in that time.
    pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(15 * 60);
    /// 4 GiB.
    pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;
}

impl Default for PullLimits {
    fn default() -> Self {
        Self {
            max_time: Self::DEFAULT_MAX_TIME,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// Pulls everything `source` has after `stream`'s tip, within the default
/// [`PullLimits`].
pub async fn pull<S: Source>(
    stream: &mut Stream,
    source: &mut S,
) -> Result<Pulled, SyncError<S::Error>> {
    pull_with(stream, source, &PullLimits::default()).await
}

/// Pulls everything `source` has after `stream`'s tip, within `limits`.
/// `stream` stays borrowed while the pull writes to its file through a
/// connection of its own.
pub async fn pull_with<S: Source>(
    stream: &mut Stream,
    source: &mut S,
    limits: &PullLimits,
) -> Result<Pulled, SyncError<S::Error>> {
    within(limits, async {
        let mut store = Store::open(stream).await?;
        let mut bytes = Bytes::new(limits.max_bytes);
        pull_pages(&mut store, source, &mut bytes).await
    })
    .await
}

/// Runs `work` within `limits.max_time`.
async fn within<T, E: std::error::Error + 'static>(
    limits: &PullLimits,
    work: impl Future<Output = Result<T, SyncError<E>>>,
) -> Result<T, SyncError<E>> {
    tokio::time::timeout(limits.max_time, work)
        .await
        .unwrap_or(Err(SyncError::TimeLimit(limits.max_time)))
}

async fn pull_pages<S: Source>(
    store: &mut Store,
    source: &mut S,
    bytes: &mut Bytes,
) -> Result<Pulled, SyncError<S::Error>> {
    let mut pulled = Pulled::default();
    let key = store.public;
    let tip = store.run(|s| s.tip()).await?.map_err(SyncError::Local)?;
    // A pipeline: while a blocking thread applies page k, page k+1 is
    // verified on the other cores and page k+2 is on its way. Applying a
    // page moves the tip to its last record, so the next request is known
    // early. A page that cannot be taken (or a failed request) is reported
    // after the page before it is applied.
    let verifiers = Verifiers::new();
    let mut next = Some(
        fetch(source, tip, bytes)
            .await
            .map(|r| r.check(&verifiers, key)),
    );
    while let Some(current) = next.take() {
        let (received, checking) = current?;
        let Some(last) = received.page.last().map(|(m, _)| m.modified) else {
            if received.over_budget {
                return Err(SyncError::ByteLimit(bytes.max));
            }
            return Ok(pulled);
        };
        let page = received.page;
        let (records, refused) =
            off_thread(move || verified_prefix(page, checking.finish())).await?;
        if !received.over_budget {
            next = Some(
                fetch(source, last, bytes)
                    .await
                    .map(|r| r.check(&verifiers, key)),
            );
        }
        apply_page(store, source, records, &mut pulled).await?;
        if let Some((id, e)) = refused {
            return Err(SyncError::Refused {
                id,
                source: StreamError::Apply(ApplyError::Record(e)),
            });
        }
        if received.over_budget {
            return Err(SyncError::ByteLimit(bytes.max));
        }
    }
    Ok(pulled)
}

/// Records as a peer sent them.
type Page = Vec<(Meta, Body)>;

/// A page as taken: it moves the cursor, and it is cut where the byte
/// budget ran out.
struct Received {
    page: Page,
    over_budget: bool,
}

impl Received {
    /// Starts checking the page's signatures on the verifier threads.
    fn check(self, verifiers: &Verifiers, key: VerifyingKey) -> (Self, Checking) {
        let metas = self.page.iter().map(|(m, _)| *m).collect();
        let checking = verifiers.start(metas, key);
        (self, checking)
    }
}

/// The page after `cursor`, checked to move forward and cut to the budget;
/// starts reading the next one ahead.
async fn fetch<S: Source>(
    source: &mut S,
    cursor: i64,
    bytes: &mut Bytes,
) -> Result<Received, SyncError<S::Error>> {
    let mut page = source
        .modified_after(cursor)
        .await
        .map_err(SyncError::Source)?;
    moves_forward(cursor, &page)?;
    let fit = bytes.take(&page);
    let over_budget = fit < page.len();
    page.truncate(fit);
    if !over_budget && let Some((last, _)) = page.last() {
        source.prefetch(last.modified, bytes.left);
    }
    Ok(Received { page, over_budget })
}

/// Whether every record of `page` comes after `cursor` and after the
/// record before it, as `newRecords` promises (spec §8.2).
fn moves_forward<E: std::error::Error + 'static>(
    cursor: i64,
    page: &[(Meta, Body)],
) -> Result<(), SyncError<E>> {
    let mut after = cursor;
    for (meta, _) in page {
        if meta.modified <= after {
            return Err(SyncError::NoProgress {
                cursor: after,
                modified: meta.modified,
            });
        }
        after = meta.modified;
    }
    Ok(())
}

/// What is left of a pull's byte budget.
struct Bytes {
    left: u64,
    max: u64,
}

impl Bytes {
    fn new(max: u64) -> Self {
        Self { left: max, max }
    }

    /// How many of `records`, from the first, fit what is left; takes them.
    fn take(&mut self, records: &[(Meta, Body)]) -> usize {
        let mut fit = 0;
        for (_, body) in records {
            let size = [
                body.key.len(),
                body.kind.len(),
                body.value.as_ref().map_or(0, Vec::len),
            ]
            .into_iter()
            .fold(RECORD_OVERHEAD, |sum, n| {
                sum.saturating_add(u64::try_from(n).unwrap_or(u64::MAX))
            });
            let Some(left) = self.left.checked_sub(size) else {
                break;
            };
            self.left = left;
            fit += 1;
        }
        fit
    }
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

/// Applies verified records in order, fetching `crdr` answers as repairs
/// need them; one transaction per batch, on the store's thread.
async fn apply_page<S: Source>(
    store: &mut Store,
    source: &mut S,
    mut records: Vec<(Verified, Body)>,
    pulled: &mut Pulled,
) -> Result<(), SyncError<S::Error>> {
    let mut at = 0;
    let mut repairs: Vec<Repair> = Vec::new();
    while at < records.len() {
        let (back, repairs_back, batch) = store
            .run(move |s| {
                let batch = s.apply_batch(&records[at..], &repairs);
                (records, repairs, batch)
            })
            .await?;
        (records, repairs) = (back, repairs_back);
        let batch = batch.map_err(SyncError::Local)?;
        if batch.done > 0 {
            repairs.clear();
        }
        at += batch.done;
        pulled.inserted += batch.inserted;
        match batch.stopped {
            None => {}
            Some(StreamError::Apply(ApplyError::NeedsRepair { pdest, .. }))
                if repairs.len() < MAX_REPAIRS =>
            {
                let answer = source.crdr(pdest).await.map_err(SyncError::Source)?;
                repairs.push(Repair { pdest, answer });
                pulled.repairs += 1;
            }
            Some(e) => {
                let id = records.get(at).map_or(0, |(r, _)| r.meta().id);
                return Err(SyncError::Refused { id, source: e });
            }
        }
    }
    Ok(())
}

/// A pull's own connection to the stream file, used on the blocking pool
/// (the caller's connection stays borrowed, and cannot move there).
struct Store {
    stream: Option<Stream>,
    public: VerifyingKey,
}

impl Store {
    /// Opens the pull's connection to `stream`'s file. (Takes `&mut`: a
    /// shared borrow held across an await would make the pull `!Send`.)
    async fn open<E: std::error::Error + 'static>(
        stream: &mut Stream,
    ) -> Result<Self, SyncError<E>> {
        let reopen = stream.reopener().map_err(SyncError::Local)?;
        let stream = off_thread(reopen).await?.map_err(SyncError::Local)?;
        Ok(Self {
            public: *stream.public_key(),
            stream: Some(stream),
        })
    }

    /// Runs `f` on the connection, on a blocking thread.
    async fn run<T: Send + 'static, E: std::error::Error + 'static>(
        &mut self,
        f: impl FnOnce(&mut Stream) -> T + Send + 'static,
    ) -> Result<T, SyncError<E>> {
        let mut stream = self.stream.take().ok_or(SyncError::Interrupted)?;
        let (stream, out) = off_thread(move || {
            let out = f(&mut stream);
            (stream, out)
        })
        .await?;
        self.stream = Some(stream);
        Ok(out)
    }
}

/// Runs `f` on the blocking pool (a panic there goes on here).
async fn off_thread<T: Send + 'static, E: std::error::Error + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError<E>> {
    blocking::run(f).await.map_err(|_| SyncError::Interrupted)
}

/// Keeps `stream` as a partial mirror of `source` holding its `keep` most
/// recent records (spec D8), within the default [`PullLimits`].
pub async fn pull_newest<S: Source>(
    stream: &mut Stream,
    source: &mut S,
    keep: usize,
) -> Result<Pulled, SyncError<S::Error>> {
    pull_newest_with(stream, source, keep, &PullLimits::default()).await
}

/// Keeps `stream` as a partial mirror of `source` holding its `keep` most
/// recent records (spec D8): starts from the peer's newest records when
/// empty, pulls what is new, lets go of the oldest, and takes a silent
/// patch of the oldest record held. Within `limits`.
pub async fn pull_newest_with<S: Source>(
    stream: &mut Stream,
    source: &mut S,
    keep: usize,
    limits: &PullLimits,
) -> Result<Pulled, SyncError<S::Error>> {
    let keep = keep.max(1);
    let local = SyncError::Local;
    within(limits, async {
        let mut store = Store::open(stream).await?;
        let mut bytes = Bytes::new(limits.max_bytes);
        let mut started = 0;
        if store.run(|s| s.tip()).await?.map_err(local)? == 0 {
            let newest = source
                .newest(keep)
                .await
                .map_err(SyncError::Source)?
                .ok_or(SyncError::Unsupported)?;
            if bytes.take(&newest) < newest.len() {
                return Err(SyncError::ByteLimit(bytes.max));
            }
            started = newest.len();
            store
                .run(move |s| s.start_partial(&newest))
                .await?
                .map_err(local)?;
        }
        let mut pulled = pull_pages(&mut store, source, &mut bytes).await?;
        pulled.inserted += started;
        let back = store
            .run(move |s| {
                s.keep_newest(keep)?;
                s.back_pointer()
            })
            .await?
            .map_err(local)?;
        if back != 0
            && let Some(patch) = source.crdr(back).await.map_err(SyncError::Source)?
        {
            store
                .run(move |s| s.refresh_oldest(&patch))
                .await?
                .map_err(local)?;
        }
        Ok(pulled)
    })
    .await
}

/// Another stream file in this process as a source (borrowed mutably so
/// the pull stays `Send`: a connection is not `Sync`).
#[derive(Debug)]
pub struct Local<'a>(pub &'a mut Stream);

impl Source for Local<'_> {
    type Error = StreamError;

    async fn newest(&mut self, n: usize) -> Result<Option<Vec<(Meta, Body)>>, StreamError> {
        self.0.newest_records(n).map(Some)
    }

    async fn modified_after(&mut self, t: i64) -> Result<Vec<(Meta, Body)>, StreamError> {
        self.0.modified_after(t, PAGE)
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, StreamError> {
        Ok(self.0.crdr(pdest)?.map(|(m, _)| m))
    }
}
