//! [`NameStore`] on SQLite, PostgreSQL or MariaDB/MySQL through sqlx.
//!
//! Reads go straight to the pool. Writes go through one writer task that
//! applies them in batches: one transaction per batch, so a durable commit
//! (an fsync on SQLite) is shared by every write in it, and a request is
//! acknowledged only after its batch committed. Each write checks
//! everything before it changes anything, so a refused request leaves
//! nothing behind, not even the address row it would have created (bug 34).
//! A single writer also means no deadlocks between concurrent writers (the
//! reference's InnoDB 1213s, bug 12).

use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row, SqlStr};
use tokio::sync::{mpsc, oneshot};

use super::dialect::Backend;
use super::{
    DelOutcome, DelRequest, IpKey, Limits, NameRecord, NameStore, Purged, PutOutcome, PutRequest,
    StoreError,
};

/// Most writes one transaction carries.
const MAX_BATCH: usize = 128;

/// Names stored through sqlx on any of the three backends.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    queries: Arc<Queries>,
    limits: Limits,
    writer: mpsc::Sender<Job>,
}

enum Job {
    Put(
        PutRequest,
        f64,
        oneshot::Sender<Result<PutOutcome, StoreError>>,
    ),
    Del(
        DelRequest,
        f64,
        oneshot::Sender<Result<DelOutcome, StoreError>>,
    ),
    Purge(f64, oneshot::Sender<Result<Purged, StoreError>>),
}

impl SqlStore {
    /// Connects, runs the migrations and starts the writer task.
    ///
    /// `url` is `sqlite:PATH` (the file is created if missing; WAL, durable
    /// commits), `postgres://…` or `mysql://…` (MariaDB too).
    pub async fn open(url: &str, limits: Limits) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let mut options = AnyPoolOptions::new().max_connections(8);
        let url = if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets reads run beside the writer; FULL makes every
                    // commit durable, not just safe against a process crash.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            });
            if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_owned()
        };
        let pool = options.connect(&url).await?;
        migrate(&pool, backend).await?;
        let queries = Arc::new(Queries::new(backend));
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(pool.clone(), queries.clone(), limits, rx));
        Ok(Self {
            pool,
            queries,
            limits,
            writer: tx,
        })
    }

    /// The pool, for tests and tools that inspect the tables.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    fn cutoff(&self, now: f64) -> i64 {
        cutoff(&self.limits, now)
    }
}

/// Names whose timestamp is at or below this are expired.
fn cutoff(limits: &Limits, now: f64) -> i64 {
    (now - limits.name_lifetime as f64).floor() as i64
}

async fn migrate(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    for step in backend.schema() {
        if let Some(check) = step.applied_if {
            let done: i64 = sqlx::query(check).fetch_one(&mut *conn).await?.try_get(0)?;
            if done > 0 {
                continue;
            }
        }
        conn.execute(step.statement).await?;
    }
    Ok(())
}

impl NameStore for SqlStore {
    async fn get(&self, name: &[u8], now: f64) -> Result<Option<NameRecord>, StoreError> {
        let row = sqlx::query(self.queries.get_live.clone())
            .bind(name.to_vec())
            .bind(self.cutoff(now))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(NameRecord {
            value: row.try_get(0)?,
            owner: owner(&row, 1)?,
            timestamp: row.try_get(2)?,
            updated: row.try_get(3)?,
        }))
    }

    async fn put(&self, request: PutRequest, now: f64) -> Result<PutOutcome, StoreError> {
        self.submit(|tx| Job::Put(request, now, tx)).await
    }

    async fn delete(&self, request: DelRequest, now: f64) -> Result<DelOutcome, StoreError> {
        self.submit(|tx| Job::Del(request, now, tx)).await
    }

    async fn usage(&self, ip: IpKey, now: f64) -> Result<u32, StoreError> {
        let q = &self.queries;
        let count: i64 = match ip {
            IpKey::V4(v4) => {
                sqlx::query(q.usage_v4.clone())
                    .bind(i64::from(v4))
                    .bind(self.cutoff(now))
                    .fetch_one(&self.pool)
                    .await?
            }
            IpKey::V6(p) => {
                sqlx::query(q.usage_v6.clone())
                    .bind(i64::from(p.glob_main))
                    .bind(i64::from(p.glob_extra))
                    .bind(i64::from(p.lan_id))
                    .bind(p.iface_id as i64)
                    .bind(self.cutoff(now))
                    .fetch_one(&self.pool)
                    .await?
            }
        }
        .try_get(0)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn purge_expired(&self, now: f64) -> Result<Purged, StoreError> {
        self.submit(|tx| Job::Purge(now, tx)).await
    }
}

