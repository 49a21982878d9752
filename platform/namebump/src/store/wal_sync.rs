//! Answers SQLite writes once their commit is on disk, with the fsync off
//! the writer's path (issue 12, "Speed").
//!
//! With `synchronous = FULL` every commit fsyncs the WAL inside the single
//! writer: while the disk flushes, no statement runs, and the fsync (0.3 ms
//! on an idle disk here, several ms while other processes write) was most
//! of the writer's time: about 200 µs per new-name claim, whose inserts
//! dirty a page of the name index each. The writer now commits with
//! `synchronous = NORMAL` (the frames go to the WAL file, no fsync) and
//! hands each committed batch here; this thread fsyncs the WAL file and
//! then answers every batch committed before that fsync began. Batches
//! committed during an fsync wait for the next one, so one fsync covers
//! all of them, and the writer runs the next batch meanwhile.
//!
//! Durability is unchanged for answers: a write is acknowledged only after
//! its frames are on disk. WAL recovery keeps whole committed transactions
//! up to the first torn frame, so a crash loses only writes no one was
//! told about. What changes: a reader may see a commit up to one fsync
//! before it is on disk (a GET could return a value that a power failure
//! in the next millisecond takes back, unacknowledged).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use super::StoreError;
use super::writer::{Applied, Job};

/// A batch whose transaction has committed (or failed), with its answers.
pub(crate) type Committed = Vec<(Job, Result<Applied, StoreError>)>;

/// The WAL file of the database at `path`: SQLite names it `PATH-wal`.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Runs until every sender is gone, having answered everything sent.
pub(crate) fn sync_loop(wal: PathBuf, committed: Receiver<Committed>) {
    // Opened on first use: SQLite creates the WAL file at the first write.
    // Kept open: closing a file descriptor would drop any POSIX lock this
    // process holds on the file (SQLite locks the -shm and database files,
    // not the WAL, but nothing here needs to rely on that).
    let mut file: Option<File> = None;
    while let Ok(first) = committed.recv() {
        let mut batches = vec![first];
        while let Ok(more) = committed.try_recv() {
            batches.push(more);
        }
        let synced = sync(&mut file, &wal);
        if let Err(e) = &synced {
            tracing::error!(error = %e, wal = %wal.display(), "WAL fsync failed");
            // A failed fsync may have dropped the dirty pages: reopen, and
            // never tell anyone these writes are stored.
            file = None;
        }
        for (job, result) in batches.into_iter().flatten() {
            let result = match &synced {
                Ok(()) => result,
                Err(e) => Err(StoreError::BatchFailed(format!("WAL fsync failed: {e}"))),
            };
            job.finish(result);
        }
    }
}

fn sync(file: &mut Option<File>, wal: &Path) -> std::io::Result<()> {
    let file = match file {
        Some(f) => f,
        None => file.insert(File::open(wal)?),
    };
    // fdatasync: the WAL's size is data here and is flushed with it.
    file.sync_data()
}

/// Hands a batch to the syncer; if it is gone, answers with an error (its
/// writes are committed but cannot be confirmed durable).
pub(crate) fn hand_over(syncer: &SyncSender<Committed>, batch: Committed) {
    if let Err(std::sync::mpsc::SendError(batch)) = syncer.send(batch) {
        for (job, _) in batch {
            job.finish(Err(StoreError::WriterGone));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IpKey, PutOutcome, PutRequest};
    use tokio::sync::oneshot;

    fn stored_put() -> (Committed, oneshot::Receiver<Result<PutOutcome, StoreError>>) {
        let (tx, rx) = oneshot::channel();
        let request = PutRequest {
            name: b"n".to_vec(),
            value: b"v".to_vec(),
            owner: [2; 33],
            ip: IpKey::V4(0x7f00_0001),
            updated: 1.0,
            bump: false,
        };
        let job = Job::Put(request, 1.0, tx);
        (vec![(job, Ok(Applied::Put(PutOutcome::Stored)))], rx)
    }

    /// Runs the syncer on one committed write and returns its answer.
    fn answer(wal: PathBuf) -> Result<PutOutcome, StoreError> {
        let (batch, mut rx) = stored_put();
        let (tx, committed) = std::sync::mpsc::sync_channel(1);
        hand_over(&tx, batch);
        drop(tx);
        sync_loop(wal, committed);
        rx.try_recv()
            .unwrap_or_else(|e| Err(StoreError::BatchFailed(e.to_string())))
    }

    #[test]
    fn a_write_is_answered_after_the_wal_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nb.db");
        std::fs::write(wal_path(&db), b"frames").unwrap();
        assert_eq!(answer(wal_path(&db)).ok(), Some(PutOutcome::Stored));
    }

    #[test]
    fn a_write_whose_wal_cannot_be_synced_is_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let missing = wal_path(&dir.path().join("gone").join("nb.db"));
        assert!(matches!(answer(missing), Err(StoreError::BatchFailed(_))));
    }

    #[test]
    fn the_wal_is_the_database_path_with_a_suffix() {
        assert_eq!(
            wal_path(Path::new("/var/lib/nb.db")),
            PathBuf::from("/var/lib/nb.db-wal")
        );
    }
}
