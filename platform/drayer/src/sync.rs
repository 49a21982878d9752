//! Pulling a stream from a peer (spec §8.4, fixed): pages of records after
//! the local tip, again while a page is full (the original never paged:
//! O4); each record in its own transaction; `crdr` answers fetched when a
//! record orphans a local one; the first refused record stops the pull
//! and is reported.

use keyway_core::drayer::{Applied, ApplyError, Meta, Repair};

use crate::sqlite::Body;
use crate::stream::{Stream, StreamError};

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
    loop {
        let tip = stream
            .tip()
            .map_err(|source| SyncError::Refused { id: 0, source })?;
        let page = source
            .modified_after(tip)
            .await
            .map_err(SyncError::Source)?;
        let full = page.len() >= PAGE;
        for (meta, body) in page {
            let mut repairs: Vec<Repair> = Vec::new();
            loop {
                match stream.apply_received(&meta, body.clone(), &repairs) {
                    Ok(Applied::Inserted) => pulled.inserted += 1,
                    Ok(Applied::Duplicate) => {}
                    Err(StreamError::Apply(ApplyError::NeedsRepair { pdest, .. }))
                        if repairs.len() < MAX_REPAIRS =>
                    {
                        let answer = source.crdr(pdest).await.map_err(SyncError::Source)?;
                        repairs.push(Repair { pdest, answer });
                        pulled.repairs += 1;
                        continue;
                    }
                    Err(source) => {
                        return Err(SyncError::Refused {
                            id: meta.id,
                            source,
                        });
                    }
                }
                break;
            }
        }
        if !full {
            return Ok(pulled);
        }
    }
}

/// Another stream file in this process as a source (borrowed mutably so
/// the pull stays `Send`: a connection is not `Sync`).
#[derive(Debug)]
pub struct Local<'a>(pub &'a mut Stream);

impl Source for Local<'_> {
    type Error = StreamError;

    async fn modified_after(&mut self, t: i64) -> Result<Vec<(Meta, Body)>, StreamError> {
        self.0.modified_after(t, PAGE)
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, StreamError> {
        Ok(self.0.crdr(pdest)?.map(|(m, _)| m))
    }
}
