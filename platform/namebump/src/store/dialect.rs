//! The SQL each backend speaks. Queries are written once with `?`
//! placeholders; this module adapts placeholders, integer casts and the
//! schema per backend.
//!
//! The tables are the reference's (`ipv4s`, `ipv6s`, `names`, same columns in
//! the same order) so a MariaDB database created for namebump 0.0.16 can be
//! used as it is; migrations only widen `value` to 1024 bytes (bug 16), make
//! `updated` a double (full precision for the monotonic-update rule, bug 24)
//! and add a trailing `created` column (the claim time that decides when a
//! name becomes bumpable). The reference reads rows positionally up to
//! column 7, so a trailing column does not disturb it.
//!
//! Tombstones (deleted names, see `rules.rs`) need no schema change: they
//! are `names` rows with `af` 0, an empty value, the `ip_id` of the quota
//! row the name was in and that row's `af` (2 or 10) as `timestamp`. Keeping
//! them in the name's own row means one row, under the unique key, orders
//! every write to a name. A reference server on the same database would
//! read one as an expired empty name and prune it at its next DO_BUMP PUT.

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use super::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub(crate) fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            _ => Err(StoreError::UnsupportedUrl(url.to_owned())),
        }
    }

    /// Rewrites `?` placeholders for PostgreSQL (`$1`, `$2`, …). Our SQL
    /// has no string literals, so every `?` is a placeholder.
    pub(crate) fn sql(self, query: &str) -> SqlStr {
        let text = match self {
            Self::Postgres => {
                let mut out = String::with_capacity(query.len() + 8);
                let mut n = 0;
                for c in query.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
            Self::Sqlite | Self::MySql => query.to_owned(),
        };
        // Built only from this module's constant SQL; values are bound.
        AssertSqlSafe(text).into_sql_str()
    }

    /// An integer column read back as i64. sqlx's Any driver has no mapping
    /// for MySQL TINYINT and rejects unsigned BIGINTs, so MySQL casts.
    pub(crate) fn int(self, column: &str) -> String {
        match self {
            Self::MySql => format!("CAST({column} AS SIGNED)"),
            Self::Sqlite | Self::Postgres => column.to_owned(),
        }
    }

    /// A u64 parameter, bound as its i64 bit pattern: MySQL's unsigned
    /// column needs the cast back (which wraps modulo 2^64).
    pub(crate) fn u64_param(self) -> &'static str {
        match self {
            Self::MySql => "CAST(? AS UNSIGNED)",
            Self::Sqlite | Self::Postgres => "?",
        }
    }

    /// Appended to the reads that take a row lock. SQLite has one writer,
    /// whose transaction holds the whole database (issue 12: the server
    /// databases have several, one per server process and connection).
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres | Self::MySql => " FOR UPDATE",
        }
    }

    /// The bump choice: the oldest bumpable name no other writer holds. A
    /// name another server is refreshing or deleting right now is passed
    /// over rather than waited for, so a bump never waits on a name lock
    /// taken after its own (the lock order is name, address, victim).
    /// MariaDB 10.6 and MySQL 8.0 have SKIP LOCKED.
    pub(crate) fn for_update_skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres | Self::MySql => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Statements creating (or upgrading) the schema, in order, each with
    /// an optional guard: a query counting what the statement would create,
    /// so it runs only when that count is 0. Running them again is harmless.
    pub(crate) fn schema(self) -> &'static [Migration] {
        match self {
            Self::Sqlite => {
                const {
                    &[
                        Migration::always(
                            "CREATE TABLE IF NOT EXISTS ipv4s (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    v4_val INTEGER NOT NULL UNIQUE,
                    timestamp INTEGER NOT NULL)",
                        ),
                        Migration::always(
                            "CREATE TABLE IF NOT EXISTS ipv6s (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    v6_glob_main INTEGER NOT NULL,
                    v6_glob_extra INTEGER NOT NULL,
                    v6_lan_id INTEGER NOT NULL,
                    v6_iface_id INTEGER NOT NULL,
                    timestamp INTEGER NOT NULL,
                    UNIQUE (v6_glob_main, v6_glob_extra, v6_lan_id, v6_iface_id))",
                        ),
                        Migration::always(
                            "CREATE TABLE IF NOT EXISTS names (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name BLOB NOT NULL UNIQUE,
                    value BLOB NOT NULL,
                    owner_pub BLOB NOT NULL,
                    af INTEGER NOT NULL,
                    ip_id INTEGER NOT NULL,
                    timestamp INTEGER NOT NULL,
                    updated REAL NOT NULL,
                    created INTEGER)",
                        ),
                        // Covers the quota counts (`row_counts`), which read
                        // every name of the claiming address: no table row
                        // is visited (issue 12). Replaces `names_by_row`.
                        Migration::always(
                            "CREATE INDEX IF NOT EXISTS names_by_address \
                             ON names (af, ip_id, timestamp, updated)",
                        ),
                        Migration::always("DROP INDEX IF EXISTS names_by_row"),
                        Migration::always(
                            "CREATE INDEX IF NOT EXISTS names_by_timestamp ON names (timestamp)",
                        ),
                    ]
                }
            }
            Self::Postgres => {
                const {
                    &[
                        Migration::always(
                            "CREATE TABLE IF NOT EXISTS ipv4s (
                    id BIGSERIAL PRIMARY KEY,
                    v4_val BIGINT NOT NULL UNIQUE,
                    timestamp BIGINT NOT NULL)",
                        ),
                        Migration::always(
                            "CREATE TABLE IF NOT EXISTS ipv6s (
                    id BIGSERIAL PRIMARY KEY,
                    v6_glob_main BIGINT NOT NULL,
                    v6_glob_extra BIGINT NOT NULL,
                    v6_lan_id BIGINT NOT NULL,
                    v6_iface_id BIGINT NOT NULL,
                    timestamp BIGINT NOT NULL,
                    UNIQUE (v6_glob_main, v6_glob_extra, v6_lan_id, v6_iface_id))",
                        ),
                        Migration::always(
                            "CREATE TABLE IF NOT EXISTS names (
                    id BIGSERIAL PRIMARY KEY,
                    name BYTEA NOT NULL UNIQUE,
                    value BYTEA NOT NULL,
                    owner_pub BYTEA NOT NULL,
                    af BIGINT NOT NULL,
                    ip_id BIGINT NOT NULL,
                    timestamp BIGINT NOT NULL,
                    updated DOUBLE PRECISION NOT NULL,
                    created BIGINT)",
                        ),
                        Migration::always(
                            "CREATE INDEX IF NOT EXISTS names_by_row ON names (af, ip_id)",
                        ),
                        Migration::always(
                            "CREATE INDEX IF NOT EXISTS names_by_timestamp ON names (timestamp)",
                        ),
                        Migration::always(
                            "CREATE TABLE IF NOT EXISTS ipv6_prefixes (
                    v6_glob_main BIGINT NOT NULL,
                    v6_glob_extra BIGINT NOT NULL,
                    PRIMARY KEY (v6_glob_main, v6_glob_extra))",
                        ),
                        Migration::unless(
                            CLAIM_FUNCTION,
                            "SELECT COUNT(*) FROM pg_proc WHERE proname = 'keyway_claim_v2'",
                        ),
                    ]
                }
            }
            // The reference DDL (specs/namebump-schema.sql), then upgrades.
            Self::MySql => {
                const {
                    &[
                Migration::always("CREATE TABLE IF NOT EXISTS ipv4s (
                    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
                    v4_val INT UNSIGNED NOT NULL,
                    timestamp BIGINT UNSIGNED NOT NULL,
                    PRIMARY KEY (id),
                    UNIQUE KEY v4_val (v4_val)) ENGINE=InnoDB"),
                Migration::always("CREATE TABLE IF NOT EXISTS ipv6s (
                    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
                    v6_glob_main INT UNSIGNED NOT NULL,
                    v6_glob_extra SMALLINT UNSIGNED NOT NULL,
                    v6_lan_id SMALLINT UNSIGNED NOT NULL,
                    v6_iface_id BIGINT UNSIGNED NOT NULL,
                    timestamp BIGINT UNSIGNED NOT NULL,
                    PRIMARY KEY (id),
                    UNIQUE KEY v6_val (v6_glob_main, v6_glob_extra, v6_lan_id, v6_iface_id))
                    ENGINE=InnoDB"),
                Migration::always("CREATE TABLE IF NOT EXISTS names (
                    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
                    name VARBINARY(50) NOT NULL,
                    value VARBINARY(1024) NOT NULL,
                    owner_pub BINARY(33) NOT NULL,
                    af TINYINT UNSIGNED NOT NULL,
                    ip_id BIGINT UNSIGNED NOT NULL,
                    timestamp BIGINT UNSIGNED NOT NULL,
                    updated DOUBLE NOT NULL,
                    PRIMARY KEY (id),
                    UNIQUE KEY name (name)) ENGINE=InnoDB"),
                Migration::always("ALTER TABLE names MODIFY value VARBINARY(1024) NOT NULL"),
                Migration::always("ALTER TABLE names MODIFY updated DOUBLE NOT NULL"),
                Migration::unless(
                    "ALTER TABLE names ADD COLUMN created BIGINT UNSIGNED NULL",
                    "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
                     AND TABLE_NAME = 'names' AND COLUMN_NAME = 'created'",
                ),
                Migration::unless(
                    "CREATE INDEX names_by_row ON names (af, ip_id)",
                    "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()
                     AND TABLE_NAME = 'names' AND INDEX_NAME = 'names_by_row'",
                ),
                Migration::unless(
                    "CREATE INDEX names_by_timestamp ON names (timestamp)",
                    "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE()
                     AND TABLE_NAME = 'names' AND INDEX_NAME = 'names_by_timestamp'",
                ),
                Migration::always("CREATE TABLE IF NOT EXISTS ipv6_prefixes (
                    v6_glob_main INT UNSIGNED NOT NULL,
                    v6_glob_extra SMALLINT UNSIGNED NOT NULL,
                    PRIMARY KEY (v6_glob_main, v6_glob_extra)) ENGINE=InnoDB"),
            ]
                }
            }
        }
    }
}

