//! The original stream file (spec §5): tables `attr` and `record`, the
//! eleven columns in their order, `UNIQUE(chain, modified)` and
//! `UNIQUE(chain, prevchange)`, and the stream's own rows with `chain` an
//! empty blob. Every query filters on the chain (the original's O8), and
//! the indexes the spec recommends make every lookup O(log n).

use keyway_core::drayer::{Chain, Meta, hash};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// The original schema, for new files.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS attr (key text, value text);
CREATE TABLE IF NOT EXISTS record (id integer, type text, key text, value blob, hash blob,timestamp integer, modified integer, prev integer, prevchange integer, signature blob, chain blob, UNIQUE(chain,modified),UNIQUE(chain,prevchange));
";

/// The indexes our lookups need (spec §7.2); harmless to add to old
/// files. The spec also suggests (chain, prev): no lookup here goes by
/// `prev` (the next id is found through (chain, id)), and every index
/// costs each write a page.
pub const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS keyway_record_chain_id ON record(chain, id);
CREATE INDEX IF NOT EXISTS keyway_record_chain_type_key ON record(chain, type, key);
";

/// The stream's own chain in `chain`'s column.
const MAIN: &[u8] = &[];

/// The order of [`SqliteChain::listing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    NewestId,
    NewestModified,
}

/// A row's key, type and value (`None`: a metadata-only copy, spec §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    pub key: String,
    pub kind: String,
    pub value: Option<Vec<u8>>,
}

/// A stored row that cannot be a record (wrong lengths or types): files
/// are input too.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("record {id}: stored {what} is malformed")]
    Malformed { id: i64, what: &'static str },
}

/// The main chain of a stream file, read and written through `conn`
/// (usually a transaction).
#[derive(Debug)]
pub struct SqliteChain<'c> {
    conn: &'c Connection,
    /// The back pointer, once read: it is asked for on every record.
    back: std::cell::Cell<Option<i64>>,
    /// The tip, once read (`Some(None)`: the chain is empty). Every
    /// record applied asks for it, and a chain lives for one transaction,
    /// so no other writer can move it; kept up to date by this chain's
    /// own writes.
    tip: std::cell::Cell<Option<Option<Meta>>>,
    /// The largest id, once read (`Some(0)`: none), kept the same way:
    /// a record appended past it needs no look for later ids.
    last_id: std::cell::Cell<Option<u64>>,
}

const COLUMNS: &str = "id, type, key, hash, timestamp, modified, prev, prevchange, signature";