fn owner(row: &AnyRow, index: usize) -> Result<[u8; 33], sqlx::Error> {
    let bytes: Vec<u8> = row.try_get(index)?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        sqlx::Error::Decode(format!("owner_pub has {} bytes, expected 33", b.len()).into())
    })
}

/// Every statement, in the backend's dialect, built once.
#[derive(Debug)]
struct Queries {
    get_live: SqlStr,
    name_row: SqlStr,
    delete_name: SqlStr,
    v4_id: SqlStr,
    v4_insert: SqlStr,
    v6_id: SqlStr,
    v6_ifaces: SqlStr,
    v6_subnets: SqlStr,
    v6_insert: SqlStr,
    row_used: SqlStr,
    bump_victim: SqlStr,
    update_name: SqlStr,
    insert_name: SqlStr,
    usage_v4: SqlStr,
    usage_v6: SqlStr,
    purge_names: SqlStr,
    purge_v4: SqlStr,
    purge_v6: SqlStr,
}

impl Queries {
    fn new(b: Backend) -> Self {
        let id = b.int("id");
        let u64p = b.u64_param();
        Self {
            get_live: b.sql(&format!(
                "SELECT value, owner_pub, {}, updated FROM names WHERE name = ? AND timestamp > ?",
                b.int("timestamp")
            )),
            name_row: b.sql(&format!(
                "SELECT {id}, owner_pub, value, {}, {}, {}, updated FROM names WHERE name = ?",
                b.int("af"),
                b.int("ip_id"),
                b.int("timestamp")
            )),
            delete_name: b.sql("DELETE FROM names WHERE id = ?"),
            v4_id: b.sql(&format!("SELECT {id} FROM ipv4s WHERE v4_val = ?")),
            v4_insert: b.sql("INSERT INTO ipv4s (v4_val, timestamp) VALUES (?, ?)"),
            v6_id: b.sql(&format!(
                "SELECT {id} FROM ipv6s WHERE v6_glob_main = ? AND v6_glob_extra = ? \
                 AND v6_lan_id = ? AND v6_iface_id = {u64p}"
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
            row_used: b.sql(
                "SELECT COUNT(*) FROM names WHERE af = ? AND ip_id = ? AND timestamp > ?",
            ),
            bump_victim: b.sql(&format!(
                "SELECT {id} FROM names WHERE af = ? AND ip_id = ? AND timestamp > ? \
                 AND COALESCE(created, timestamp) <= ? ORDER BY COALESCE(created, timestamp), id \
                 LIMIT 1"
            )),
            update_name: b.sql(
                "UPDATE names SET value = ?, af = ?, ip_id = ?, timestamp = ?, updated = ? \
                 WHERE id = ?",
            ),
            insert_name: b.sql(
                "INSERT INTO names (name, value, owner_pub, af, ip_id, timestamp, updated, created) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
            purge_names: b.sql("DELETE FROM names WHERE timestamp <= ?"),
            purge_v4: b.sql("DELETE FROM ipv4s WHERE id NOT IN (SELECT ip_id FROM names WHERE af = 2)"),
            purge_v6: b.sql(
                "DELETE FROM ipv6s WHERE id NOT IN (SELECT ip_id FROM names WHERE af = 10)",
            ),
        }
    }
}

/// The writer task: drains the queue in batches until every sender is gone.
async fn writer(pool: AnyPool, q: Arc<Queries>, limits: Limits, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match run_batch(&pool, &q, &limits, &batch).await {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    job.finish(Ok(result));
                }
            }
            Err(e) => {
                // Nothing of the batch was committed. Run each write in a
                // transaction of its own, so one failing write cannot fail
                // the others with it.
                tracing::warn!(error = %e, writes = batch.len(), "write batch failed; retrying singly");
                for job in batch.drain(..) {
                    let result = run_batch(&pool, &q, &limits, std::slice::from_ref(&job)).await;
                    job.finish(match result {
                        Ok(mut applied) => applied
                            .pop()
                            .ok_or_else(|| StoreError::BatchFailed("no result for a write".into())),
                        Err(e) => Err(StoreError::Database(e)),
                    });
                }
            }
        }
    }
}