/// PostgreSQL: the common claim in one statement (issue 12: a claim took
/// 6 round trips, each costing the server ~35 µs of CPU). The rules'
/// locking path (`rules::put_unheld`) for a name no row held, an address
/// row that exists, a quota with room and no bump, with the same lock
/// (the address row, FOR UPDATE), the same counts read under it (each
/// statement of a volatile function sees what committed before it, as the
/// rules' statements do under READ COMMITTED) and the same guards; the
/// unique key refuses a name claimed since the fast path read, as it
/// refuses the rules' INSERT. Called as one statement, it runs in a
/// transaction of its own. Returns 1 when it stored the name, 2 when the
/// address's young tombstones refuse it, 0 when it decided nothing and
/// changed nothing (a new IPv6 address row, a full quota: bump or refusal,
/// old tombstones to drop), which the rules then decide in a transaction
/// as before. v2: a new IPv4 address is created here too, as the rules
/// do (no limit applies to it), so the first claim from an address is not
/// left to the locking way; v1 stays for servers of the version before.
const CLAIM_FUNCTION: &str = "CREATE OR REPLACE FUNCTION keyway_claim_v2(
    p_name BYTEA, p_value BYTEA, p_owner BYTEA, p_af BIGINT, p_v4 BIGINT,
    p_main BIGINT, p_extra BIGINT, p_lan BIGINT, p_iface BIGINT,
    p_timestamp BIGINT, p_updated DOUBLE PRECISION, p_created BIGINT,
    p_cutoff BIGINT, p_since DOUBLE PRECISION, p_names BIGINT, p_tombstones BIGINT)
RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_id BIGINT;
    v_live BIGINT;
    v_young BIGINT;
    v_old BIGINT;
BEGIN
    IF p_af = 2 THEN
        SELECT id INTO v_id FROM ipv4s WHERE v4_val = p_v4 FOR UPDATE;
        IF v_id IS NULL AND p_names > 0 AND p_tombstones > 0 THEN
            -- A new address (the rules' `insert_ip`): no names and no
            -- tombstones, under any quota and allowance above 0. One
            -- inserted since waits for its transaction, then is locked
            -- as above.
            INSERT INTO ipv4s (v4_val, timestamp) VALUES (p_v4, p_created)
                ON CONFLICT (v4_val) DO NOTHING RETURNING id INTO v_id;
            IF v_id IS NOT NULL THEN
                INSERT INTO names (name, value, owner_pub, af, ip_id, timestamp, updated, created)
                    VALUES (p_name, p_value, p_owner, p_af, v_id, p_timestamp, p_updated,
                        p_created);
                RETURN 1;
            END IF;
            SELECT id INTO v_id FROM ipv4s WHERE v4_val = p_v4 FOR UPDATE;
        END IF;
    ELSE
        SELECT id INTO v_id FROM ipv6s WHERE v6_glob_main = p_main
            AND v6_glob_extra = p_extra AND v6_lan_id = p_lan AND v6_iface_id = p_iface
            FOR UPDATE;
    END IF;
    IF v_id IS NULL THEN
        RETURN 0;
    END IF;
    SELECT COALESCE(SUM(CASE WHEN af = p_af AND timestamp > p_cutoff THEN 1 ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN af = 0 AND timestamp = p_af AND updated >= p_since
            THEN 1 ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN af = 0 AND timestamp = p_af AND updated < p_since
            THEN 1 ELSE 0 END), 0)
        INTO v_live, v_young, v_old
        FROM names WHERE af IN (0, p_af) AND ip_id = v_id;
    IF v_young >= p_tombstones THEN
        RETURN 2;
    END IF;
    IF v_live >= p_names OR v_old > 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO names (name, value, owner_pub, af, ip_id, timestamp, updated, created)
        VALUES (p_name, p_value, p_owner, p_af, v_id, p_timestamp, p_updated, p_created);
    RETURN 1;
END
$$";

/// One schema step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    pub(crate) statement: &'static str,
    /// Skip the statement when this count query returns more than 0.
    pub(crate) applied_if: Option<&'static str>,
}

