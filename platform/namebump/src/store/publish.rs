//! Publishing the names table as a Drayer stream (issue 17): SQLite only.
//!
//! The hot path adds two small writes to the PUT's own transaction and
//! nothing else: the owner's signed packet (`publish_signed`, one row per
//! name) and, by triggers on `names`, the name's mark in `publish_dirty`
//! (one row per name changed since it was last published, so the queue is
//! bounded by the table however fast names change). Every change to a
//! name's row — PUT, refresh, DEL, bump, expiry purge — goes through those
//! triggers, so none is missed, and the marks commit with the change: a
//! crash after the acknowledgement loses nothing, the publisher finds the
//! mark on restart.
//!
//! The publisher thread owns the stream file and drains the marks in
//! batches: for each name it compares what the stream holds with what the
//! table says (the live row's signed packet, or nothing) and writes only
//! the difference, then removes the mark if no write re-marked the name in
//! between. Publishing is therefore idempotent: a batch cut by a crash is
//! simply done again.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use keyway_core::namebump::Packet;
use keyway_core::namebump::published::{MAX_KEY_LEN, RECORD_TYPE, stream_key};
use keyway_drayer::sqlite::Listing;
use keyway_drayer::{Stream, StreamError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StoreError;

/// Tables and triggers of a publishing store (created at open).
pub(crate) const ENABLE: &str = "
CREATE TABLE IF NOT EXISTS publish_signed (name BLOB PRIMARY KEY, packet BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS publish_dirty (name BLOB PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS publish_dirty_by_seq ON publish_dirty (seq);
CREATE TABLE IF NOT EXISTS publish_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS publish_on_insert AFTER INSERT ON names BEGIN
  INSERT OR REPLACE INTO publish_dirty VALUES
    (NEW.name, (SELECT COALESCE(MAX(seq), 0) + 1 FROM publish_dirty));
END;
CREATE TRIGGER IF NOT EXISTS publish_on_update AFTER UPDATE ON names BEGIN
  INSERT OR REPLACE INTO publish_dirty VALUES
    (NEW.name, (SELECT COALESCE(MAX(seq), 0) + 1 FROM publish_dirty));
END;
CREATE TRIGGER IF NOT EXISTS publish_on_delete AFTER DELETE ON names BEGIN
  INSERT OR REPLACE INTO publish_dirty VALUES
    (OLD.name, (SELECT COALESCE(MAX(seq), 0) + 1 FROM publish_dirty));
END;
";

/// A store opened without publishing drops the triggers and the marks:
/// nothing is left on the hot path, and a later publishing start
/// reconciles from scratch (its `publish_state` is gone). The signed
/// packets stay: a start without the flag by mistake must not make every
/// name unprovable until its owner's next refresh (only the names written
/// meanwhile are; the reconcile drops packets of names gone since).
pub(crate) const DISABLE: &str = "
DROP TRIGGER IF EXISTS publish_on_insert;
DROP TRIGGER IF EXISTS publish_on_update;
DROP TRIGGER IF EXISTS publish_on_delete;
DROP TABLE IF EXISTS publish_dirty;
DROP TABLE IF EXISTS publish_state;
";

/// Stores the packet of an accepted PUT, in the PUT's transaction.
pub(crate) fn record_signed(
    tx: &rusqlite::Transaction<'_>,
    name: &[u8],
    packet: &[u8],
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("INSERT OR REPLACE INTO publish_signed (name, packet) VALUES (?1, ?2)")?
        .execute(params![name, packet])?;
    Ok(())
}

// Both of the publisher's transactions on the names database begin
// IMMEDIATE, as the writer's: a deferred one that reads and then writes
// fails at once, without waiting, when the writer holds the lock.

/// Names published per batch: one stream transaction (one fsync) for
/// their puts.
const BATCH: usize = 256;

/// How long the publisher sleeps when nothing woke it: a bound on the
/// delay should a wake-up be lost, and the retry pause after a failure.
const IDLE: Duration = Duration::from_secs(1);

fn publish_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Publish(e.to_string())
}

/// Opens (creating it and its key if missing) the stream at `stream_path`,
/// and starts the publisher on `db_path`. Returns the stream's public key
/// (base64). The publisher stops when `wake`'s sender (the store's
/// writer) is gone.
pub(crate) fn start(
    db_path: &Path,
    stream_path: &Path,
    wake: Receiver<()>,
) -> Result<String, StoreError> {
    let stream = if stream_path.exists() {
        Stream::open(stream_path)
    } else {
        Stream::create(stream_path)
    }
    .map_err(publish_error)?;
    if !stream.is_owner() {
        return Err(StoreError::Publish(format!(
            "{}: no private key beside it, so this server cannot sign its records",
            stream_path.display()
        )));
    }
    let public = stream.public_key_base64();
    let conn = super::sqlite::connect(db_path)?;
    let mut publisher = Publisher { conn, stream };
    publisher.reconcile_if_new(&public)?;
    std::thread::Builder::new()
        .name("keyway-namebump-publisher".into())
        .spawn(move || publisher.run(&wake))
        .map_err(|e| publish_error(format!("cannot start the publisher: {e}")))?;
    Ok(public)
}

struct Publisher {
    conn: Connection,
    stream: Stream,
}

/// What the stream should hold for one name.
type Desired = Option<Vec<u8>>;

/// A live row's value, owner, `updated` and signed packet (if kept).
type LiveRow = (Vec<u8>, Vec<u8>, f64, Option<Vec<u8>>);

impl Publisher {
    /// Unless the stream is the one this table last published to, as it
    /// was left (its public key and its tip, recorded with each batch),
    /// marks every name of either: the drain then makes them agree. That
    /// covers a first start, another stream file, a file restored from a
    /// backup, publishing turned off in between, and a crash between a
    /// batch's stream write and its record here.
    fn reconcile_if_new(&mut self, public: &str) -> Result<(), StoreError> {
        let state = |key: &str| -> Result<Option<String>, StoreError> {
            Ok(self
                .conn
                .query_row(
                    "SELECT value FROM publish_state WHERE key = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()?)
        };
        let tip = self.stream.tip().map_err(publish_error)?.to_string();
        if state("stream")?.as_deref() == Some(public) && state("tip")?.as_deref() == Some(&tip) {
            return Ok(());
        }
        let mut stream_names = Vec::new();
        // Newest id first, paging down: ids are unique in a chain.
        let mut before = i64::MAX;
        loop {
            let page = self
                .stream
                .listing(RECORD_TYPE, (i64::MIN, before), Listing::NewestId, 1000)
                .map_err(publish_error)?;
            let Some(last) = page.last() else { break };
            before = last.1;
            stream_names.extend(page.into_iter().filter_map(|(key, _, _)| unhex(&key)));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR REPLACE INTO publish_dirty (name, seq)
             SELECT name, (SELECT COALESCE(MAX(seq), 0) FROM publish_dirty) + id FROM names",
            [],
        )?;
        // Packets of names no longer live (changed while not publishing).
        tx.execute(
            "DELETE FROM publish_signed WHERE name NOT IN (SELECT name FROM names WHERE af <> 0)",
            [],
        )?;
        for name in &stream_names {
            tx.execute(
                "INSERT OR IGNORE INTO publish_dirty (name, seq)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM publish_dirty))",
                params![name],
            )?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO publish_state (key, value) VALUES ('stream', ?1), ('tip', ?2)",
            params![public, tip],
        )?;
        tx.commit()?;
        tracing::info!(
            stream = public,
            "publishing: reconciling the stream with the names table"
        );
        Ok(())
    }

    fn run(mut self, wake: &Receiver<()>) {
        loop {
            match self.drain_once() {
                Ok(0) => match wake.recv_timeout(IDLE) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        // The writer is gone: publish what it committed last.
                        while matches!(self.drain_once(), Ok(n) if n > 0) {}
                        return;
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "publishing failed; retrying in a second");
                    // A pause whatever the writer commits meanwhile: a
                    // lasting failure (a full disk) is not retried per write.
                    std::thread::sleep(IDLE);
                    if let Err(TryRecvError::Disconnected) = wake.try_recv() {
                        return;
                    }
                }
            }
        }
    }

    /// Publishes one batch of marked names; returns how many were marked.
    fn drain_once(&mut self) -> Result<usize, StoreError> {
        let marked: Vec<(Vec<u8>, i64)> = self
            .conn
            .prepare_cached("SELECT name, seq FROM publish_dirty ORDER BY seq LIMIT ?1")?
            .query_map(params![BATCH as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if marked.is_empty() {
            return Ok(0);
        }
        let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
        let mut deletes: Vec<String> = Vec::new();
        for (name, _) in &marked {
            let mut buf = [0u8; MAX_KEY_LEN];
            let Some(key) = stream_key(name, &mut buf) else {
                continue; // Longer than any PUT carries: never published.
            };
            let desired = self.desired(name)?;
            let held = self.held(key)?;
            match desired {
                Some(packet) if held.as_ref() != Some(&packet) => {
                    puts.push((key.to_owned(), packet));
                }
                None if held.is_some() => deletes.push(key.to_owned()),
                _ => {}
            }
        }
        self.stream
            .set_many(
                puts.iter()
                    .map(|(k, v)| (k.as_str(), RECORD_TYPE, v.as_slice())),
            )
            .map_err(publish_error)?;
        // One transaction for the batch's deletions too: a purge of many
        // expired names costs one commit per batch, not one per name.
        self.stream
            .delete_many(deletes.iter().map(|k| (k.as_str(), RECORD_TYPE)))
            .map_err(publish_error)?;
        let tip = self.stream.tip().map_err(publish_error)?.to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("INSERT OR REPLACE INTO publish_state (key, value) VALUES ('tip', ?1)")?
            .execute(params![tip])?;
        for (name, seq) in &marked {
            tx.prepare_cached("DELETE FROM publish_dirty WHERE name = ?1 AND seq = ?2")?
                .execute(params![name, seq])?;
            // A packet is kept only while its name is live; the guard runs
            // under this transaction's write lock, after any PUT since.
            tx.prepare_cached(
                "DELETE FROM publish_signed WHERE name = ?1
                 AND NOT EXISTS (SELECT 1 FROM names WHERE name = ?1 AND af <> 0)",
            )?
            .execute(params![name])?;
        }
        tx.commit()?;
        Ok(marked.len())
    }

    /// The live row's signed packet, if it is the packet of that row's
    /// write (same value, owner and `updated`). A live name without one
    /// (written before publishing was on) is not published until its
    /// owner refreshes it: nothing else could prove it.
    fn desired(&self, name: &[u8]) -> Result<Desired, StoreError> {
        let row: Option<LiveRow> = self
            .conn
            .prepare_cached(
                "SELECT n.value, n.owner_pub, n.updated, s.packet FROM names n
                 LEFT JOIN publish_signed s ON s.name = n.name
                 WHERE n.name = ?1 AND n.af <> 0",
            )?
            .query_row(params![name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((value, owner, updated, Some(packet))) = row else {
            return Ok(None);
        };
        let matches = Packet::decode(&packet).is_ok_and(|p| {
            p.value == value.as_slice()
                && p.vkc.is_some_and(|k| k[..] == owner[..])
                && p.updated == updated
        });
        Ok(matches.then_some(packet))
    }

    fn held(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.stream.get(key, RECORD_TYPE) {
            Ok(v) => Ok(v),
            // A record that does not verify is replaced, not trusted.
            Err(StreamError::Apply(_)) => Ok(Some(Vec::new())),
            Err(e) => Err(publish_error(e)),
        }
    }
}

fn unhex(key: &str) -> Option<Vec<u8>> {
    if !key.len().is_multiple_of(2) {
        return None;
    }
    (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(key.get(i..i + 2)?, 16).ok())
        .collect()
}
