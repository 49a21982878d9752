//! A [`Source`] that lets through only records whose owner asked for
//! them: every registry record carries its owner's signature over the
//! request, checked here before the pull sees the record (the pull then
//! checks the stream's signature). A page is cut before the first record
//! that fails; asked again from there, that record is the first and the
//! pull fails with [`Rejected`]: the records before it are kept, it and
//! everything after it are not stored.

use keyway_core::drayer::{Meta, is_reserved};
use keyway_drayer::sqlite::Body;
use keyway_drayer::sync::Source;

use super::record::{self, RecordError};

/// Why a page from the source was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CheckedError<E: std::error::Error + 'static> {
    /// The source failed.
    #[error("{0}")]
    Source(#[source] E),
    /// A record is not what its owner signed.
    #[error("{0}")]
    Rejected(#[from] Rejected),
}

/// A record refused by the owner check.
#[derive(Debug, thiserror::Error)]
#[error("record {id} rejected: {why}")]
pub struct Rejected {
    /// Its id in the stream.
    pub id: u64,
    /// What is wrong with it.
    pub why: RecordError,
}

/// `S`, with every registry record's owner signature checked.
#[derive(Debug)]
pub struct Checked<S> {
    /// Where records come from.
    pub source: S,
    /// The registry's stream key, which every request must name.
    pub registry: [u8; 32],
}

impl<S: Source + Send> Checked<S> {
    /// `page` up to the first record that fails; an error if it is the
    /// first.
    fn cut(&self, page: Vec<(Meta, Body)>) -> Result<Vec<(Meta, Body)>, CheckedError<S::Error>> {
        let mut good = Vec::with_capacity(page.len());
        for (meta, body) in page {
            if let Err(why) = check(&self.registry, &body) {
                if good.is_empty() {
                    return Err(Rejected { id: meta.id, why }.into());
                }
                break;
            }
            good.push((meta, body));
        }
        Ok(good)
    }
}

/// Checks one record: the stream's own placeholder passes (it carries
/// nothing); anything else must be a registry record its owner signed.
fn check(registry: &[u8; 32], body: &Body) -> Result<(), RecordError> {
    if is_reserved(&body.key, &body.kind) {
        return Ok(());
    }
    record::read(registry, &body.key, &body.kind, body.value.as_deref()).map(|_| ())
}

impl<S: Source + Send> Source for Checked<S> {
    type Error = CheckedError<S::Error>;

    async fn modified_after(&mut self, t: i64) -> Result<Vec<(Meta, Body)>, Self::Error> {
        let page = self
            .source
            .modified_after(t)
            .await
            .map_err(CheckedError::Source)?;
        self.cut(page)
    }

    fn prefetch(&mut self, t: i64, max_bytes: u64) {
        self.source.prefetch(t, max_bytes);
    }

    async fn newest(&mut self, n: usize) -> Result<Option<Vec<(Meta, Body)>>, Self::Error> {
        let Some(newest) = self.source.newest(n).await.map_err(CheckedError::Source)? else {
            return Ok(None);
        };
        // A partial start is taken whole or not at all: every record must
        // pass.
        for (meta, body) in &newest {
            check(&self.registry, body).map_err(|why| Rejected { id: meta.id, why })?;
        }
        Ok(Some(newest))
    }

    async fn crdr(&mut self, pdest: i64) -> Result<Option<Meta>, Self::Error> {
        // Metadata only: its stream signature is the pull's to check.
        self.source.crdr(pdest).await.map_err(CheckedError::Source)
    }
}
