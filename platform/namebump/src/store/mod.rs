//! Name storage: what the server needs from a database, as one trait.
//!
//! The rules the seed promises live here, behind [`NameStore`], so every
//! backend enforces them identically:
//! - first come, first served; only the owner key updates or deletes;
//! - per-IP quotas (IPv4: 20 names per address; IPv6: 5 per address,
//!   20 addresses per /64, 15,000 /64s per /48);
//! - at quota, DO_BUMP evicts the oldest *bumpable* name of the same quota
//!   row (claimed at least 30 days ago); DONT_BUMP is rejected;
//! - a name not refreshed for 30 days is expired: it reads as absent at once
//!   and can be claimed again;
//! - a refresh from another address moves the name's quota accounting there;
//! - `updated` only moves forward: an older request never reverts a newer
//!   write (replays, reordered legs), while re-sending the current value is
//!   an idempotent success (the reference client's TCP/UDP race, bug 12/14);
//! - deleting or bumping a name leaves a tombstone with the name's last
//!   `updated`, kept at least as long as any signed request stays fresh, so
//!   a replayed PUT cannot bring a deleted name back; anyone may claim the
//!   name with a newer request;
//! - a tombstone stays accounted to the quota row its name was in: a row
//!   holding `tombstones_per_address` young tombstones claims no name that
//!   needs a new row until they age out, so PUT/DEL floods cannot grow
//!   storage past the quotas.

mod db_metrics;
mod dialect;
mod gather;
mod lease;
mod publish;
mod rules;
mod sqlite;
mod sqlx_store;
mod statistics;
mod writer;

pub use db_metrics::{DbMetrics, LOCK_WAIT_THRESHOLD, RetryReason};
pub use gather::Coming;

use std::future::Future;
use std::net::IpAddr;

use keyway_core::namebump::address::{AF_INET, AF_INET6, Ipv6Parts, ipv4_to_u32};
use keyway_core::namebump::freshness::{CLOCK_SKEW_SLACK, MAX_REQUEST_TTL};
use keyway_core::namebump::{
    MIN_NAME_DURATION, V4_NAME_LIMIT, V6_IFACE_LIMIT, V6_NAME_LIMIT, V6_SUBNET_LIMIT,
};

/// The quota row a request is accounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4(u32),
    V6(Ipv6Parts),
}

impl IpKey {
    /// IPv4-mapped IPv6 sources (dual-stack sockets) count as IPv4.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(ipv4_to_u32(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(ipv4_to_u32(v4)),
                None => Self::V6(Ipv6Parts::from(v6)),
            },
        }
    }

    /// 2 or 10, as stored and as reported by USAGE.
    pub fn af(&self) -> u8 {
        match self {
            Self::V4(_) => AF_INET,
            Self::V6(_) => AF_INET6,
        }
    }
}

/// Database connections per server process by default (PostgreSQL and
/// MariaDB): each write holds one for its transaction.
pub const DEFAULT_DB_CONNECTIONS: u32 = 16;

/// Quota and expiry settings. The defaults are the reference's (spec §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub v4_names: u32,
    pub v6_names: u32,
    pub v6_ifaces_per_64: u32,
    pub v6_subnets_per_48: u32,
    /// Seconds without refresh after which a name expires, and the age from
    /// first claim after which it becomes bumpable.
    pub name_lifetime: i64,
    /// Seconds a deleted or bumped name's tombstone is kept past its
    /// `updated`, raised to at least [`MIN_TOMBSTONE_LIFETIME`]. A little
    /// longer than the minimum covers a server clock stepped back; much
    /// longer only lets a PUT/DEL flood keep more rows.
    pub tombstone_lifetime: i64,
    /// Tombstones younger than `tombstone_lifetime` a quota row (an
    /// address) may hold and still claim a name no row holds: a source's
    /// rows stay within its name quota plus this, however fast it puts and
    /// deletes fresh names.
    pub tombstones_per_address: u32,
}

