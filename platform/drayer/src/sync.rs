//! Pulling a stream from a peer: the I/O around the core's pull machine
//! ([`keyway_core::drayer::pull`], where every rule lives: paging to an
//! empty page, the byte budget, `NoProgress`, signatures, `crdr` repairs,
//! partial mirrors, the deadline). Here: asking the [`Source`] (HTTP or
//! another stream file), checking signatures on worker threads, and the
//! SQLite work on the blocking pool over a connection of the pull's own,
//! so a pull never holds one of the runtime's threads.

mod driver;
mod store;

use std::time::Duration;

use keyway_core::drayer::Meta;
use keyway_core::drayer::pull::Mode;
pub use keyway_core::drayer::pull::{PAGE, PullLimits, Pulled, RECORD_OVERHEAD};

use crate::sqlite::Body;
use crate::stream::{Stream, StreamError};

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
    /// The peer kept serving records this stream could not follow (it
    /// was written while it was read): the pull asked again after the
    /// tip `restarts` times before giving up. Retryable.
    #[error(
        "the peer kept changing while it was read (asked again {restarts} times); \
         what the pull applied is kept and the next pull goes on from there"
    )]
    Unsettled { restarts: u32 },
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
    driver::run(stream, source, Mode::Whole, limits).await
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
    driver::run(stream, source, Mode::Newest { keep }, limits).await
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
