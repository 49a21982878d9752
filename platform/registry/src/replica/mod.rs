//! A client's replica of the registry: a Drayer mirror of the registry's
//! stream plus an index of its names, both in one directory. Records
//! arrive over a link or from any HTTP mirror; either way each is checked
//! twice before it is stored — the stream's signature (the pull) and the
//! owner's signature over its request ([`checked`]) — so a replica is as
//! honest as the owners, not only as the server. `lookup` and `list` are
//! answered from the index, without the network.
//!
//! The index follows the stream by position: each record's change is
//! applied in order (a name's newer record replaces its older one, as it
//! does in the stream). A record the server removes with a bare Drayer
//! deletion — which an honest registry never makes — leaves no record
//! behind to apply; the index notices by its row count (one row per
//! registry record held, deleted names included) and is rebuilt from the
//! mirror.
//!
//! Files in the directory:
//! - `registry.stream`: the mirror (a Drayer stream file);
//! - `index.sqlite`: the name table ([`index`]).

pub mod checked;
pub mod index;
pub mod record;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyway_core::PublicKey;
use keyway_core::drayer::{VerifyingKey, is_reserved};
use keyway_core::registry::RECORD_KIND;
use keyway_drayer::sync::{self, PAGE, PullLimits, Source, SyncError};
use keyway_drayer::{Stream, StreamError};

use checked::{Checked, CheckedError};
use index::Index;
use record::Read;

/// The mirror's file name inside the replica directory.
pub const STREAM_FILE: &str = "registry.stream";
/// The index's file name inside the replica directory.
pub const INDEX_FILE: &str = "index.sqlite";

/// Why a replica could not be opened, synced or read.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Stream(#[from] StreamError),
    #[error("index: {0}")]
    Index(#[from] rusqlite::Error),
    /// The stored stream record could not be read back into the index.
    #[error("stored record {id}: {why}")]
    Stored { id: u64, why: record::RecordError },
    /// The pull failed (the source, a rejected record, a limit, …).
    #[error("sync: {0}")]
    Sync(String),
    /// The replica did not reach a position in time.
    #[error("the replica did not reach position {wanted} within {waited:?} (it holds {held})")]
    Behind {
        wanted: i64,
        held: i64,
        waited: Duration,
    },
}

impl<E: std::error::Error + 'static> From<SyncError<CheckedError<E>>> for ReplicaError {
    fn from(e: SyncError<CheckedError<E>>) -> Self {
        Self::Sync(e.to_string())
    }
}

/// A replica on disk.
#[derive(Debug)]
pub struct Replica {
    stream: Stream,
    index: Index,
    /// `Some(n)`: a newest-N replica holding the registry's `n` most
    /// recently written records only.
    keep: Option<usize>,
}

impl Replica {
    /// Opens the replica in `dir` (created if missing) of the registry
    /// whose stream key is `stream_key`; a replica of another stream is
    /// refused. `keep`: hold only the newest `keep` records.
    pub fn open(
        dir: &Path,
        stream_key: VerifyingKey,
        keep: Option<usize>,
    ) -> Result<Self, ReplicaError> {
        std::fs::create_dir_all(dir).map_err(|source| ReplicaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let stream = Stream::mirror(&dir.join(STREAM_FILE), stream_key)?;
        let index = Index::open(&dir.join(INDEX_FILE))?;
        let mut replica = Self {
            stream,
            index,
            keep,
        };
        // The stream may be ahead of the index (a crash between the two).
        replica.catch_up_index()?;
        Ok(replica)
    }

    /// The stream key of the replica in `dir`, if one exists there.
    pub fn stream_key_in(dir: &Path) -> Result<Option<VerifyingKey>, ReplicaError> {
        let path = dir.join(STREAM_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(*Stream::open_read_only(&path)?.public_key()))
    }

    /// The registry's stream key.
    pub fn stream_key(&self) -> &VerifyingKey {
        self.stream.public_key()
    }

    /// The position reached: the `modified` of the newest record held
    /// (the server's write replies name positions on the same scale).
    pub fn position(&self) -> Result<i64, ReplicaError> {
        Ok(self.stream.tip()?)
    }

    /// Pulls what `source` has beyond this replica (every record checked)
    /// and brings the index up to the stream. Returns the position
    /// reached.
    pub async fn sync<S: Source + Send>(
        &mut self,
        source: S,
        limits: &PullLimits,
    ) -> Result<i64, ReplicaError> {
        let registry = self.stream.public_key().to_bytes();
        let mut source = Checked { source, registry };
        let pulled = match self.keep {
            None => sync::pull_with(&mut self.stream, &mut source, limits).await,
            Some(keep) => sync::pull_newest_with(&mut self.stream, &mut source, keep, limits).await,
        };
        // What was applied before a failure is kept and indexed either way.
        let indexed = self.catch_up_index();
        pulled?;
        indexed?;
        self.position()
    }

    /// Brings the index up to the stream file, then checks it still has
    /// one row per registry record of the mirror: if not (a record left
    /// the mirror with no record saying so — a bare Drayer deletion by
    /// the server), the index is rebuilt from the mirror, once.
    fn catch_up_index(&mut self) -> Result<(), ReplicaError> {
        if !self.apply_new_records()? {
            return Ok(());
        }
        if self.index.rows()? != self.stream.count_of(RECORD_KIND)? {
            self.index.reset()?;
            self.apply_new_records()?;
        }
        Ok(())
    }

    /// Applies every record modified after the index's position, in
    /// order, one transaction per page; whether there were any.
    fn apply_new_records(&mut self) -> Result<bool, ReplicaError> {
        let registry = self.stream.public_key().to_bytes();
        let mut position = self.index.position()?;
        let mut any = false;
        // Bounded: each round moves `position` past at least one record,
        // and the stream holds finitely many.
        loop {
            let page = self.stream.modified_after(position, PAGE)?;
            let Some((last, _)) = page.last() else { break };
            let next = last.modified;
            let mut changes = Vec::with_capacity(page.len());
            for (meta, body) in &page {
                if is_reserved(&body.key, &body.kind) {
                    continue;
                }
                match record::read(&registry, &body.key, &body.kind, body.value.as_deref()) {
                    Ok(Read::Change(change)) => changes.push((meta.modified, change)),
                    Ok(Read::Other) => {}
                    Err(why) => return Err(ReplicaError::Stored { id: meta.id, why }),
                }
            }
            self.index.apply(&changes, next)?;
            position = next;
            any = true;
        }
        if any && self.keep.is_some() {
            // The names whose records the mirror let go.
            let oldest = self.stream.modified_after(0, 1)?;
            if let Some((meta, _)) = oldest.first() {
                self.index.forget_before(meta.modified)?;
            }
        }
        Ok(any)
    }

    /// The owner of `name` (as given: it is folded first); `None` if the
    /// name is not held or not a valid name.
    pub fn lookup(&self, name: &str) -> Result<Option<PublicKey>, ReplicaError> {
        let Some(folded) = record::fold(name) else {
            return Ok(None);
        };
        Ok(self.index.lookup(&folded)?)
    }

    /// Every name held, in byte order.
    pub fn list(&self) -> Result<Vec<String>, ReplicaError> {
        Ok(self.index.list()?)
    }

    /// How many names are held.
    pub fn count(&self) -> Result<usize, ReplicaError> {
        Ok(self.index.count()?)
    }
}
