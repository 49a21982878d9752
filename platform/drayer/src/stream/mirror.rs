//! A mirror's writes: records received from a peer, applied by the
//! receiver's rules (spec §6.5–§6.7), and a partial mirror's start, trim
//! and patch (spec D8). What to pull and when is the core's pull machine;
//! this is the store it drives.

use keyway_core::drayer::{
    Applied, ApplyError, Chain, Mender, Meta, Repair, Verified, apply, apply_verified,
};
use rusqlite::TransactionBehavior;

use super::{Stream, StreamError};
use crate::sqlite::{Body, ChainError, SqliteChain};

/// What [`Stream::apply_batch`] did.
#[derive(Debug)]
pub struct Batch {
    /// Records applied or already held, from the start of the batch.
    pub done: usize,
    /// Of those, the ones that changed the stream.
    pub inserted: usize,
    /// Why the batch stopped early.
    pub stopped: Option<StreamError>,
}

impl Stream {
    /// Applies a record received from a peer, in one transaction (nothing
    /// is stored if it is refused).
    pub fn apply_received(
        &mut self,
        meta: &Meta,
        body: Body,
        repairs: &[Repair],
    ) -> Result<Applied, StreamError> {
        let tx = self.conn.transaction()?;
        let value = body.value.clone();
        let applied = apply(
            &mut SqliteChain::new(&tx),
            &self.public,
            meta,
            body,
            value.as_deref(),
            &Mender::Mirror(repairs),
        )?;
        tx.commit()?;
        Ok(applied)
    }

    /// Applies received records in order, in one transaction: stops at
    /// the first refused one (which leaves nothing behind) and keeps the
    /// ones before it. Returns how many were
    /// applied (or already held), how many of those were new, and the
    /// error that stopped it.
    pub fn apply_batch(
        &mut self,
        records: &[(Verified, Body)],
        repairs: &[Repair],
    ) -> Result<Batch, StreamError> {
        // One transaction, no savepoints (each costs two parsed
        // statements): on a refusal, roll back and apply again the records
        // before it, which succeeded once and will again.
        let (done, inserted, stopped) = self.apply_prefix(records, repairs, records.len())?;
        if let Some(stopped) = stopped {
            let (again, inserted, failed) = self.apply_prefix(records, repairs, done)?;
            debug_assert!(failed.is_none() && again == done);
            return Ok(Batch {
                done: again,
                inserted,
                stopped: Some(failed.unwrap_or(stopped)),
            });
        }
        Ok(Batch {
            done,
            inserted,
            stopped: None,
        })
    }

    /// Applies up to `limit` records in one transaction; commits only if
    /// all of them applied.
    fn apply_prefix(
        &mut self,
        records: &[(Verified, Body)],
        repairs: &[Repair],
        limit: usize,
    ) -> Result<(usize, usize, Option<StreamError>), StreamError> {
        // Immediate: a deferred transaction reads first and then fails at
        // once (SQLITE_BUSY, no busy wait) if another connection is writing
        // when it comes to write; this one waits its turn.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut chain = SqliteChain::new(&tx);
        let (mut done, mut inserted) = (0, 0);
        for (record, body) in records.iter().take(limit) {
            match apply_verified(
                &mut chain,
                &self.public,
                record,
                body.clone(),
                body.value.as_deref(),
                &Mender::Mirror(repairs),
            ) {
                Ok(applied) => {
                    done += 1;
                    inserted += usize::from(applied == Applied::Inserted);
                }
                Err(e) => {
                    tx.rollback()?;
                    return Ok((done, inserted, Some(StreamError::Apply(e))));
                }
            }
        }
        tx.commit()?;
        Ok((done, inserted, None))
    }

    /// The back pointer of a partial mirror (0 for a whole copy).
    pub fn back_pointer(&self) -> Result<i64, StreamError> {
        Ok(SqliteChain::new(&self.conn).back()?)
    }

    /// The `n` most recently modified records, oldest first.
    pub fn newest_records(&self, n: usize) -> Result<Vec<(Meta, Body)>, StreamError> {
        Ok(SqliteChain::new(&self.conn).newest(None, n)?)
    }

    /// Starts an empty partial mirror from a peer's newest records
    /// (oldest first): the oldest one's predecessor becomes the back
    /// pointer. One transaction.
    pub fn start_partial(&mut self, newest: &[(Meta, Body)]) -> Result<(), StreamError> {
        let tx = self.conn.transaction()?;
        let mut chain = SqliteChain::new(&tx);
        if chain.tip()?.is_some() {
            return Err(StreamError::Record("the mirror is not empty".into()));
        }
        if let Some((oldest, _)) = newest.first() {
            chain.set_back(oldest.prevchange)?;
        }
        for (meta, body) in newest {
            apply(
                &mut chain,
                &self.public,
                meta,
                body.clone(),
                body.value.as_deref(),
                &Mender::Mirror(&[]),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Lets go of all but the `keep` most recently modified records,
    /// moving the back pointer up (a partial mirror). One transaction.
    pub fn keep_newest(&mut self, keep: usize) -> Result<usize, StreamError> {
        let tx = self.conn.transaction()?;
        let mut chain = SqliteChain::new(&tx);
        let held = chain.count()?;
        let mut dropped = 0;
        for _ in keep.max(1)..held {
            let Some(oldest) = chain.first_after(i64::MIN)? else {
                break;
            };
            chain.remove(oldest.id)?;
            chain.set_back(oldest.modified)?;
            dropped += 1;
        }
        tx.commit()?;
        Ok(dropped)
    }

    /// Takes the owner's answer to `crdr/<back>` if it is this partial
    /// mirror's oldest record re-pointed further back (a silent patch no
    /// orphan here reveals).
    pub fn refresh_oldest(&mut self, patch: &Meta) -> Result<bool, StreamError> {
        let tx = self.conn.transaction()?;
        let mut chain = SqliteChain::new(&tx);
        let Some(oldest) = chain.first_after(i64::MIN)? else {
            return Ok(false);
        };
        if !patch.repoints(&oldest) {
            return Ok(false);
        }
        patch
            .verify(&self.public)
            .map_err(ApplyError::<ChainError>::Record)?;
        chain.set_meta(patch)?;
        chain.set_back(patch.prevchange)?;
        tx.commit()?;
        Ok(true)
    }
}
