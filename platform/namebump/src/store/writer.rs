//! Writes travel to a single writer as [`Job`]s and are applied in batches:
//! one transaction per batch, so a durable commit (an fsync on SQLite) is
//! shared by every write in it, and each write is acknowledged only after
//! its batch committed. A single writer also means no deadlocks between
//! concurrent writers (the reference's InnoDB 1213s, bug 12).

use tokio::sync::{mpsc, oneshot};

use super::rules::{self, WriteTx};
use super::{DelOutcome, DelRequest, Limits, Purged, PutOutcome, PutRequest, StoreError, Then};

/// Most writes one transaction carries.
pub(crate) const MAX_BATCH: usize = 128;

/// Where a write's outcome goes: to a task awaiting it, or to a callback
/// run where the write completed (`NameStore::put_then`), which spares
/// waking a task for it.
pub(crate) enum Reply<T> {
    Waiting(oneshot::Sender<Result<T, StoreError>>),
    Then(Then<T>),
}

impl<T> Reply<T> {
    fn send(self, result: Result<T, StoreError>) {
        match self {
            // A dropped receiver (the request timed out) is not an error:
            // the write stands.
            Self::Waiting(tx) => drop(tx.send(result)),
            Self::Then(then) => then(result),
        }
    }
}

pub(crate) enum Job {
    Put(PutRequest, f64, Reply<PutOutcome>),
    Del(DelRequest, f64, Reply<DelOutcome>),
    Purge(f64, Reply<Purged>),
}

/// What a write did.
#[derive(Debug)]
pub(crate) enum Applied {
    Put(PutOutcome),
    Del(DelOutcome),
    Purge(Purged),
}

impl Applied {
    /// Whether the write changed the database (a refused or idempotent one
    /// did not, and its transaction can be rolled back).
    pub(crate) fn changed(&self) -> bool {
        match self {
            Self::Put(o) => matches!(o, PutOutcome::Stored | PutOutcome::StoredAfterBump),
            Self::Del(o) => matches!(o, DelOutcome::Deleted),
            Self::Purge(_) => true,
        }
    }
}

impl Job {
    pub(crate) async fn apply<T: WriteTx>(
        &self,
        tx: &mut T,
        limits: &Limits,
    ) -> Result<Applied, T::Error> {
        Ok(match self {
            Self::Put(r, now, _) => Applied::Put(rules::put(tx, limits, r, *now).await?),
            Self::Del(r, now, _) => Applied::Del(rules::delete(tx, limits, r, *now).await?),
            Self::Purge(now, _) => Applied::Purge(rules::purge(tx, limits, *now).await?),
        })
    }

    /// Answers the requester.
    pub(crate) fn finish(self, result: Result<Applied, StoreError>) {
        let mismatch = || StoreError::BatchFailed("write outcome of the wrong kind".into());
        match self {
            Self::Put(_, _, tx) => tx.send(match result {
                Ok(Applied::Put(o)) => Ok(o),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            }),
            Self::Del(_, _, tx) => tx.send(match result {
                Ok(Applied::Del(o)) => Ok(o),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            }),
            Self::Purge(_, tx) => tx.send(match result {
                Ok(Applied::Purge(p)) => Ok(p),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            }),
        }
    }
}

/// Hands a write to the writer and waits for its committed outcome.
pub(crate) async fn submit<T>(
    writer: &mpsc::Sender<Job>,
    make: impl FnOnce(Reply<T>) -> Job,
) -> Result<T, StoreError> {
    let (tx, rx) = oneshot::channel();
    writer
        .send(make(Reply::Waiting(tx)))
        .await
        .map_err(|_| StoreError::WriterGone)?;
    rx.await.map_err(|_| StoreError::WriterGone)?
}

/// Hands a write to the writer, whose thread gives the committed outcome
/// to the job's callback; if the writer is gone, the callback gets that.
pub(crate) async fn submit_then(writer: &mpsc::Sender<Job>, job: Job) {
    if let Err(mpsc::error::SendError(job)) = writer.send(job).await {
        job.finish(Err(StoreError::WriterGone));
    }
}

/// Delivers a batch's results and empties the batch. If the batch failed
/// (nothing committed), keeps its writes and returns `true`: the caller then
/// runs each on its own, so one failing write cannot fail the others.
pub(crate) fn deliver<E: std::fmt::Display>(
    batch: &mut Vec<Job>,
    result: Result<Vec<Applied>, E>,
) -> bool {
    match result {
        Ok(results) => {
            for (job, applied) in batch.drain(..).zip(results) {
                job.finish(Ok(applied));
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, writes = batch.len(), "write batch failed; retrying singly");
            true
        }
    }
}

/// The one result of a single-write batch.
pub(crate) fn only(applied: Vec<Applied>) -> Result<Applied, StoreError> {
    applied
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::BatchFailed("no result for a write".into()))
}
