//! A stream file: create, open (owner or mirror), read, write, verify.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyway_core::drayer::{
    Applied, ApplyError, Chain, Mender, Meta, Repair, SigningKey, Verified, VerifyingKey,
    WriteError, apply, apply_verified, delete, hash, is_reserved, seal, set, set_unsigned,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::keyfile::{self, KeyFileError};
use crate::sqlite::{Body, ChainError, INDEXES, Listing, SCHEMA, SqliteChain};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error("{path} is not a Drayer stream file (no record table or PublicKey)")]
    NotAStream { path: PathBuf },
    #[error("{0:?} is not a base64 Ed25519 public key")]
    BadPublicKey(String),
    #[error("{path} holds stream {held}, not {wanted}")]
    OtherStream {
        path: PathBuf,
        held: String,
        wanted: String,
    },
    #[error("this copy has no private key ({}): it is a read-only mirror", .0.display())]
    NotOwner(PathBuf),
    #[error(transparent)]
    Write(#[from] WriteError<ChainError>),
    #[error(transparent)]
    Apply(#[from] ApplyError<ChainError>),
    #[error(transparent)]
    File(#[from] crate::file_record::FileRecordError),
    #[error("malformed record value: {0}")]
    Record(String),
    #[error("a value of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
}

impl From<rusqlite::Error> for StreamError {
    fn from(source: rusqlite::Error) -> Self {
        Self::Chain(ChainError::Sql(source))
    }
}

/// A record as applications see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub kind: String,
    pub key: String,
    pub timestamp: i64,
    pub modified: i64,
    /// `None` in a metadata-only mirror.
    pub value: Option<Vec<u8>>,
}

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

/// What [`Stream::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: usize,
    /// Each problem, naming the record.
    pub problems: Vec<String>,
}

/// One stream file and, for its owner, the private key.
#[derive(Debug)]
pub struct Stream {
    conn: Connection,
    path: PathBuf,
    public: VerifyingKey,
    owner: Option<SigningKey>,
}