/// The longest a signed request stays fresh after its `updated` (its ttl)
/// plus the skew allowed ahead of the server clock: a tombstone kept this
/// long outlives every request it must refuse.
pub const MIN_TOMBSTONE_LIFETIME: i64 = (MAX_REQUEST_TTL + CLOCK_SKEW_SLACK) as i64;

impl Default for Limits {
    fn default() -> Self {
        Self {
            v4_names: V4_NAME_LIMIT,
            v6_names: V6_NAME_LIMIT,
            v6_ifaces_per_64: V6_IFACE_LIMIT,
            v6_subnets_per_48: V6_SUBNET_LIMIT,
            name_lifetime: MIN_NAME_DURATION as i64,
            tombstone_lifetime: 120,
            // Several times what an honest address (a NAT, a test suite)
            // deletes in two minutes; storage stays per-address bounded.
            tombstones_per_address: 100,
        }
    }
}

impl Limits {
    pub(crate) fn tombstone_lifetime(&self) -> i64 {
        self.tombstone_lifetime.max(MIN_TOMBSTONE_LIFETIME)
    }

    pub fn names_for(&self, ip: &IpKey) -> u32 {
        match ip {
            IpKey::V4(_) => self.v4_names,
            IpKey::V6(_) => self.v6_names,
        }
    }
}

/// A live name.
#[derive(Clone, Debug, PartialEq)]
pub struct NameRecord {
    pub value: Vec<u8>,
    pub owner: [u8; 33],
    /// Whole seconds: the last write's `updated`, rounded (what GET returns).
    pub timestamp: i64,
    /// The last write's `updated`, full precision.
    pub updated: f64,
}

/// A verified PUT.
#[derive(Clone, Debug, PartialEq)]
pub struct PutRequest {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    /// The key that signed it (already verified).
    pub owner: [u8; 33],
    pub ip: IpKey,
    pub updated: f64,
    /// DO_BUMP: may evict the oldest bumpable name at quota.
    pub bump: bool,
    /// The PUT packet as the owner signed it (plaintext, `vkc` and
    /// signature): kept with the name by a store that publishes its names
    /// ([`SqlStore::open_publishing`]), ignored otherwise.
    pub signed: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written (new, refreshed or moved).
    Stored,
    /// Written after evicting the oldest bumpable name of the quota row.
    StoredAfterBump,
    /// Same value already stored at the same or a newer time: nothing to do.
    Unchanged,
    /// The quota row is full and nothing could be bumped.
    AtQuota,
    /// The name belongs to another key.
    NotOwner,
    /// Older than what is stored, with a different value, or not newer
    /// than the name's deletion: refused so that a replayed or delayed
    /// request cannot revert a newer write or bring a deleted name back.
    Stale,
}

/// A verified DEL.
#[derive(Clone, Debug, PartialEq)]
pub struct DelRequest {
    pub name: Vec<u8>,
    pub owner: [u8; 33],
    pub updated: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelOutcome {
    /// Deleted; a tombstone keeps the DEL's `updated`.
    Deleted,
    /// Nothing (live) to delete, or already deleted: success, as in the
    /// reference, and no effect.
    Absent,
    NotOwner,
    /// Not newer than the stored write: a replayed DEL must not delete a
    /// name claimed again since.
    Stale,
}

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub names: u64,
    pub addresses: u64,
}

/// Names in an SQL database: SQLite (through rusqlite, the embedded
/// default), PostgreSQL or MariaDB/MySQL (through sqlx), chosen by URL.
#[derive(Clone, Debug)]
pub struct SqlStore(Backing);

#[derive(Clone, Debug)]
enum Backing {
    Sqlite(sqlite::SqliteStore),
    Server(sqlx_store::SqlxStore),
}

impl SqlStore {
    /// Connects (or opens), runs the migrations and starts the writer.
    ///
    /// `url` is `sqlite:PATH` (the file is created if missing; WAL, durable
    /// commits), `postgres://…` or `mysql://…` (MariaDB too).
    pub async fn open(url: &str, limits: Limits) -> Result<Self, StoreError> {
        Self::open_with(url, limits, DEFAULT_DB_CONNECTIONS).await
    }