impl<'c> SqliteChain<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            back: std::cell::Cell::new(None),
            tip: std::cell::Cell::new(None),
            last_id: std::cell::Cell::new(None),
        }
    }

    fn one(&self, condition: &str, arg: i64) -> Result<Option<Meta>, ChainError> {
        let sql = format!("SELECT {COLUMNS} FROM record WHERE chain = ?1 AND {condition} LIMIT 1");
        let mut statement = self.conn.prepare_cached(&sql)?;
        let row = statement
            .query_row(params![MAIN, arg], |row| Ok(meta_parts(row)))
            .optional()?;
        row.transpose()
    }

    /// Whole rows (metadata and body) for `condition` (after `chain = ?1`)
    /// with the parameters that follow.
    fn records(
        &self,
        condition: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(Meta, Body)>, ChainError> {
        let sql = format!("SELECT {COLUMNS}, value FROM record WHERE chain = ?1 AND {condition}");
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map(args, |row| Ok((meta_parts(row), body_parts(row)?)))?;
        rows.map(|r| {
            let (meta, body) = r?;
            Ok((meta?, body))
        })
        .collect()
    }

    /// Rows modified after `t`, oldest first, at most `limit` (newRecords).
    pub fn modified_after(&self, t: i64, limit: usize) -> Result<Vec<(Meta, Body)>, ChainError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.records(
            "modified > ?2 ORDER BY modified LIMIT ?3",
            params![MAIN, t, limit],
        )
    }

    /// The row with the largest `prevchange` ≤ `pdest` (crdr).
    pub fn crdr(&self, pdest: i64) -> Result<Option<(Meta, Body)>, ChainError> {
        let mut rows = self.records(
            "prevchange <= ?2 ORDER BY prevchange DESC LIMIT 1",
            params![MAIN, pdest],
        )?;
        Ok(rows.pop())
    }

    /// The `n` most recently modified rows (of one type, if given),
    /// oldest first (a partial mirror's start).
    pub fn newest(&self, kind: Option<&str>, n: usize) -> Result<Vec<(Meta, Body)>, ChainError> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let mut rows = self.records(
            "(?2 IS NULL OR type = ?2) ORDER BY modified DESC LIMIT ?3",
            params![MAIN, kind, limit],
        )?;
        rows.reverse();
        Ok(rows)
    }

    /// Rows held.
    pub fn count(&self) -> Result<usize, ChainError> {
        let n = self.count_where("chain = ?1")?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Rows of type `kind` (the `(chain, type, key)` index answers it).
    pub fn count_of(&self, kind: &str) -> Result<usize, ChainError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM record WHERE chain = ?1 AND type = ?2",
            params![MAIN, kind],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Rows matching `condition` (over the main chain's `?1`).
    fn count_where(&self, condition: &str) -> Result<i64, ChainError> {
        let sql = format!("SELECT count(*) FROM record WHERE {condition}");
        Ok(self.conn.query_row(&sql, params![MAIN], |r| r.get(0))?)
    }

    /// (key, id, modified) of up to `limit` rows of type `kind` with ids
    /// strictly between `after` and `before`, newest id or newest
    /// modification first: the original's JSON listings, without reading
    /// values.
    pub fn listing(
        &self,
        kind: &str,
        (after, before): (i64, i64),
        order: Listing,
        limit: usize,
    ) -> Result<Vec<(String, i64, i64)>, ChainError> {
        let column = match order {
            Listing::NewestId => "id",
            Listing::NewestModified => "modified",
        };
        let sql = format!(
            "SELECT key, id, modified FROM record WHERE chain = ?1 AND type = ?2 AND id > ?3 AND id < ?4
             ORDER BY {column} DESC LIMIT ?5"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![MAIN, kind, after, before, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every row, by id (for verification and listing).
    pub fn all(&self, kind: Option<&str>) -> Result<Vec<(Meta, Body)>, ChainError> {
        self.records("(?2 IS NULL OR type = ?2) ORDER BY id", params![MAIN, kind])
    }

    /// Rows of another chain (sibling streams, spec §5.3): counted and
    /// left alone.
    pub fn foreign_rows(&self) -> Result<u64, ChainError> {
        let n = self.count_where("chain IS NULL OR chain <> ?1")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A row's metadata and where its value is, without the value: what an
/// HTTP response needs to be sized and then streamed.
#[derive(Clone, Debug)]
pub struct Located {
    pub rowid: i64,
    pub meta: Meta,
    pub kind: String,
    pub key: String,
    /// The value's length; `None` for a metadata-only row.
    pub value_len: Option<u64>,
}

/// Calls `f` on each row of the main chain matching `condition` (after
/// `chain = ?1`, with the parameters that follow), in its order, with the
/// value's length but never its bytes: `typeof` and `length` of a blob
/// column read only the row's header, and nothing is collected.
pub fn locate<E: From<ChainError>>(
    conn: &Connection,
    condition: &str,
    args: impl rusqlite::Params,
    mut f: impl FnMut(Located) -> Result<(), E>,
) -> Result<(), E> {
    let sql = format!(
        "SELECT {COLUMNS}, rowid, typeof(value), length(value) FROM record WHERE chain = ?1 AND {condition}"
    );
    let mut statement = conn.prepare_cached(&sql).map_err(ChainError::Sql)?;
    let mut rows = statement.query(args).map_err(ChainError::Sql)?;
    while let Some(row) = rows.next().map_err(ChainError::Sql)? {
        let meta = meta_parts(row)?;
        let id = i64::try_from(meta.id).unwrap_or(i64::MAX);
        let malformed = |what| ChainError::Malformed { id, what };
        let kind: String = row.get(1).map_err(|_| malformed("type"))?;
        let key: String = row.get(2).map_err(|_| malformed("key"))?;
        let rowid: i64 = row.get(9).map_err(ChainError::Sql)?;
        let value_type: String = row.get(10).map_err(ChainError::Sql)?;
        let value_len = match value_type.as_str() {
            "null" => None,
            "blob" => {
                let len: i64 = row.get(11).map_err(ChainError::Sql)?;
                Some(u64::try_from(len).map_err(|_| malformed("value"))?)
            }
            // What `body_parts` would refuse to read as bytes.
            _ => return Err(malformed("value").into()),
        };
        f(Located {
            rowid,
            meta,
            kind,
            key,
            value_len,
        })?;
    }
    Ok(())
}

/// The main chain's `modified` of its `n`-th most recent row (1 = the
/// tip), if it holds that many.
pub fn nth_newest_modified(conn: &Connection, n: usize) -> Result<Option<i64>, ChainError> {
    let offset = i64::try_from(n.saturating_sub(1)).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(
        "SELECT modified FROM record WHERE chain = ?1 ORDER BY modified DESC LIMIT 1 OFFSET ?2",
    )?;
    Ok(statement
        .query_row(params![MAIN, offset], |r| r.get(0))
        .optional()?)
}

/// The main chain's name in the `chain` column, for queries over it.
#[cfg(feature = "server")]
pub(crate) const MAIN_CHAIN: &[u8] = MAIN;

fn blob<const N: usize>(
    row: &Row<'_>,
    index: usize,
    id: i64,
    what: &'static str,
) -> Result<[u8; N], ChainError> {
    let bytes: Option<Vec<u8>> = row.get(index).map_err(ChainError::Sql)?;
    bytes
        .and_then(|b| b.try_into().ok())
        .ok_or(ChainError::Malformed { id, what })
}

/// A row's metadata (columns in [`COLUMNS`] order). Inner `Result`: rusqlite
/// errors out of `query_row` closures, ours after.
fn meta_parts(row: &Row<'_>) -> Result<Meta, ChainError> {
    let id: i64 = row.get(0)?;
    let malformed = |what| ChainError::Malformed { id, what };
    let kind: String = row.get(1).map_err(|_| malformed("type"))?;
    let key: String = row.get(2).map_err(|_| malformed("key"))?;
    let prev: i64 = row.get(6)?;
    Ok(Meta {
        id: u64::try_from(id).map_err(|_| malformed("id"))?,
        timestamp: row.get(4)?,
        modified: row.get(5)?,
        prev: u64::try_from(prev).map_err(|_| malformed("prev"))?,
        prevchange: row.get(7)?,
        key_hash: hash(key.as_bytes()),
        value_hash: blob(row, 3, id, "hash")?,
        type_hash: hash(kind.as_bytes()),
        signature: blob(row, 8, id, "signature")?,
    })
}

fn body_parts(row: &Row<'_>) -> rusqlite::Result<Body> {
    Ok(Body {
        kind: row.get(1)?,
        key: row.get(2)?,
        value: row.get(9)?,
    })
}

fn id_param(id: u64) -> i64 {
    // Ids are checked ≤ i64::MAX before they reach the store.
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl Chain for SqliteChain<'_> {
    type Error = ChainError;
    type Body = Body;

    fn tip(&self) -> Result<Option<Meta>, ChainError> {
        if let Some(tip) = self.tip.get() {
            return Ok(tip);
        }
        let tip = self.one("?2 = ?2 ORDER BY modified DESC", 0)?;
        self.tip.set(Some(tip));
        Ok(tip)
    }

    fn id_tip(&self) -> Result<Option<Meta>, ChainError> {
        self.one("?2 = ?2 ORDER BY id DESC", 0)
    }

    fn by_id(&self, id: u64) -> Result<Option<Meta>, ChainError> {
        self.one("id = ?2", id_param(id))
    }

    fn by_modified(&self, modified: i64) -> Result<Option<Meta>, ChainError> {
        self.one("modified = ?2", modified)
    }

    fn by_prevchange(&self, modified: i64) -> Result<Option<Meta>, ChainError> {
        self.one("prevchange = ?2", modified)
    }

    fn by_key(&self, key: &str, kind: &str) -> Result<Option<Meta>, ChainError> {
        let sql = format!(
            // `+modified`: sort the few matches, so the planner seeks
            // the (chain, type, key) index instead of walking every row
            // in `modified` order.
            "SELECT {COLUMNS} FROM record WHERE chain = ?1 AND type = ?2 AND key = ?3 ORDER BY +modified DESC LIMIT 1"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let row = statement
            .query_row(params![MAIN, kind, key], |row| Ok(meta_parts(row)))
            .optional()?;
        row.transpose()
    }

    fn last_before(&self, modified: i64) -> Result<Option<Meta>, ChainError> {
        self.one("modified < ?2 ORDER BY modified DESC", modified)
    }

    fn first_after(&self, modified: i64) -> Result<Option<Meta>, ChainError> {
        self.one("modified > ?2 ORDER BY modified", modified)
    }

    fn first_id_after(&self, id: u64) -> Result<Option<Meta>, ChainError> {
        let last = match self.last_id.get() {
            Some(last) => last,
            None => {
                let last = self.id_tip()?.map_or(0, |m| m.id);
                self.last_id.set(Some(last));
                last
            }
        };
        if id >= last {
            return Ok(None);
        }
        self.one("id > ?2 ORDER BY id", id_param(id))
    }

    fn body_for(&self, key: &str, kind: &str, value: &[u8]) -> Body {
        Body {
            key: key.to_owned(),
            kind: kind.to_owned(),
            value: Some(value.to_vec()),
        }
    }

    fn body(&self, id: u64) -> Result<Option<Body>, ChainError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, type, key, 0, 0, 0, 0, 0, 0, value FROM record WHERE chain = ?1 AND id = ?2",
        )?;
        Ok(statement
            .query_row(params![MAIN, id_param(id)], body_parts)
            .optional()?)
    }

    fn put(&mut self, meta: &Meta, body: Body) -> Result<(), ChainError> {
        self.remove(meta.id)?;
        self.insert(meta, body)
    }

    fn insert(&mut self, meta: &Meta, body: Body) -> Result<(), ChainError> {
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO record VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        statement.execute(params![
            id_param(meta.id),
            body.kind,
            body.key,
            body.value,
            meta.value_hash.as_slice(),
            meta.timestamp,
            meta.modified,
            id_param(meta.prev),
            meta.prevchange,
            meta.signature.as_slice(),
            MAIN,
        ])?;
        if let Some(tip) = self.tip.get()
            && tip.is_none_or(|t| meta.modified > t.modified)
        {
            self.tip.set(Some(Some(*meta)));
        }
        if let Some(last) = self.last_id.get()
            && meta.id > last
        {
            self.last_id.set(Some(meta.id));
        }
        Ok(())
    }

    fn set_meta(&mut self, meta: &Meta) -> Result<(), ChainError> {
        if let Some(Some(tip)) = self.tip.get()
            && (tip.id == meta.id || meta.modified > tip.modified)
        {
            self.tip.set(None);
        }
        let mut statement = self.conn.prepare_cached(
            "UPDATE record SET hash = ?3, timestamp = ?4, modified = ?5, prev = ?6, prevchange = ?7, signature = ?8
             WHERE chain = ?1 AND id = ?2",
        )?;
        statement.execute(params![
            MAIN,
            id_param(meta.id),
            meta.value_hash.as_slice(),
            meta.timestamp,
            meta.modified,
            id_param(meta.prev),
            meta.prevchange,
            meta.signature.as_slice(),
        ])?;
        Ok(())
    }

    fn remove(&mut self, id: u64) -> Result<(), ChainError> {
        if self.last_id.get() == Some(id) {
            self.last_id.set(None);
        }
        if let Some(Some(tip)) = self.tip.get()
            && tip.id == id
        {
            self.tip.set(None);
        }
        let mut statement = self
            .conn
            .prepare_cached("DELETE FROM record WHERE chain = ?1 AND id = ?2")?;
        statement.execute(params![MAIN, id_param(id)])?;
        Ok(())
    }

    fn back(&self) -> Result<i64, ChainError> {
        if let Some(back) = self.back.get() {
            return Ok(back);
        }
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM attr WHERE key = ?1 LIMIT 1",
                params![BACK_POINTER],
                |r| r.get(0),
            )
            .optional()?;
        let back = text.and_then(|t| t.parse().ok()).unwrap_or(0);
        self.back.set(Some(back));
        Ok(back)
    }

    fn set_back(&mut self, back: i64) -> Result<(), ChainError> {
        self.back.set(Some(back));
        self.conn
            .execute("DELETE FROM attr WHERE key = ?1", params![BACK_POINTER])?;
        if back != 0 {
            self.conn.execute(
                "INSERT INTO attr VALUES (?1, ?2)",
                params![BACK_POINTER, back.to_string()],
            )?;
        }
        Ok(())
    }
}

/// Where a partial mirror keeps its back pointer: `attr` is local and
/// never synced, and the original ignores keys it does not know.
const BACK_POINTER: &str = "KeywayBackPointer";