/// What a write did.
#[derive(Debug)]
enum Applied {
    Put(PutOutcome),
    Del(DelOutcome),
    Purge(Purged),
}

impl Job {
    async fn apply(
        &self,
        c: &mut AnyConnection,
        q: &Queries,
        limits: &Limits,
    ) -> Result<Applied, sqlx::Error> {
        Ok(match self {
            Self::Put(r, now, _) => Applied::Put(put(c, q, limits, r, *now).await?),
            Self::Del(r, now, _) => Applied::Del(delete(c, q, limits, r, *now).await?),
            Self::Purge(now, _) => Applied::Purge(purge(c, q, limits, *now).await?),
        })
    }

    /// Answers the requester. A dropped receiver (the request timed out) is
    /// not an error: the write stands.
    fn finish(self, result: Result<Applied, StoreError>) {
        let mismatch = || StoreError::BatchFailed("write outcome of the wrong kind".into());
        match self {
            Self::Put(_, _, tx) => drop(tx.send(match result {
                Ok(Applied::Put(o)) => Ok(o),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            })),
            Self::Del(_, _, tx) => drop(tx.send(match result {
                Ok(Applied::Del(o)) => Ok(o),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            })),
            Self::Purge(_, tx) => drop(tx.send(match result {
                Ok(Applied::Purge(p)) => Ok(p),
                Ok(_) => Err(mismatch()),
                Err(e) => Err(e),
            })),
        }
    }
}

/// Applies a batch in one transaction. Each write decides everything before
/// it changes anything (a refused write changes nothing), so no savepoints
/// are needed. The results may be delivered only after this returns, that
/// is after COMMIT; an `Err` means nothing was committed.
async fn run_batch(
    pool: &AnyPool,
    q: &Queries,
    limits: &Limits,
    batch: &[Job],
) -> Result<Vec<Applied>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        results.push(job.apply(&mut tx, q, limits).await?);
    }
    tx.commit().await?;
    Ok(results)
}

/// A names row as the writer sees it.
struct Existing {
    id: i64,
    owner: [u8; 33],
    value: Vec<u8>,
    af: i64,
    ip_id: i64,
    timestamp: i64,
    updated: f64,
}

impl Existing {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            owner: owner(row, 1)?,
            value: row.try_get(2)?,
            af: row.try_get(3)?,
            ip_id: row.try_get(4)?,
            timestamp: row.try_get(5)?,
            updated: row.try_get(6)?,
        })
    }
}

async fn live_row(
    c: &mut AnyConnection,
    q: &Queries,
    name: &[u8],
    cutoff: i64,
) -> Result<Option<Existing>, sqlx::Error> {
    let row = sqlx::query(q.name_row.clone())
        .bind(name.to_vec())
        .fetch_optional(&mut *c)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let existing = Existing::from_row(&row)?;
    if existing.timestamp > cutoff {
        return Ok(Some(existing));
    }
    // Expired: gone for every purpose, so clear it now and let the name be claimed.
    sqlx::query(q.delete_name.clone())
        .bind(existing.id)
        .execute(&mut *c)
        .await?;
    Ok(None)
}

