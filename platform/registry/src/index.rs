//! The server's index: the current owner of each name, each owner's last
//! accepted timestamp, and the stream position the index has caught up
//! to. It is a cache of the stream: [`Index::open`] starts it empty when
//! missing or made for another stream, and the server replays the records
//! after [`Index::position`] before taking writes.
//!
//! Only one writer uses it (the registry's lock); each [`Index::apply`]
//! is one transaction, so the index is always at some stream position,
//! never between two.

use std::path::Path;

use keyway_core::PublicKey;
use keyway_core::registry::{Op, SignedRequest};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY,
    owner BLOB NOT NULL,
    registered INTEGER NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS owners (
    owner BLOB PRIMARY KEY,
    last_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// A name's current record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameState {
    /// Who wrote the record.
    pub owner: PublicKey,
    /// Whether it registers (else: a delete, the name is free).
    pub registered: bool,
    /// Its stream position (`modified`, µs).
    pub position: i64,
}

/// The server's SQLite index.
#[derive(Debug)]
pub struct Index {
    conn: Connection,
}

impl Index {
    /// Opens (or creates) the index at `path` for stream `stream_key`;
    /// an index of another stream is emptied (then rebuilt by the caller).
    pub fn open(path: &Path, stream_key: &[u8; 32]) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A lost tail is replayed from the stream at the next start.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        let held: Option<Vec<u8>> = conn
            .query_row("SELECT value FROM meta WHERE key = 'stream'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let mut index = Self { conn };
        if held.as_deref() != Some(stream_key.as_slice()) {
            index.reset(stream_key)?;
        }
        Ok(index)
    }

    /// Empties the index (position 0) for `stream_key`.
    pub fn reset(&mut self, stream_key: &[u8; 32]) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        tx.execute_batch("DELETE FROM names; DELETE FROM owners; DELETE FROM meta;")?;
        tx.execute(
            "INSERT INTO meta VALUES ('stream', ?1), ('position', 0)",
            params![stream_key.as_slice()],
        )?;
        tx.commit()
    }

    /// The stream position of the newest record applied.
    pub fn position(&self) -> Result<i64, rusqlite::Error> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'position'", [], |r| {
                r.get(0)
            })
            .optional()
            .map(Option::unwrap_or_default)
    }

    /// The current record of `name`, if it ever had one.
    pub fn name(&self, name: &str) -> Result<Option<NameState>, rusqlite::Error> {
        let row: Option<(Vec<u8>, bool, i64)> = self
            .conn
            .prepare_cached("SELECT owner, registered, position FROM names WHERE name = ?1")?
            .query_row(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(row.and_then(|(owner, registered, position)| {
            Some(NameState {
                owner: PublicKey::from_bytes(&owner).ok()?,
                registered,
                position,
            })
        }))
    }

    /// The owner's last accepted timestamp (ms), if any.
    pub fn last_ms(&self, owner: &PublicKey) -> Result<Option<u64>, rusqlite::Error> {
        let last: Option<i64> = self
            .conn
            .prepare_cached("SELECT last_ms FROM owners WHERE owner = ?1")?
            .query_row(params![owner.as_bytes().as_slice()], |r| r.get(0))
            .optional()?;
        Ok(last.map(|ms| u64::try_from(ms).unwrap_or(0)))
    }

    /// Applies the record at `position` (one transaction).
    pub fn apply(&mut self, signed: &SignedRequest, position: i64) -> Result<(), rusqlite::Error> {
        let request = &signed.request;
        let owner = request.owner.as_bytes().as_slice();
        let ms = i64::try_from(request.timestamp_ms).unwrap_or(i64::MAX);
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "INSERT INTO names VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET
             owner = excluded.owner, registered = excluded.registered, position = excluded.position",
        )?
        .execute(params![
            request.name.as_str(),
            owner,
            request.op == Op::Register,
            position
        ])?;
        tx.prepare_cached(
            "INSERT INTO owners VALUES (?1, ?2) ON CONFLICT(owner) DO UPDATE SET
             last_ms = max(last_ms, excluded.last_ms)",
        )?
        .execute(params![owner, ms])?;
        Self::set_position(&tx, position)?;
        tx.commit()
    }

    /// Moves the position past a record that changes no name (another
    /// record type, or one that fails its checks).
    pub fn skip(&mut self, position: i64) -> Result<(), rusqlite::Error> {
        Self::set_position(&self.conn, position)
    }

    fn set_position(conn: &Connection, position: i64) -> Result<(), rusqlite::Error> {
        conn.prepare_cached("UPDATE meta SET value = max(value, ?1) WHERE key = 'position'")?
            .execute(params![position])?;
        Ok(())
    }

    /// The owner of `name` if it is registered.
    pub fn lookup(&self, name: &str) -> Result<Option<PublicKey>, rusqlite::Error> {
        Ok(self
            .name(name)?
            .filter(|state| state.registered)
            .map(|state| state.owner))
    }

    /// Every registered name, in byte order.
    pub fn list(&self) -> Result<Vec<String>, rusqlite::Error> {
        // TEXT compares with memcmp under SQLite's default BINARY collation.
        let mut statement = self
            .conn
            .prepare_cached("SELECT name FROM names WHERE registered ORDER BY name")?;
        let names = statement.query_map([], |r| r.get(0))?;
        names.collect()
    }
}