impl Migration {
    const fn always(statement: &'static str) -> Self {
        Self {
            statement,
            applied_if: None,
        }
    }

    const fn unless(statement: &'static str, applied_if: &'static str) -> Self {
        Self {
            statement,
            applied_if: Some(applied_if),
        }
    }
}

/// Every statement, in the backend's dialect, built once.
#[derive(Debug)]
pub(crate) struct Queries {
    pub(crate) get_live: SqlStr,
    pub(crate) name_row: SqlStr,
    pub(crate) delete_expired: SqlStr,
    pub(crate) name_row_with_address: SqlStr,
    pub(crate) refresh_in_place: SqlStr,
    /// `name_row_with_address`, `refresh_in_place` and, for a name no row
    /// holds, the common claim in one statement, where the dialect has
    /// data-modifying CTEs and the claim function (PostgreSQL).
    pub(crate) name_row_refreshing: Option<SqlStr>,
    /// `name_row_refreshing` for 1 to [`MAX_READ_BATCH`] PUTs at once
    /// (index n − 1), where it exists (PostgreSQL).
    pub(crate) name_rows_refreshing: Vec<SqlStr>,
    pub(crate) v4_id: SqlStr,
    pub(crate) v4_insert: SqlStr,
    pub(crate) v6_id: SqlStr,
    pub(crate) v6_ifaces: SqlStr,
    pub(crate) v6_subnets: SqlStr,
    pub(crate) v6_insert: SqlStr,
    pub(crate) row_counts: SqlStr,
    pub(crate) bump_victim: SqlStr,
    pub(crate) update_name: SqlStr,
    pub(crate) claim_tombstone: SqlStr,
    pub(crate) insert_name: SqlStr,
    pub(crate) tombstone: SqlStr,
    pub(crate) bury: SqlStr,
    pub(crate) drop_row_tombstones: SqlStr,
    pub(crate) usage_v4: SqlStr,
    pub(crate) usage_v6: SqlStr,
    pub(crate) purge_names: SqlStr,
    pub(crate) purge_v4: SqlStr,
    pub(crate) purge_v6: SqlStr,
    pub(crate) prefix_insert: SqlStr,
    pub(crate) prefix_lock: SqlStr,
    pub(crate) unused_v4: SqlStr,
    pub(crate) unused_v6: SqlStr,
    pub(crate) lock_v4_row: SqlStr,
    pub(crate) lock_v6_row: SqlStr,
    pub(crate) v4_row_names: SqlStr,
    pub(crate) v6_row_names: SqlStr,
    pub(crate) delete_v4_row: SqlStr,
    pub(crate) delete_v6_row: SqlStr,
    pub(crate) purge_prefixes: SqlStr,
}

/// PUTs one batched fast-path statement carries at most (PostgreSQL).
pub(crate) const MAX_READ_BATCH: usize = 32;