async fn count(
    c: &mut AnyConnection,
    query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<i64, sqlx::Error> {
    query.fetch_one(&mut *c).await?.try_get(0)
}

async fn put(
    c: &mut AnyConnection,
    q: &Queries,
    limits: &Limits,
    r: &PutRequest,
    now: f64,
) -> Result<PutOutcome, sqlx::Error> {
    let cutoff = cutoff(limits, now);
    let existing = live_row(c, q, &r.name, cutoff).await?;
    if let Some(e) = &existing {
        if e.owner != r.owner {
            return Ok(PutOutcome::NotOwner);
        }
        if r.updated <= e.updated {
            return Ok(if r.value == e.value {
                PutOutcome::Unchanged
            } else {
                PutOutcome::Stale
            });
        }
    }
    let af = i64::from(r.ip.af());
    let row = find_ip_row(c, q, limits, &r.ip).await?;
    let existing_id = match row {
        IpRow::Forbidden => return Ok(PutOutcome::AtQuota),
        IpRow::Exists(id) => Some(id),
        IpRow::Creatable => None,
    };
    let in_place = existing
        .as_ref()
        .is_some_and(|e| e.af == af && Some(e.ip_id) == existing_id);
    let mut victim = None;
    if !in_place {
        let used = match existing_id {
            Some(id) => {
                count(
                    c,
                    sqlx::query(q.row_used.clone())
                        .bind(af)
                        .bind(id)
                        .bind(cutoff),
                )
                .await?
            }
            None => 0,
        };
        if used >= i64::from(limits.names_for(&r.ip)) {
            let Some(id) = existing_id.filter(|_| r.bump) else {
                return Ok(PutOutcome::AtQuota);
            };
            let claimed_before = now.floor() as i64 - limits.name_lifetime;
            let row = sqlx::query(q.bump_victim.clone())
                .bind(af)
                .bind(id)
                .bind(cutoff)
                .bind(claimed_before)
                .fetch_optional(&mut *c)
                .await?;
            let Some(row) = row else {
                return Ok(PutOutcome::AtQuota);
            };
            victim = Some(row.try_get::<i64, _>(0)?);
        }
    }

    // Every check passed: from here on the write happens.
    let ip_id = match existing_id {
        Some(id) => id,
        None => create_ip_row(c, q, &r.ip, now.floor() as i64).await?,
    };
    if let Some(victim) = victim {
        sqlx::query(q.delete_name.clone())
            .bind(victim)
            .execute(&mut *c)
            .await?;
    }
    // The reference stores the client's `updated` rounded to whole seconds
    // as the expiry anchor, and GET returns it.
    let timestamp = r.updated.round() as i64;
    match existing {
        Some(e) => {
            sqlx::query(q.update_name.clone())
                .bind(r.value.clone())
                .bind(af)
                .bind(ip_id)
                .bind(timestamp)
                .bind(r.updated)
                .bind(e.id)
                .execute(&mut *c)
                .await?;
        }
        None => {
            sqlx::query(q.insert_name.clone())
                .bind(r.name.clone())
                .bind(r.value.clone())
                .bind(r.owner.to_vec())
                .bind(af)
                .bind(ip_id)
                .bind(timestamp)
                .bind(r.updated)
                .bind(now.floor() as i64)
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(if victim.is_some() {
        PutOutcome::StoredAfterBump
    } else {
        PutOutcome::Stored
    })
}

/// Where a request's quota row stands.
enum IpRow {
    Exists(i64),
    /// Not there yet, and the IPv6 address limits allow creating it.
    Creatable,
    /// Not there, and its /64 or /48 is full.
    Forbidden,
}

async fn find_ip_row(
    c: &mut AnyConnection,
    q: &Queries,
    limits: &Limits,
    ip: &IpKey,
) -> Result<IpRow, sqlx::Error> {
    match *ip {
        IpKey::V4(v4) => {
            let row = sqlx::query(q.v4_id.clone())
                .bind(i64::from(v4))
                .fetch_optional(&mut *c)
                .await?;
            Ok(match row {
                Some(row) => IpRow::Exists(row.try_get(0)?),
                None => IpRow::Creatable,
            })
        }
        IpKey::V6(p) => {
            let (main, extra, lan) = (
                i64::from(p.glob_main),
                i64::from(p.glob_extra),
                i64::from(p.lan_id),
            );
            // Bit pattern of the u64; see Backend::u64_param.
            let iface = p.iface_id as i64;
            let row = sqlx::query(q.v6_id.clone())
                .bind(main)
                .bind(extra)
                .bind(lan)
                .bind(iface)
                .fetch_optional(&mut *c)
                .await?;
            if let Some(row) = row {
                return Ok(IpRow::Exists(row.try_get(0)?));
            }
            let ifaces = count(
                c,
                sqlx::query(q.v6_ifaces.clone())
                    .bind(main)
                    .bind(extra)
                    .bind(lan),
            )
            .await?;
            if ifaces >= i64::from(limits.v6_ifaces_per_64) {
                return Ok(IpRow::Forbidden);
            }
            if ifaces == 0 {
                let subnets =
                    count(c, sqlx::query(q.v6_subnets.clone()).bind(main).bind(extra)).await?;
                if subnets >= i64::from(limits.v6_subnets_per_48) {
                    return Ok(IpRow::Forbidden);
                }
            }
            Ok(IpRow::Creatable)
        }
    }
}

async fn create_ip_row(
    c: &mut AnyConnection,
    q: &Queries,
    ip: &IpKey,
    now: i64,
) -> Result<i64, sqlx::Error> {
    let row = match *ip {
        IpKey::V4(v4) => {
            let v4 = i64::from(v4);
            sqlx::query(q.v4_insert.clone())
                .bind(v4)
                .bind(now)
                .execute(&mut *c)
                .await?;
            sqlx::query(q.v4_id.clone())
                .bind(v4)
                .fetch_one(&mut *c)
                .await?
        }
        IpKey::V6(p) => {
            let parts = [
                i64::from(p.glob_main),
                i64::from(p.glob_extra),
                i64::from(p.lan_id),
            ];
            let iface = p.iface_id as i64;
            sqlx::query(q.v6_insert.clone())
                .bind(parts[0])
                .bind(parts[1])
                .bind(parts[2])
                .bind(iface)
                .bind(now)
                .execute(&mut *c)
                .await?;
            sqlx::query(q.v6_id.clone())
                .bind(parts[0])
                .bind(parts[1])
                .bind(parts[2])
                .bind(iface)
                .fetch_one(&mut *c)
                .await?
        }
    };
    row.try_get(0)
}

async fn delete(
    c: &mut AnyConnection,
    q: &Queries,
    limits: &Limits,
    r: &DelRequest,
    now: f64,
) -> Result<DelOutcome, sqlx::Error> {
    let Some(e) = live_row(c, q, &r.name, cutoff(limits, now)).await? else {
        return Ok(DelOutcome::Absent);
    };
    if e.owner != r.owner {
        return Ok(DelOutcome::NotOwner);
    }
    if r.updated < e.updated {
        return Ok(DelOutcome::Stale);
    }
    sqlx::query(q.delete_name.clone())
        .bind(e.id)
        .execute(&mut *c)
        .await?;
    Ok(DelOutcome::Deleted)
}

async fn purge(
    c: &mut AnyConnection,
    q: &Queries,
    limits: &Limits,
    now: f64,
) -> Result<Purged, sqlx::Error> {
    let names = sqlx::query(q.purge_names.clone())
        .bind(cutoff(limits, now))
        .execute(&mut *c)
        .await?
        .rows_affected();
    let v4 = sqlx::query(q.purge_v4.clone())
        .execute(&mut *c)
        .await?
        .rows_affected();
    let v6 = sqlx::query(q.purge_v6.clone())
        .execute(&mut *c)
        .await?
        .rows_affected();
    Ok(Purged {
        names,
        addresses: v4 + v6,
    })
}
