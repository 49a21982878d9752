//! Pulling a stream from a peer (spec §8.4, fixed): pages of records after
//! the local tip, asking again until a page comes back empty (the original
//! never paged, O4; its client's rule, again while a page holds ≥ 100,
//! would stop early at a page a server cut short by size); each record in its own transaction; `crdr` answers fetched when a
//! record orphans a local one; the first refused record stops the pull
//! and is reported.

use keyway_core::drayer::{ApplyError, Meta, Repair, Verified, VerifyingKey};

use crate::sqlite::Body;
use crate::stream::{Stream, StreamError};
use crate::verifiers::{Checking, Verifiers};

/// Records per page: the server's limit L; the client asks again while it
/// receives ≥ L.
pub const PAGE: usize = 100;

/// `crdr` answers fetched for one record before giving up on it.
const MAX_REPAIRS: usize = 16;

/// Where records come from: another stream file, or an HTTP peer.
pub trait Source {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Up to [`PAGE`] records modified after `t`, oldest first.
    fn modified_after(
        &mut self,
        t: i64,
    ) -> impl Future<Output = Result<Vec<(Meta, Body)>, Self::Error>> + Send;
    /// Starts fetching the page after `t` in the background, so the peer
    /// and the network work while this node applies the current page.
    fn prefetch(&mut self, _t: i64) {}
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
}

/// What a pull did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    pub inserted: usize,
    pub repairs: usize,
}

/// Pulls everything `source` has after `stream`'s tip.
pub async fn pull<S: Source>(
    stream: &mut Stream,
    source: &mut S,
) -> Result<Pulled, SyncError<S::Error>> {
    let mut pulled = Pulled::default();
    let key = *stream.public_key();
    let tip = stream
        .tip()
        .map_err(|source| SyncError::Refused { id: 0, source })?;
    let first = source
        .modified_after(tip)
        .await
        .map_err(SyncError::Source)?;
    // A pipeline: while this thread applies page k, page k+1 is verified
    // on the other cores and page k+2 is on its way. Applying a page moves
    // the tip to its last record, so the next request is known early.
    let prefetch = |source: &mut S, page: &Page| {
        if let Some((last, _)) = page.last() {
            source.prefetch(last.modified);
        }
    };
    prefetch(source, &first);
    let verifiers = Verifiers::new();
    let mut next = Some(check(&verifiers, first, key));
    while let Some((page, checking)) = next.take() {
        let checked = checking.finish();
        if let Some((last, _)) = page.last() {
            let following = source
                .modified_after(last.modified)
                .await
                .map_err(SyncError::Source)?;
            prefetch(source, &following);
            next = Some(check(&verifiers, following, key));
        }
        // The records up to the first bad signature, which ends the pull
        // once they are applied.
        let mut records: Vec<(Verified, Body)> = Vec::with_capacity(page.len());
        let mut refused = None;
        for ((meta, body), check) in page.into_iter().zip(checked) {
            match check {
                Ok(verified) => records.push((verified, body)),
                Err(e) => {
                    refused = Some((meta.id, e));
                    break;
                }
            }
        }
        let mut at = 0;
        let mut repairs: Vec<Repair> = Vec::new();
        while at < records.len() {
            let batch = stream
                .apply_batch(&records[at..], &repairs)
                .map_err(|source| SyncError::Refused { id: 0, source })?;
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
                    return Err(SyncError::Refused {
                        id: records[at].0.meta().id,
                        source: e,
                    });
                }
            }
        }
        if let Some((id, e)) = refused {
            return Err(SyncError::Refused {
                id,
                source: StreamError::Apply(ApplyError::Record(e)),
            });
        }
    }
    Ok(pulled)
}

/// Records as a peer sent them.
type Page = Vec<(Meta, Body)>;

/// Starts checking `page`'s signatures on the verifier threads.
fn check(verifiers: &Verifiers, page: Page, key: VerifyingKey) -> (Page, Checking) {
    let metas = page.iter().map(|(m, _)| *m).collect();
    let checking = verifiers.start(metas, key);
    (page, checking)
}

/// Keeps `stream` as a partial mirror of `source` holding its `keep` most
/// recent records (spec D8): starts from the peer's newest records when
/// empty, pulls what is new, lets go of the oldest, and takes a silent
/// patch of the oldest record held.
pub async fn pull_newest<S: Source>(
    stream: &mut Stream,
    source: &mut S,
    keep: usize,
) -> Result<Pulled, SyncError<S::Error>> {
    let keep = keep.max(1);
    let local = SyncError::Local;
    let mut started = 0;
    if stream.tip().map_err(local)? == 0 {
        let newest = source
            .newest(keep)
            .await
            .map_err(SyncError::Source)?
            .ok_or(SyncError::Unsupported)?;
        started = newest.len();
        stream.start_partial(&newest).map_err(local)?;
    }
    let mut pulled = pull(stream, source).await?;
    pulled.inserted += started;
    stream.keep_newest(keep).map_err(local)?;
    let back = stream.back_pointer().map_err(local)?;
    if back != 0
        && let Some(patch) = source.crdr(back).await.map_err(SyncError::Source)?
    {
        stream.refresh_oldest(&patch).map_err(local)?;
    }
    Ok(pulled)
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