    /// [`Self::open`] with at most `connections` PostgreSQL or MariaDB
    /// connections (at least 1; ignored for SQLite). Every server process
    /// on a database holds up to this many: keep their sum under the
    /// database's connection limit.
    pub async fn open_with(
        url: &str,
        limits: Limits,
        connections: u32,
    ) -> Result<Self, StoreError> {
        match dialect::Backend::from_url(url)? {
            dialect::Backend::Sqlite => {
                let path = sqlite_path(url)?;
                Ok(Self(Backing::Sqlite(sqlite::SqliteStore::open(
                    path.as_ref(),
                    limits,
                )?)))
            }
            backend => Ok(Self(Backing::Server(
                sqlx_store::SqlxStore::open(url, backend, limits, connections.max(1)).await?,
            ))),
        }
    }

    /// [`Self::open`] on SQLite, publishing the names as the Drayer stream
    /// at `stream` (created with its `.privatekey` if missing): each live
    /// name is a record holding its owner's signed PUT
    /// (`keyway_core::namebump::published`). Returns the store and the
    /// stream's public key (base64). PostgreSQL and MariaDB are refused:
    /// their several server processes have no one publisher (DESIGN.md).
    pub async fn open_publishing(
        url: &str,
        limits: Limits,
        stream: &std::path::Path,
    ) -> Result<(Self, String), StoreError> {
        if dialect::Backend::from_url(url)? != dialect::Backend::Sqlite {
            return Err(StoreError::PublishNeedsSqlite(url.to_owned()));
        }
        let path = sqlite_path(url)?;
        let (store, public) = sqlite::SqliteStore::open_publishing(path.as_ref(), limits, stream)?;
        Ok((Self(Backing::Sqlite(store)), public))
    }

    /// Names changed since the publisher last wrote them to the stream (0
    /// when not publishing): the stream is current when this reads 0.
    pub async fn publish_backlog(&self) -> Result<u64, StoreError> {
        match &self.0 {
            Backing::Sqlite(s) => s.publish_backlog(),
            Backing::Server(_) => Ok(0),
        }
    }

    /// The database metrics: transaction latency on every backend (on
    /// SQLite, one transaction is one batch of the writer); retries, lock
    /// waits and statements on PostgreSQL and MariaDB (SQLite's single
    /// writer never retries or waits on a row lock).
    pub fn db_metrics(&self) -> Option<DbMetrics> {
        Some(match &self.0 {
            Backing::Sqlite(s) => s.metrics().clone(),
            Backing::Server(s) => s.metrics().clone(),
        })
    }

    /// Closes the connection pool (PostgreSQL and MariaDB: a database cannot
    /// be dropped while connections are open).
    pub async fn close(&self) {
        if let Backing::Server(s) = &self.0 {
            s.close().await;
        }
    }
}

/// The file of `sqlite:PATH` or `sqlite://PATH` (query parameters ignored).
fn sqlite_path(url: &str) -> Result<String, StoreError> {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        // Readers and the writer use separate connections: it must be a file.
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok(path.to_owned())
}

impl NameStore for SqlStore {
    async fn get(&self, name: &[u8], now: f64) -> Result<Option<NameRecord>, StoreError> {
        match &self.0 {
            Backing::Sqlite(s) => s.get(name, now).await,
            Backing::Server(s) => s.get(name, now).await,
        }
    }

    async fn put(&self, request: PutRequest, now: f64) -> Result<PutOutcome, StoreError> {
        match &self.0 {
            Backing::Sqlite(s) => s.put(request, now).await,
            Backing::Server(s) => s.put(request, now).await,
        }
    }

    async fn put_then(&self, request: PutRequest, now: f64, then: Then<PutOutcome>) {
        match &self.0 {
            Backing::Sqlite(s) => s.put_then(request, now, then).await,
            Backing::Server(s) => s.put_then(request, now, then).await,
        }
    }

