//! The replica's index: one SQLite table with the folded name as its
//! primary key (a B-tree: O(log n) lookups, `list` in byte order), and the
//! position of the newest stream record it reflects. A deleted name keeps
//! its row with no owner, so the table has exactly one row per registry
//! record the mirror holds — which is how the replica notices a record
//! that left the mirror without a record saying so. It is derived from
//! the stream file beside it and is brought up to it after every pull, so
//! a crash between the two only delays the index until the next open.

use std::path::Path;

use keyway_core::PublicKey;
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY NOT NULL,
    owner BLOB,
    modified INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// What one stream record does to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `name` belongs to `owner` (from the record at `modified`).
    Registered { name: String, owner: PublicKey },
    /// `name` is free again.
    Deleted { name: String },
}

/// The name table.
#[derive(Debug)]
pub struct Index {
    conn: Connection,
}

impl Index {
    /// Opens (or creates) the index file at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Derived data, rebuilt from the stream if lost: WAL without a
        // sync per commit.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// The `modified` of the newest stream record reflected (0: none).
    pub fn position(&self) -> rusqlite::Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM state WHERE key = 'position'", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0))
    }

    /// Applies `changes` (each with its record's `modified`, in stream
    /// order) and moves the position to `position`, in one transaction.
    pub fn apply(&mut self, changes: &[(i64, Change)], position: i64) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO names (name, owner, modified) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, modified = excluded.modified",
            )?;
            for (modified, change) in changes {
                match change {
                    Change::Registered { name, owner } => {
                        upsert.execute(params![name, owner.as_bytes().as_slice(), modified])?;
                    }
                    Change::Deleted { name } => {
                        upsert.execute(params![name, None::<&[u8]>, modified])?;
                    }
                }
            }
            tx.execute(
                "INSERT INTO state (key, value) VALUES ('position', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![position],
            )?;
        }
        tx.commit()
    }

    /// Rows, deleted names included: one per registry record reflected.
    pub fn rows(&self) -> rusqlite::Result<usize> {
        self.conn
            .query_row("SELECT COUNT(*) FROM names", [], |r| r.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
    }

    /// Forgets everything: the next catch-up rebuilds from the start.
    pub fn reset(&mut self) -> rusqlite::Result<()> {
        self.conn
            .execute_batch("DELETE FROM names; DELETE FROM state;")
    }

    /// Forgets names written before `oldest` (a newest-N replica let
    /// those records go).
    pub fn forget_before(&mut self, oldest: i64) -> rusqlite::Result<usize> {
        self.conn
            .execute("DELETE FROM names WHERE modified < ?1", params![oldest])
    }

    /// The owner of `name` (already folded).
    pub fn lookup(&self, name: &str) -> rusqlite::Result<Option<PublicKey>> {
        let owner: Option<Option<Vec<u8>>> = self
            .conn
            .prepare_cached("SELECT owner FROM names WHERE name = ?1 AND owner IS NOT NULL")?
            .query_row(params![name], |r| r.get(0))
            .optional()?;
        // Only keys that parsed when they were stored are ever written.
        Ok(owner
            .flatten()
            .and_then(|bytes| PublicKey::from_bytes(&bytes).ok()))
    }

    /// Every name, in byte order (SQLite's BINARY collation is memcmp).
    pub fn list(&self) -> rusqlite::Result<Vec<String>> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT name FROM names WHERE owner IS NOT NULL ORDER BY name")?;
        let names = statement.query_map([], |r| r.get(0))?;
        names.collect()
    }

    /// How many names are held.
    pub fn count(&self) -> rusqlite::Result<usize> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM names WHERE owner IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| usize::try_from(n).unwrap_or(0))
    }
}
