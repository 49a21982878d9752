//! A stream file: its lifecycle (create, open as owner or mirror,
//! reopen) and its reads. Writes are split by who makes them: the
//! owner's ([`owner`](mod@owner)), a mirror's ([`mirror`](mod@mirror));
//! [`verify`](mod@verify) checks a whole file.

mod mirror;
mod owner;
mod verify;

pub use mirror::Batch;
pub use verify::VerifyReport;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyway_core::drayer::{
    ApplyError, Chain, Meta, SigningKey, VerifyingKey, WriteError, is_reserved,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

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

    /// Records of type `kind` held (an index over the stream checks it
    /// still has one entry per record).
    pub fn count_of(&self, kind: &str) -> Result<usize, StreamError> {
        Ok(SqliteChain::new(&self.conn).count_of(kind)?)
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
