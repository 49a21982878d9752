//! The owner's writes: set and delete, signed with the stream's private
//! key (spec §6.2–§6.4, through `keyway_core::drayer::owner`).

use keyway_core::drayer::{Meta, SigningKey, delete, hash, seal, set, set_unsigned};

use super::{Stream, StreamError};
use crate::keyfile;
use crate::sqlite::{Body, SqliteChain};

/// Values a peer would refuse are refused here first.
fn check_size(value: &[u8]) -> Result<(), StreamError> {
    if value.len() > crate::wire::MAX_VALUE {
        return Err(StreamError::TooLarge {
            len: value.len(),
            max: crate::wire::MAX_VALUE,
        });
    }
    Ok(())
}

fn now_micros() -> i64 {
    keyway_core::time::Clock::unix_micros(&keyway_core::time::SystemClock)
}

impl Stream {
    fn owner(&self) -> Result<&SigningKey, StreamError> {
        self.owner
            .as_ref()
            .ok_or_else(|| StreamError::NotOwner(keyfile::path_for(&self.path)))
    }

    /// Sets (key, kind) to `value`, now.
    pub fn set(&mut self, key: &str, kind: &str, value: &[u8]) -> Result<Meta, StreamError> {
        self.set_at(key, kind, value, now_micros(), None)
    }

    /// Sets (key, kind) to `value` with the owner's clock at `now` (µs)
    /// and an application timestamp (default: the version time).
    pub fn set_at(
        &mut self,
        key: &str,
        kind: &str,
        value: &[u8],
        now: i64,
        timestamp: Option<i64>,
    ) -> Result<Meta, StreamError> {
        let owner = self.owner()?.clone();
        check_size(value)?;
        let tx = self.conn.transaction()?;
        let body = Body {
            key: key.to_owned(),
            kind: kind.to_owned(),
            value: Some(value.to_vec()),
        };
        let meta = set(
            &mut SqliteChain::new(&tx),
            &owner,
            key,
            kind,
            hash(value),
            body,
            now,
            timestamp,
        )?;
        tx.commit()?;
        Ok(meta)
    }

    /// Sets many (key, kind, value) in one transaction: each is chained in
    /// order as if set one by one, but the file is written once (each
    /// single `set` commits, which dominates its cost) and the signatures
    /// are made on another thread while the store works (signing is the
    /// other half). All or nothing.
    pub fn set_many<'v>(
        &mut self,
        entries: impl IntoIterator<Item = (&'v str, &'v str, &'v [u8])>,
    ) -> Result<usize, StreamError> {
        /// Records handed to the signer at a time.
        const CHUNK: usize = 64;
        let owner = self.owner()?.clone();
        let tx = self.conn.transaction()?;
        let mut chain = SqliteChain::new(&tx);
        let signer_key = owner.clone();
        let count = std::thread::scope(|scope| {
            let (to_signer, jobs) = std::sync::mpsc::channel::<Vec<Meta>>();
            let (to_writer, signed) = std::sync::mpsc::channel::<Vec<Meta>>();
            let signer = scope.spawn(move || {
                for mut batch in jobs {
                    for meta in &mut batch {
                        meta.sign(&signer_key);
                    }
                    if to_writer.send(batch).is_err() {
                        return;
                    }
                }
            });
            // Sealing as signatures come back (a seal is guarded: a later
            // write of this batch to the same record is not undone).
            let seal_all = |chain: &mut SqliteChain<'_>, batch: Vec<Meta>| {
                batch
                    .iter()
                    .try_for_each(|meta| seal(chain, meta).map(drop))
            };
            let written = (|| {
                let mut count = 0;
                let mut pending = Vec::with_capacity(CHUNK);
                for (key, kind, value) in entries {
                    check_size(value)?;
                    let body = Body {
                        key: key.to_owned(),
                        kind: kind.to_owned(),
                        value: Some(value.to_vec()),
                    };
                    pending.push(set_unsigned(
                        &mut chain,
                        &owner,
                        key,
                        kind,
                        hash(value),
                        body,
                        now_micros(),
                        None,
                    )?);
                    count += 1;
                    if pending.len() == CHUNK {
                        // The signer stops only when this sender drops.
                        let _ = to_signer
                            .send(std::mem::replace(&mut pending, Vec::with_capacity(CHUNK)));
                        while let Ok(batch) = signed.try_recv() {
                            seal_all(&mut chain, batch)?;
                        }
                    }
                }
                let _ = to_signer.send(pending);
                Ok::<_, StreamError>(count)
            })();
            drop(to_signer);
            // On an error the transaction is dropped unsealed: nothing of
            // it is kept.
            let count = written?;
            for batch in signed {
                seal_all(&mut chain, batch)?;
            }
            // Signing does not fail; a panic there is a bug, passed on.
            signer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok::<_, StreamError>(count)
        })?;
        tx.commit()?;
        Ok(count)
    }

    /// Deletes (key, kind).
    pub fn delete(&mut self, key: &str, kind: &str) -> Result<(), StreamError> {
        self.delete_at(key, kind, now_micros())
    }

    /// Deletes many (key, kind) in one transaction, each as a single
    /// `delete` would, in order: one commit (one fsync) for the lot. All
    /// or nothing: a key not held fails the whole batch.
    pub fn delete_many<'k>(
        &mut self,
        keys: impl IntoIterator<Item = (&'k str, &'k str)>,
    ) -> Result<usize, StreamError> {
        let owner = self.owner()?.clone();
        let tx = self.conn.transaction()?;
        // One chain for the transaction: it keeps the tip and the last id
        // up to date through its own writes.
        let mut chain = SqliteChain::new(&tx);
        let mut count = 0;
        for (key, kind) in keys {
            delete(&mut chain, &owner, key, kind, now_micros())?;
            count += 1;
        }
        tx.commit()?;
        Ok(count)
    }

    pub fn delete_at(&mut self, key: &str, kind: &str, now: i64) -> Result<(), StreamError> {
        let owner = self.owner()?.clone();
        let tx = self.conn.transaction()?;
        delete(&mut SqliteChain::new(&tx), &owner, key, kind, now)?;
        tx.commit()?;
        Ok(())
    }
}