    async fn delete(&self, request: DelRequest, now: f64) -> Result<DelOutcome, StoreError> {
        match &self.0 {
            Backing::Sqlite(s) => s.delete(request, now).await,
            Backing::Server(s) => s.delete(request, now).await,
        }
    }

    async fn usage(&self, ip: IpKey, now: f64) -> Result<u32, StoreError> {
        match &self.0 {
            Backing::Sqlite(s) => s.usage(ip, now).await,
            Backing::Server(s) => s.usage(ip, now).await,
        }
    }

    async fn purge_expired(&self, now: f64) -> Result<Purged, StoreError> {
        match &self.0 {
            Backing::Sqlite(s) => s.purge_expired(now).await,
            Backing::Server(s) => s.purge_expired(now).await,
        }
    }

    fn db_metrics(&self) -> Option<DbMetrics> {
        SqlStore::db_metrics(self)
    }
}

/// A write's outcome handler for [`NameStore::put_then`].
pub type Then<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send + Sync>;

/// A storage failure. Requests that hit one get no state change.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported database URL {0:?} (use sqlite:PATH, postgres://… or mysql://…)")]
    UnsupportedUrl(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    #[error("write batch failed, nothing committed: {0}")]
    BatchFailed(String),
    #[error("SQLite error: {0}")]
    Sqlite(String),
    #[error("the database stayed contended through every retry: {0}")]
    Contention(String),
    #[error("publishing the names as a stream: {0}")]
    Publish(String),
    #[error(
        "--publish-stream needs an SQLite database (one server process writes it and the stream); {0} is not one"
    )]
    PublishNeedsSqlite(String),
}

/// Name storage. `now` is the server clock in Unix seconds; stores never
/// read a clock themselves.
pub trait NameStore: Send + Sync + 'static {
    fn get(
        &self,
        name: &[u8],
        now: f64,
    ) -> impl Future<Output = Result<Option<NameRecord>, StoreError>> + Send;

    fn put(
        &self,
        request: PutRequest,
        now: f64,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;

    /// [`Self::put`] whose outcome goes to `then`, called where the write
    /// completes: on SQLite, by the writer thread right after the commit,
    /// so no task waits to be woken for the outcome (issue 12, CPU per
    /// PUT). `then` runs on the store's thread: it must be quick and must
    /// not block. Returns once the write is queued (or done); `then` has
    /// been or will be called exactly once, unless the store stops first
    /// and drops it.
    fn put_then(
        &self,
        request: PutRequest,
        now: f64,
        then: Then<PutOutcome>,
    ) -> impl Future<Output = ()> + Send {
        async move { then(self.put(request, now).await) }
    }

    /// Announces a PUT whose request is still being checked, to be handed
    /// to [`Self::put_then`] (or refused) soon: a store that commits in
    /// batches may wait a little for it (`gather.rs`). Keep the [`Coming`]
    /// until `put_then` has returned.
    fn coming_write(&self) -> Coming {
        Coming::none()
    }

    fn delete(
        &self,
        request: DelRequest,
        now: f64,
    ) -> impl Future<Output = Result<DelOutcome, StoreError>> + Send;

    /// Live names held by a quota row.
    fn usage(&self, ip: IpKey, now: f64) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Deletes expired names and addresses no name refers to.
    fn purge_expired(&self, now: f64) -> impl Future<Output = Result<Purged, StoreError>> + Send;

    /// Metrics of the database work, for the server to publish.
    fn db_metrics(&self) -> Option<DbMetrics> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            sqlite_path("sqlite:/tmp/a.db").ok().as_deref(),
            Some("/tmp/a.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db?mode=rwc").ok().as_deref(),
            Some("/tmp/a.db")
        );
        assert_eq!(
            sqlite_path("sqlite:names.db").ok().as_deref(),
            Some("names.db")
        );
        assert!(sqlite_path("sqlite::memory:").is_err());
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4() {
        let mapped: IpAddr = "::ffff:127.0.0.2"
            .parse()
            .unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(IpKey::from_ip(mapped), IpKey::V4(0x7f00_0002));
        let v6: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(IpKey::from_ip(v6).af(), 10);
    }
}