/// `name_row_refreshing` for `n` PUTs of distinct names in one statement,
/// hence one transaction (PostgreSQL): the same read, the same guarded
/// refresh and the same claim for each, with its index (0 to n − 1) in a
/// last column. One round trip for several PUTs, where each round trip
/// costs the server a send that wakes the database and the wake-ups back
/// (issue 12, CPU per PUT).
fn name_rows_refreshing(n: usize) -> String {
    // Per PUT: its index, name, value, timestamp, updated, owner, cutoff,
    // IPv4, the four IPv6 parts, address family, claim time,
    // young-tombstone bound, quota, tombstone limit.
    let one = "(?::BIGINT, ?::BYTEA, ?::BYTEA, ?::BIGINT, ?::DOUBLE PRECISION, ?::BYTEA, \
               ?::BIGINT, ?::BIGINT, ?::BIGINT, ?::BIGINT, ?::BIGINT, ?::BIGINT, ?::BIGINT, \
               ?::BIGINT, ?::DOUBLE PRECISION, ?::BIGINT, ?::BIGINT)";
    let rows = vec![one; n].join(", ");
    format!(
        "WITH req (i, name, value, ts, upd_at, owner, cutoff, v4, m, e, l, f, af, created, \
         since, quota, tombs) AS (VALUES {rows}), \
         cur AS (SELECT req.i, n.id, n.owner_pub, n.value, n.af, n.ip_id, n.timestamp, \
         n.updated, i4.v4_val, i6.v6_glob_main, i6.v6_glob_extra, i6.v6_lan_id, \
         i6.v6_iface_id FROM req JOIN names n ON n.name = req.name \
         LEFT JOIN ipv4s i4 ON n.af = 2 AND i4.id = n.ip_id \
         LEFT JOIN ipv6s i6 ON n.af = 10 AND i6.id = n.ip_id), \
         upd AS (UPDATE names SET value = req.value, timestamp = req.ts, updated = req.upd_at \
         FROM cur JOIN req ON req.i = cur.i \
         WHERE names.id = cur.id AND names.owner_pub = req.owner AND names.af = cur.af \
         AND names.ip_id = cur.ip_id AND names.updated < req.upd_at AND names.timestamp > req.cutoff \
         AND (cur.v4_val = req.v4 OR (cur.v6_glob_main = req.m AND cur.v6_glob_extra = req.e \
         AND cur.v6_lan_id = req.l AND cur.v6_iface_id = req.f)) RETURNING cur.i), \
         claimed AS (SELECT req.i, keyway_claim_v2(req.name, req.value, req.owner, req.af, \
         req.v4, req.m, req.e, req.l, req.f, req.ts, req.upd_at, req.created, req.cutoff, \
         req.since, req.quota, req.tombs) AS c FROM req \
         WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.i = req.i)) \
         SELECT cur.id, cur.owner_pub, cur.value, cur.af, cur.ip_id, cur.timestamp, \
         cur.updated, cur.v4_val, cur.v6_glob_main, cur.v6_glob_extra, cur.v6_lan_id, \
         cur.v6_iface_id, (SELECT COUNT(*) FROM upd WHERE upd.i = cur.i), NULL::BIGINT, cur.i \
         FROM cur UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
         NULL, NULL, 0, c, i FROM claimed"
    )
}

/// Address rows one purge transaction examines at most: each is locked
/// while it is checked, so a purge holds few locks for a short time.
pub(crate) const PURGE_ADDRESS_BATCH: i64 = 500;

/// A quota row's counts (`WriteTx::row_counts`) in one pass over its
/// names: bind af, cutoff, af, since, af, since, af, ip_id.
fn row_counts(b: Backend) -> SqlStr {
    b.sql(&format!(
        "SELECT {}, {}, {} FROM names WHERE af IN (0, ?) AND ip_id = ?",
        b.int("COALESCE(SUM(CASE WHEN af = ? AND timestamp > ? THEN 1 ELSE 0 END), 0)"),
        b.int(
            "COALESCE(SUM(CASE WHEN af = 0 AND timestamp = ? AND updated >= ? \
                     THEN 1 ELSE 0 END), 0)"
        ),
        b.int(
            "COALESCE(SUM(CASE WHEN af = 0 AND timestamp = ? AND updated < ? \
                     THEN 1 ELSE 0 END), 0)"
        ),
    ))
}

/// SQLite's quota counts: three range counts over the covering index
/// `names_by_address (af, ip_id, timestamp, updated)`, each reading only
/// the entries it counts; one pass with a `CASE` per entry cost the
/// writer ~2.4 µs more per claim (issue 12, CPU per claim).
/// Same counts as [`row_counts`]: a tombstone keeps its quota row's `af`
/// in `timestamp`. Bind ?1 af, ?2 ip_id, ?3 cutoff, ?4 since.
const SQLITE_ROW_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM names WHERE af = ?1 AND ip_id = ?2 AND timestamp > ?3), \
     (SELECT COUNT(*) FROM names WHERE af = 0 AND ip_id = ?2 AND timestamp = ?1 \
     AND updated >= ?4), \
     (SELECT COUNT(*) FROM names WHERE af = 0 AND ip_id = ?2 AND timestamp = ?1 \
     AND updated < ?4)";