/// Parses a base64 public key (standard or URL-safe, padded or not).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, StreamError> {
    let bad = || StreamError::BadPublicKey(text.to_owned());
    let cleaned: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(cleaned)
        .map_err(|_| bad())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

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
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Stream {
    /// Creates a new stream file with a fresh key pair and its
    /// `.privatekey` file. Fails if either exists.
    pub fn create(path: &Path) -> Result<Self, StreamError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyFileError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        Self::create_with_key(path, SigningKey::from_bytes(&seed))
    }

    /// [`Self::create`] with a given key.
    pub fn create_with_key(path: &Path, key: SigningKey) -> Result<Self, StreamError> {
        let key_path = keyfile::path_for(path);
        for p in [path, key_path.as_path()] {
            if p.exists() {
                return Err(StreamError::Exists { path: p.to_owned() });
            }
        }
        let conn = Self::connect(path, false)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(INDEXES)?;
        let public = key.verifying_key();
        conn.execute(
            "INSERT INTO attr VALUES ('PublicKey', ?1)",
            params![STANDARD.encode(public.as_bytes())],
        )?;
        keyfile::create(&key_path, &key)?;
        Self::make_durable(&conn, path)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            public,
            owner: Some(key),
        })
    }

    /// Opens an existing stream file for reading and writing (writing
    /// needs the `.privatekey` file; syncing does not). Adds the
    /// recommended indexes.
    pub fn open(path: &Path) -> Result<Self, StreamError> {
        let conn = Self::connect(path, false)?;
        let public = Self::stored_key(&conn, path)?;
        conn.execute_batch(INDEXES)?;
        let key_path = keyfile::path_for(path);
        let owner = key_path
            .exists()
            .then(|| keyfile::load(&key_path, &public))
            .transpose()?;
        if owner.is_some() {
            Self::make_durable(&conn, path)?;
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
            public,
            owner,
        })
    }

    /// Opens a stream file without ever writing to it.
    pub fn open_read_only(path: &Path) -> Result<Self, StreamError> {
        let conn = Self::connect(path, true)?;
        let public = Self::stored_key(&conn, path)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            public,
            owner: None,
        })
    }

    /// Opens a second connection to this stream's file, as this one was
    /// opened (read-only or not) but without the private key, when called:
    /// for work on another thread while this one stays borrowed (a
    /// connection is not `Sync`).
    pub(crate) fn reopener(
        &self,
    ) -> Result<impl FnOnce() -> Result<Self, StreamError> + Send + 'static, StreamError> {
        let read_only = self.conn.is_readonly("main")?;
        let (path, public) = (self.path.clone(), self.public);
        Ok(move || {
            let conn = Self::connect(&path, read_only)?;
            // The file may have been replaced since the first connection.
            let held = Self::stored_key(&conn, &path)?;
            if held != public {
                return Err(StreamError::OtherStream {
                    path,
                    held: STANDARD.encode(held.as_bytes()),
                    wanted: STANDARD.encode(public.as_bytes()),
                });
            }
            Ok(Self {
                conn,
                path,
                public,
                owner: None,
            })
        })
    }

    /// Opens the mirror of `public` at `path`, creating an empty one if
    /// the file does not exist.
    pub fn mirror(path: &Path, public: VerifyingKey) -> Result<Self, StreamError> {
        if !path.exists() {
            let conn = Self::connect(path, false)?;
            conn.execute_batch(SCHEMA)?;
            conn.execute_batch(INDEXES)?;
            conn.execute(
                "INSERT INTO attr VALUES ('PublicKey', ?1)",
                params![STANDARD.encode(public.as_bytes())],
            )?;
            return Ok(Self {
                conn,
                path: path.to_owned(),
                public,
                owner: None,
            });
        }
        let stream = Self::open(path)?;
        if stream.public != public {
            return Err(StreamError::OtherStream {
                path: path.to_owned(),
                held: stream.public_key_base64(),
                wanted: STANDARD.encode(public.as_bytes()),
            });
        }
        Ok(stream)
    }

    fn connect(path: &Path, read_only: bool) -> Result<Connection, StreamError> {
        let sql = |source| StreamError::Sql {
            path: path.to_owned(),
            source,
        };
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else if path.exists() {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        // Every lookup of the chain algorithms stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        if !read_only {
            // Every write is its own transaction: with a rollback journal
            // each would wait for an fsync (about 400 writes/s here). WAL
            // with synchronous=NORMAL keeps each commit atomic and
            // consistent; a power cut may lose the last commits, never
            // corrupt the chain. That is for mirrors: an owner's
            // connection syncs every commit (`make_durable`). The
            // original opens WAL files unchanged.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sql)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(sql)?;
            // Checkpoint every 8,192 pages (32 MiB of WAL at 4 KiB)
            // instead of 1,000: each checkpoint syncs the file, and
            // pages written many times between two are copied once
            // (about 15 % more single-record writes per second).
            conn.pragma_update(None, "wal_autocheckpoint", 8192)
                .map_err(sql)?;
        }
        Ok(conn)
    }

    /// An owner's commits are synced before a write returns: its records
    /// exist nowhere else, so an acknowledged write must survive an OS
    /// crash or a power cut, not only the process's death (which WAL with
    /// `synchronous=NORMAL` already survives). A mirror keeps NORMAL: a
    /// lost tail is pulled again at its next sync.
    fn make_durable(conn: &Connection, path: &Path) -> Result<(), StreamError> {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|source| StreamError::Sql {
                path: path.to_owned(),
                source,
            })
    }

    fn stored_key(conn: &Connection, path: &Path) -> Result<VerifyingKey, StreamError> {
        let not_a_stream = || StreamError::NotAStream {
            path: path.to_owned(),
        };
        let text: Option<String> = conn
            .query_row(
                "SELECT value FROM attr WHERE key = 'PublicKey' LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|_| not_a_stream())?;
        parse_public_key(&text.ok_or_else(not_a_stream)?)
    }

    /// The file's connection, for the HTTP server's streamed reads.
    #[cfg(feature = "server")]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The public key as the original writes it (standard base64).
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public.as_bytes())
    }

    /// Whether this copy holds the private key.
    pub fn is_owner(&self) -> bool {
        self.owner.is_some()
    }

    fn owner(&self) -> Result<&SigningKey, StreamError> {
        self.owner
            .as_ref()
            .ok_or_else(|| StreamError::NotOwner(keyfile::path_for(&self.path)))
    }

    /// The value of (key, kind), checked against its signed hash and the
    /// signature. Reads change nothing (the original deleted rows on read:
    /// O15). The placeholder of a deleted newest record is not data: absent.
    pub fn get(&self, key: &str, kind: &str) -> Result<Option<Vec<u8>>, StreamError> {
        if is_reserved(key, kind) {
            return Ok(None);
        }
        let chain = SqliteChain::new(&self.conn);
        let Some(meta) = chain.by_key(key, kind)? else {
            return Ok(None);
        };
        meta.verify(&self.public)
            .map_err(ApplyError::<ChainError>::Record)?;
        let body = chain.body(meta.id)?;
        let value = body.and_then(|b| b.value);
        if let Some(value) = &value {
            meta.check_value(value)
                .map_err(ApplyError::<ChainError>::Record)?;
        }
        Ok(value)
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

    pub fn delete_at(&mut self, key: &str, kind: &str, now: i64) -> Result<(), StreamError> {
        let owner = self.owner()?.clone();
        let tx = self.conn.transaction()?;
        delete(&mut SqliteChain::new(&tx), &owner, key, kind, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Records, by id, optionally of one type (without the placeholder of
    /// a deleted newest record: it is not data).
    pub fn list(&self, kind: Option<&str>) -> Result<Vec<Entry>, StreamError> {
        let rows = SqliteChain::new(&self.conn).all(kind)?;
        Ok(rows.into_iter().filter(is_data).map(entry).collect())
    }

    /// The `n` most recently modified records, newest first (without the
    /// placeholder).
    pub fn newest(&self, kind: Option<&str>, n: usize) -> Result<Vec<Entry>, StreamError> {
        // One more: the placeholder may be among them.
        let mut rows = SqliteChain::new(&self.conn).newest(kind, n.saturating_add(1))?;
        rows.retain(is_data);
        rows.reverse();
        rows.truncate(n);
        Ok(rows.into_iter().map(entry).collect())
    }

    /// Records held.
    pub fn count(&self) -> Result<usize, StreamError> {
        Ok(SqliteChain::new(&self.conn).count()?)
    }

    /// The original's JSON listings: (key, id, modified) of up to `limit`
    /// records of type `kind` with ids strictly between the bounds.
    pub fn listing(
        &self,
        kind: &str,
        bounds: (i64, i64),
        order: Listing,
        limit: usize,
    ) -> Result<Vec<(String, i64, i64)>, StreamError> {
        Ok(SqliteChain::new(&self.conn).listing(kind, bounds, order, limit)?)
    }

    /// The mchain tip's `modified` (0 when empty).
    pub fn tip(&self) -> Result<i64, StreamError> {
        Ok(SqliteChain::new(&self.conn)
            .tip()?
            .map_or(0, |m| m.modified))
    }

    /// Records modified after `t`, oldest first (newRecords).
    pub fn modified_after(&self, t: i64, limit: usize) -> Result<Vec<(Meta, Body)>, StreamError> {
        Ok(SqliteChain::new(&self.conn).modified_after(t, limit)?)
    }

    /// The record with the largest `prevchange` ≤ `pdest` (crdr).
    pub fn crdr(&self, pdest: i64) -> Result<Option<(Meta, Body)>, StreamError> {
        Ok(SqliteChain::new(&self.conn).crdr(pdest)?)
    }

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

    /// Checks every record (ranges, value hash, signature) and both
    /// chains (spec §6.1), naming each problem.
    pub fn verify(&self) -> Result<VerifyReport, StreamError> {
        let chain = SqliteChain::new(&self.conn);
        let mut report = VerifyReport::default();
        let mut by_id = Vec::new();
        let rows = chain.all(None)?;
        // Each record on its own: spread over the machine's cores.
        let public = self.public;
        let check = move |(meta, body): &(Meta, Body)| -> Vec<String> {
            let name = format!("record {} ({} {:?})", meta.id, body.kind, body.key);
            let mut problems = Vec::new();
            if let Err(e) = meta.verify(&public) {
                problems.push(format!("{name}: {e}"));
            }
            // A metadata-only row has no value to check.
            if let Some(value) = &body.value
                && let Err(e) = meta.check_value(value)
            {
                problems.push(format!("{name}: {e}"));
            }
            problems
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = rows.len().div_ceil(threads).max(64);
        let found: Vec<Vec<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = rows
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().flat_map(check).collect()))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| vec!["a verification thread failed".to_owned()])
                })
                .collect()
        });
        report.problems.extend(found.into_iter().flatten());
        report.records = rows.len();
        by_id.extend(rows.iter().map(|(meta, _)| *meta));
        let back = chain.back()?;
        let mut previous = 0;
        // A partial mirror holds an arbitrary set of ids: only its
        // modification chain, from the back pointer, can be checked.
        for meta in by_id.iter().filter(|_| back == 0) {
            if meta.prev != previous {
                report.problems.push(format!(
                    "ID chain: record {} points at id {}, expected {previous}",
                    meta.id, meta.prev
                ));
            }
            previous = meta.id;
        }
        let mut by_modified = by_id;
        by_modified.sort_by_key(|m| m.modified);
        let mut previous = back;
        for meta in &by_modified {
            if meta.prevchange != previous {
                report.problems.push(format!(
                    "modification chain: record {} follows {}, expected {previous}",
                    meta.id, meta.prevchange
                ));
            }
            previous = meta.modified;
        }
        let foreign = chain.foreign_rows()?;
        if foreign > 0 {
            tracing::info!(foreign, "rows of sibling chains left unchecked");
        }
        Ok(report)
    }
}

/// Not the placeholder of a deleted newest record (at most one exists).
fn is_data((_, body): &(Meta, Body)) -> bool {
    !is_reserved(&body.key, &body.kind)
}

fn entry((meta, body): (Meta, Body)) -> Entry {
    Entry {
        id: meta.id,
        kind: body.kind,
        key: body.key,
        timestamp: meta.timestamp,
        modified: meta.modified,
        value: body.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(stream: &Stream) -> i64 {
        stream
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    /// 2 is FULL: each owner commit is synced to disk before `set`
    /// returns; a mirror's commits (1, NORMAL) are not.
    #[test]
    fn owner_connections_commit_durably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owner.stream");
        let mut created = Stream::create(&path).unwrap();
        assert_eq!(synchronous(&created), 2, "a created stream");
        created.set("k", "obj", b"v").unwrap();
        let public = *created.public_key();
        drop(created);
        let reopened = Stream::open(&path).unwrap();
        assert!(reopened.is_owner());
        assert_eq!(synchronous(&reopened), 2, "a reopened owner stream");
        let mirror = Stream::mirror(&dir.path().join("mirror.stream"), public).unwrap();
        assert_eq!(synchronous(&mirror), 1, "a mirror");
    }
}