impl Queries {
    pub(crate) fn new(b: Backend) -> Self {
        let id = b.int("id");
        let u64p = b.u64_param();
        let lock = b.for_update();
        Self {
            get_live: b.sql(&format!(
                "SELECT value, owner_pub, {}, updated FROM names \
                 WHERE name = ? AND timestamp > ? AND af <> 0",
                b.int("timestamp")
            )),
            name_row: b.sql(&format!(
                "SELECT {id}, owner_pub, value, {}, {}, {}, updated FROM names WHERE name = ?{lock}",
                b.int("af"),
                b.int("ip_id"),
                b.int("timestamp")
            )),
            // The lock-free fast path (`rules::put_without_locks`): the
            // name's row with the address of its quota row.
            name_row_with_address: b.sql(&format!(
                "SELECT {}, n.owner_pub, n.value, {}, {}, {}, n.updated, {}, {}, {}, {}, {} \
                 FROM names n LEFT JOIN ipv4s i4 ON n.af = 2 AND i4.id = n.ip_id \
                 LEFT JOIN ipv6s i6 ON n.af = 10 AND i6.id = n.ip_id WHERE n.name = ?",
                b.int("n.id"),
                b.int("n.af"),
                b.int("n.ip_id"),
                b.int("n.timestamp"),
                b.int("i4.v4_val"),
                b.int("i6.v6_glob_main"),
                b.int("i6.v6_glob_extra"),
                b.int("i6.v6_lan_id"),
                b.int("i6.v6_iface_id"),
            )),
            // Everything the decision read, guarded in the write: same
            // owner, still live in the same quota row, and older.
            refresh_in_place: b.sql(
                "UPDATE names SET value = ?, timestamp = ?, updated = ? \
                 WHERE id = ? AND owner_pub = ? AND af = ? AND ip_id = ? AND updated < ? \
                 AND timestamp > ?",
            ),
            // The row as read, and whether the refresh guarded as
            // `refresh_in_place` (plus: in the request's own address row,
            // IPv4 or IPv6, the other family's parameters NULL) changed it;
            // when no row holds the name, a row of NULLs and what the claim
            // (`CLAIM_FUNCTION`) decided instead. The function's statements
            // see what committed before each of them, not this statement's
            // snapshot: a name claimed since the read is refused by the
            // unique key, and the PUT is decided again.
            name_row_refreshing: (b == Backend::Postgres).then(|| {
                b.sql(
                    "WITH cur AS (SELECT n.id, n.owner_pub, n.value, n.af, n.ip_id, \
                     n.timestamp, n.updated, i4.v4_val, i6.v6_glob_main, i6.v6_glob_extra, \
                     i6.v6_lan_id, i6.v6_iface_id \
                     FROM names n LEFT JOIN ipv4s i4 ON n.af = 2 AND i4.id = n.ip_id \
                     LEFT JOIN ipv6s i6 ON n.af = 10 AND i6.id = n.ip_id WHERE n.name = ?), \
                     upd AS (UPDATE names SET value = ?, timestamp = ?, updated = ? FROM cur \
                     WHERE names.id = cur.id AND names.owner_pub = ? AND names.af = cur.af \
                     AND names.ip_id = cur.ip_id AND names.updated < ? AND names.timestamp > ? \
                     AND (cur.v4_val = ? OR (cur.v6_glob_main = ? AND cur.v6_glob_extra = ? \
                     AND cur.v6_lan_id = ? AND cur.v6_iface_id = ?)) RETURNING names.id), \
                     claimed AS (SELECT keyway_claim_v2(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
                     ?, ?) AS c WHERE NOT EXISTS (SELECT 1 FROM cur)) \
                     SELECT cur.id, cur.owner_pub, cur.value, cur.af, cur.ip_id, cur.timestamp, \
                     cur.updated, cur.v4_val, cur.v6_glob_main, cur.v6_glob_extra, cur.v6_lan_id, \
                     cur.v6_iface_id, (SELECT COUNT(*) FROM upd), NULL::BIGINT FROM cur \
                     UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                     NULL, NULL, 0, c FROM claimed",
                )
            }),
            name_rows_refreshing: if b == Backend::Postgres {
                (1..=MAX_READ_BATCH).map(|n| b.sql(&name_rows_refreshing(n))).collect()
            } else {
                Vec::new()
            },
            delete_expired: b.sql("DELETE FROM names WHERE id = ? AND af <> 0 AND timestamp <= ?"),
            v4_id: b.sql(&format!("SELECT {id} FROM ipv4s WHERE v4_val = ?{lock}")),
            v4_insert: b.sql("INSERT INTO ipv4s (v4_val, timestamp) VALUES (?, ?)"),
            v6_id: b.sql(&format!(
                "SELECT {id} FROM ipv6s WHERE v6_glob_main = ? AND v6_glob_extra = ? \
                 AND v6_lan_id = ? AND v6_iface_id = {u64p}{lock}"
            )),
            v6_ifaces: b.sql(
                "SELECT COUNT(*) FROM ipv6s WHERE v6_glob_main = ? AND v6_glob_extra = ? \
                 AND v6_lan_id = ?",
            ),
            v6_subnets: b.sql(
                "SELECT COUNT(DISTINCT v6_lan_id) FROM ipv6s \
                 WHERE v6_glob_main = ? AND v6_glob_extra = ?",
            ),
            v6_insert: b.sql(&format!(
                "INSERT INTO ipv6s (v6_glob_main, v6_glob_extra, v6_lan_id, v6_iface_id, timestamp) \
                 VALUES (?, ?, ?, {u64p}, ?)"
            )),
            // One statement for the three counts a claim needs (live names,
            // young and old tombstones of the quota row): a round trip each
            // was most of a claim's time on PostgreSQL and MariaDB.
            row_counts: match b {
                Backend::Sqlite => b.sql(SQLITE_ROW_COUNTS),
                Backend::Postgres | Backend::MySql => row_counts(b),
            },
            bump_victim: b.sql(&format!(
                "SELECT {id} FROM names WHERE af = ? AND ip_id = ? AND timestamp > ? \
                 AND COALESCE(created, timestamp) <= ? ORDER BY COALESCE(created, timestamp), id \
                 LIMIT 1{}",
                b.for_update_skip_locked()
            )),
            // The guards repeat, in the write itself, what the rules checked:
            // a tombstone or an older write of the same owner.
            update_name: b.sql(
                "UPDATE names SET value = ?, af = ?, ip_id = ?, timestamp = ?, updated = ? \
                 WHERE id = ? AND owner_pub = ? AND af <> 0 AND updated < ?",
            ),
            claim_tombstone: b.sql(
                "UPDATE names SET value = ?, owner_pub = ?, af = ?, ip_id = ?, timestamp = ?, \
                 updated = ?, created = ? WHERE id = ? AND af = 0 AND updated < ?",
            ),
            insert_name: b.sql(
                "INSERT INTO names (name, value, owner_pub, af, ip_id, timestamp, updated, created) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            // `timestamp = af` before `af = 0`: MySQL assigns left to right
            // with the values already assigned, the others with the old ones.
            tombstone: b.sql(
                "UPDATE names SET value = ?, timestamp = af, af = 0, updated = ? \
                 WHERE id = ? AND owner_pub = ? AND af <> 0 AND updated < ?",
            ),
            // Still a live name of the quota row it was chosen from.
            bury: b.sql(
                "UPDATE names SET value = ?, timestamp = af, af = 0 \
                 WHERE id = ? AND af = ? AND ip_id = ?",
            ),
            drop_row_tombstones: b.sql(
                "DELETE FROM names WHERE af = 0 AND ip_id = ? AND timestamp = ? AND updated < ?",
            ),
            usage_v4: b.sql(
                "SELECT COUNT(*) FROM names n JOIN ipv4s i ON n.ip_id = i.id \
                 WHERE n.af = 2 AND i.v4_val = ? AND n.timestamp > ?",
            ),
            usage_v6: b.sql(&format!(
                "SELECT COUNT(*) FROM names n JOIN ipv6s i ON n.ip_id = i.id \
                 WHERE n.af = 10 AND i.v6_glob_main = ? AND i.v6_glob_extra = ? \
                 AND i.v6_lan_id = ? AND i.v6_iface_id = {u64p} AND n.timestamp > ?"
            )),
            purge_names: b.sql(
                "DELETE FROM names WHERE timestamp <= ? AND (af <> 0 OR updated < ?)",
            ),
            // An address keeps its row while tombstones count against it: a
            // new row would start their count afresh.
            purge_v4: b.sql(
                "DELETE FROM ipv4s WHERE id NOT IN (SELECT ip_id FROM names \
                 WHERE af = 2 OR (af = 0 AND timestamp = 2))",
            ),
            purge_v6: b.sql(
                "DELETE FROM ipv6s WHERE id NOT IN (SELECT ip_id FROM names \
                 WHERE af = 10 OR (af = 0 AND timestamp = 10))",
            ),
            // Server databases: a claim holds its address row (FOR UPDATE)
            // while it adds a name there, so a purge deletes an address row
            // only under that lock, after counting its names again: a
            // plain `DELETE … NOT IN (…)` judges with a snapshot taken
            // before the claim committed and would orphan its name.
            unused_v4: b.sql(&format!(
                "SELECT {id} FROM ipv4s WHERE id NOT IN (SELECT ip_id FROM names \
                 WHERE af = 2 OR (af = 0 AND timestamp = 2)) ORDER BY id LIMIT {PURGE_ADDRESS_BATCH}"
            )),
            unused_v6: b.sql(&format!(
                "SELECT {id} FROM ipv6s WHERE id NOT IN (SELECT ip_id FROM names \
                 WHERE af = 10 OR (af = 0 AND timestamp = 10)) ORDER BY id LIMIT {PURGE_ADDRESS_BATCH}"
            )),
            lock_v4_row: b.sql(&format!("SELECT {id} FROM ipv4s WHERE id = ?{lock}")),
            lock_v6_row: b.sql(&format!("SELECT {id} FROM ipv6s WHERE id = ?{lock}")),
            v4_row_names: b.sql(
                "SELECT COUNT(*) FROM names WHERE (af = 2 AND ip_id = ?) \
                 OR (af = 0 AND ip_id = ? AND timestamp = 2)",
            ),
            v6_row_names: b.sql(
                "SELECT COUNT(*) FROM names WHERE (af = 10 AND ip_id = ?) \
                 OR (af = 0 AND ip_id = ? AND timestamp = 10)",
            ),
            delete_v4_row: b.sql("DELETE FROM ipv4s WHERE id = ?"),
            delete_v6_row: b.sql("DELETE FROM ipv6s WHERE id = ?"),
            // The /48 lock rows (`lock_v6_prefix`): one whose /48 has no
            // address left. A claim that still waits on a deleted one
            // finds it gone and starts again (a lost race).
            prefix_insert: b.sql(match b {
                Backend::Postgres | Backend::Sqlite => {
                    "INSERT INTO ipv6_prefixes (v6_glob_main, v6_glob_extra) VALUES (?, ?) \
                     ON CONFLICT DO NOTHING"
                }
                // Not INSERT IGNORE: on an existing row it takes a shared
                // lock, and two writers holding it both wait to upgrade it
                // for the FOR UPDATE that follows (a deadlock every time
                // several new addresses of one /48 claim at once). This
                // takes the row's exclusive lock at once.
                Backend::MySql => {
                    "INSERT INTO ipv6_prefixes (v6_glob_main, v6_glob_extra) VALUES (?, ?) \
                     ON DUPLICATE KEY UPDATE v6_glob_main = v6_glob_main"
                }
            }),
            prefix_lock: b.sql(&format!(
                "SELECT {} FROM ipv6_prefixes WHERE v6_glob_main = ? AND v6_glob_extra = ?{lock}",
                b.int("v6_glob_main")
            )),
            purge_prefixes: b.sql(
                "DELETE FROM ipv6_prefixes WHERE NOT EXISTS (SELECT 1 FROM ipv6s \
                 WHERE ipv6s.v6_glob_main = ipv6_prefixes.v6_glob_main \
                 AND ipv6s.v6_glob_extra = ipv6_prefixes.v6_glob_extra)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            Backend::Postgres
                .sql("SELECT a FROM t WHERE b = ? AND c = ?")
                .as_str(),
            "SELECT a FROM t WHERE b = $1 AND c = $2"
        );
        assert_eq!(Backend::MySql.sql("x = ?").as_str(), "x = ?");
    }

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            Backend::from_url("sqlite:/tmp/x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("mysql://root@127.0.0.1/nb").ok(),
            Some(Backend::MySql)
        );
        assert!(Backend::from_url("redis://x").is_err());
    }
}
