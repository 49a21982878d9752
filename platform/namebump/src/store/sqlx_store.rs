//! [`NameStore`] on PostgreSQL or MariaDB/MySQL through sqlx's Any driver,
//! with the statements in each backend's dialect (`dialect.rs`).
//!
//! Several server processes may share one database (issue 12), so nothing
//! that must hold globally lives in a process: each write is one
//! transaction on a pooled connection, decided by the shared rules
//! (`rules.rs`) under row locks taken in one fixed order (name, address,
//! bump victim). A write that loses a race (a deadlock the database broke,
//! a lock timeout, a duplicate insert, a guarded write that found its row
//! changed) is rolled back and decided again from scratch, a bounded
//! number of times; after the last one the request gets a server error,
//! never a guessed answer. A write is acknowledged only once its COMMIT
//! returned; a refused one is rolled back, leaving nothing behind.
//!
//! Writes run in tasks of their own, so a request that times out cannot
//! cancel a transaction half way: its write completes or rolls back.
//! Connections stay with the store between requests (`lease.rs`), without
//! the pool's ping at every release.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyway_core::namebump::address::Ipv6Parts;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::db_metrics::{DbMetrics, RetryReason};
use super::dialect::{Backend, MAX_READ_BATCH, Queries};
use super::lease::{ACQUIRE_TIMEOUT, Stash};
use super::rules::{
    self, AfterRead, ClaimBounds, Existing, FastPath, InPlace, Lookup, NameWrite, OptimisticTx,
    RowCounts, WriteTx,
};
use super::statistics::Growth;
use super::writer::{Applied, Job, Reply};
use super::{
    DelOutcome, DelRequest, IpKey, Limits, NameRecord, NameStore, Purged, PutOutcome, PutRequest,
    StoreError, Then,
};

/// Writes in flight per pooled connection: beyond this a request waits
/// before it starts, rather than queueing unboundedly for a connection.
const WRITES_PER_CONNECTION: usize = 4;

/// Attempts of one write before it is answered with a server error.
const MAX_ATTEMPTS: u32 = 8;

/// The first pause before a retry, doubled each time (with jitter).
const FIRST_BACKOFF: Duration = Duration::from_millis(2);

/// Batched reads in flight at once (PostgreSQL, `read_batches`): PUTs that
/// arrive while they run wait for the next, so a busy server sends several
/// PUTs per round trip without holding any back on purpose.
const READ_BATCHES_IN_FLIGHT: usize = 2;

/// PUTs queued for a batched read at most; more wait to be queued.
const READ_BATCH_QUEUE: usize = 256;

#[derive(Clone, Debug)]
pub(crate) struct SqlxStore {
    connections: Stash,
    queries: Arc<Queries>,
    limits: Limits,
    writes: Arc<Semaphore>,
    metrics: DbMetrics,
    /// PUTs for the batched fast path (PostgreSQL), `put_then` only.
    read_batches: Option<mpsc::Sender<Job>>,
    /// When to analyze the tables (PostgreSQL, `statistics.rs`).
    growth: Option<Arc<Growth>>,
}

impl SqlxStore {
    pub(crate) async fn open(
        url: &str,
        backend: Backend,
        limits: Limits,
        connections: u32,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        // No ping before each use: it is a round trip per request, and a
        // write that finds its connection broken is retried on another
        // (`RetryReason::Connection`), a read fails as any database error.
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .test_before_acquire(false)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    for statement in session_settings(backend) {
                        conn.execute(*statement).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        migrate(&pool, backend).await?;
        let store = Self {
            connections: Stash::new(pool, connections),
            queries: Arc::new(Queries::new(backend)),
            limits,
            writes: Arc::new(Semaphore::new(WRITES_PER_CONNECTION * connections as usize)),
            metrics: DbMetrics::default(),
            read_batches: None,
            growth: (backend == Backend::Postgres).then(Arc::default),
        };
        // The batching task holds a store without the queue's sender, so
        // it ends once the last store that can queue is gone.
        let read_batches = (!store.queries.name_rows_refreshing.is_empty()).then(|| {
            let (tx, rx) = mpsc::channel(READ_BATCH_QUEUE);
            tokio::spawn(read_batches(store.clone(), rx));
            tx
        });
        Ok(Self {
            read_batches,
            ..store
        })
    }

    pub(crate) async fn close(&self) {
        self.connections.close().await;
    }

    pub(crate) fn metrics(&self) -> &DbMetrics {
        &self.metrics
    }

    /// Counts a PUT and, when the tables may have outgrown their planner
    /// statistics (`statistics.rs`), analyzes them in a task of its own.
    fn count_put(&self) {
        if let Some(growth) = &self.growth
            && growth.put()
        {
            let (store, growth) = (self.clone(), growth.clone());
            tokio::spawn(async move {
                let rows = match store.analyze().await {
                    Ok(Some(rows)) => Some(rows),
                    Ok(None) => {
                        tracing::warn!(
                            "the names table was not analyzed: does this server's database \
                             role own it?"
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ANALYZE of the names tables failed");
                        None
                    }
                };
                growth.analyzed(rows);
            });
        }
    }

    /// ANALYZE of the tables the fast path reads (new statistics make
    /// PostgreSQL plan the cached statements again); the names table's
    /// rows it found, `None` if the table is still unanalyzed (PostgreSQL
    /// skips, with a warning, a table the role does not own): counted as a
    /// failure, so such a server tries less and less often.
    async fn analyze(&self) -> Result<Option<u64>, sqlx::Error> {
        let mut lease = self.connections.lease().await?;
        sqlx::raw_sql("ANALYZE names, ipv4s, ipv6s")
            .execute(lease.conn())
            .await?;
        let rows: i64 =
            sqlx::query("SELECT reltuples::BIGINT FROM pg_class WHERE oid = 'names'::regclass")
                .fetch_one(lease.conn())
                .await?
                .try_get(0)?;
        lease.keep();
        Ok(u64::try_from(rows).ok())
    }

    /// Runs a write in a task of its own and waits for its outcome.
    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit_then(make(Reply::Waiting(tx))).await;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `job` in a task of its own (a cancelled request cannot cut a
    /// transaction short), which gives the job its outcome.
    async fn submit_then(&self, job: Job) {
        let Ok(permit) = self.writes.clone().acquire_owned().await else {
            job.finish(Err(StoreError::WriterGone));
            return;
        };
        let store = self.clone();
        tokio::spawn(async move {
            let result = store.run(&job).await;
            job.finish(result);
            drop(permit);
        });
    }

    /// Decides and commits a write, again from the start after a lost race.
    async fn run(&self, job: &Job) -> Result<Applied, StoreError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(job).await {
                Ok(applied) => return Ok(applied),
                Err(TxError::Db(e)) => return Err(StoreError::Database(e)),
                Err(TxError::Retry(reason, detail)) => {
                    self.metrics.retried(reason);
                    if attempt >= MAX_ATTEMPTS {
                        self.metrics.gave_up();
                        tracing::warn!(%detail, attempts = attempt, "write gave up");
                        return Err(StoreError::Contention(detail));
                    }
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt on a leased connection, kept for the next request if
    /// the attempt ended normally.
    async fn attempt(&self, job: &Job) -> Result<Applied, TxError> {
        let mut lease = self.connections.lease().await?;
        let result = self.attempt_on(lease.conn(), job).await;
        if result.is_ok() {
            lease.keep();
        }
        result
    }

    /// One transaction: committed if the write changed something, rolled
    /// back if it was refused or had nothing to do.
    async fn attempt_on(&self, conn: &mut AnyConnection, job: &Job) -> Result<Applied, TxError> {
        // Without a transaction first, where every statement is atomic on
        // its own (`rules::put_without_locks`, and a DEL, whose every
        // write is one guarded statement): no BEGIN, no COMMIT, no lock.
        let mut autocommit = SqlxTx {
            c: &mut *conn,
            q: &self.queries,
            metrics: &self.metrics,
        };
        let mut unheld = false;
        match job {
            Job::Put(r, now, _) => {
                let started = Instant::now();
                match rules::put_without_locks(&mut autocommit, &self.limits, r, *now).await? {
                    FastPath::Decided(outcome) => return Ok(Applied::Put(outcome)),
                    FastPath::NoRow(Some(outcome)) => {
                        // The statement was a transaction of its own.
                        self.metrics.transaction(started.elapsed());
                        return Ok(Applied::Put(outcome));
                    }
                    FastPath::NoRow(None) => unheld = true,
                    FastPath::Locking => {}
                }
            }
            Job::Del(..) => return job.apply(&mut autocommit, &self.limits).await,
            Job::Purge(..) => {}
        }
        let started = Instant::now();
        self.metrics.round_trip();
        let mut tx = conn.begin().await?;
        let mut writer = SqlxTx {
            c: &mut tx,
            q: &self.queries,
            metrics: &self.metrics,
        };
        let result = match job {
            Job::Put(r, now, _) if unheld => rules::put_unheld(&mut writer, &self.limits, r, *now)
                .await
                .map(Applied::Put),
            _ => job.apply(&mut writer, &self.limits).await,
        };
        // COMMIT or ROLLBACK.
        self.metrics.round_trip();
        let result = match result {
            Ok(applied) if applied.changed() => tx.commit().await.map(|()| applied),
            Ok(applied) => tx.rollback().await.map(|()| applied),
            Err(e) => {
                // The connection goes back to the pool (not the stash: the
                // attempt failed) rolled back either way; this only makes
                // it happen now.
                let _ = tx.rollback().await;
                self.metrics.transaction(started.elapsed());
                return Err(e);
            }
        };
        self.metrics.transaction(started.elapsed());
        Ok(result?)
    }
}

/// Per-connection settings. MariaDB runs READ COMMITTED, as PostgreSQL
/// does by default: every statement sees what committed before it, so a
/// count read under a row lock includes the previous holder's write (under
/// REPEATABLE READ it would read the transaction's older snapshot). A
/// statement waits at most 5 s for a row lock, then its transaction is
/// retried: a writer that holds a lock that long is stuck, not busy.
fn session_settings(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Postgres => &["SET lock_timeout = '5s'"],
        Backend::MySql => &[
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET SESSION innodb_lock_wait_timeout = 5",
        ],
        Backend::Sqlite => &[],
    }
}

/// `base` to twice `base`, spread so that writers that collided do not
/// collide again in step.
fn jitter(base: Duration) -> Duration {
    let spread = RandomState::new().hash_one(Instant::now()) % 1024;
    base + base.mul_f64(spread as f64 / 1024.0)
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

impl NameStore for SqlxStore {
    async fn get(&self, name: &[u8], now: f64) -> Result<Option<NameRecord>, StoreError> {
        let mut lease = self.connections.lease().await?;
        let row = sqlx::query(self.queries.get_live.clone())
            .bind(name.to_vec())
            .bind(rules::cutoff(&self.limits, now))
            .fetch_optional(lease.conn())
            .await?;
        lease.keep();
        let Some(row) = row else { return Ok(None) };
        Ok(Some(NameRecord {
            value: row.try_get(0)?,
            owner: owner(&row, 1)?,
            timestamp: row.try_get(2)?,
            updated: row.try_get(3)?,
        }))
    }

    async fn put(&self, request: PutRequest, now: f64) -> Result<PutOutcome, StoreError> {
        self.count_put();
        self.submit(|tx| Job::Put(request, now, tx)).await
    }

    async fn put_then(&self, request: PutRequest, now: f64, then: Then<PutOutcome>) {
        self.count_put();
        let job = Job::Put(request, now, Reply::Then(then));
        match &self.read_batches {
            Some(queue) => {
                if let Err(mpsc::error::SendError(job)) = queue.send(job).await {
                    job.finish(Err(StoreError::WriterGone));
                }
            }
            None => self.submit_then(job).await,
        }
    }

    async fn delete(&self, request: DelRequest, now: f64) -> Result<DelOutcome, StoreError> {
        self.submit(|tx| Job::Del(request, now, tx)).await
    }

    async fn usage(&self, ip: IpKey, now: f64) -> Result<u32, StoreError> {
        let q = &self.queries;
        let cutoff = rules::cutoff(&self.limits, now);
        let query = match ip {
            IpKey::V4(v4) => sqlx::query(q.usage_v4.clone()).bind(i64::from(v4)),
            IpKey::V6(p) => v6(sqlx::query(q.usage_v6.clone()), &p),
        };
        let mut lease = self.connections.lease().await?;
        let count: i64 = query
            .bind(cutoff)
            .fetch_one(lease.conn())
            .await?
            .try_get(0)?;
        lease.keep();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn purge_expired(&self, now: f64) -> Result<Purged, StoreError> {
        self.submit(|tx| Job::Purge(now, tx)).await
    }
}

impl OptimisticTx for SqlxTx<'_> {
    async fn name_row_with_address(
        &mut self,
        r: &PutRequest,
        claim: &ClaimBounds,
    ) -> Result<Lookup, TxError> {
        let Some(statement) = &self.q.name_row_refreshing else {
            let row = sqlx::query(self.q.name_row_with_address.clone())
                .bind(r.name.clone())
                .fetch_optional(self.c())
                .await?;
            let Some(row) = row else {
                return Ok(Lookup::Absent(None));
            };
            return Ok(Lookup::Row(
                existing(&row)?,
                row_address(&row)?,
                InPlace::NotTried,
            ));
        };
        let write = NameWrite::of(r, 0, 0);
        let (v4, v6_parts) = address_columns(&r.ip);
        let mut query = sqlx::query(statement.clone())
            .bind(r.name.clone())
            .bind(r.value.clone())
            .bind(write.timestamp)
            .bind(write.updated)
            .bind(r.owner.to_vec())
            .bind(write.updated)
            .bind(claim.cutoff)
            .bind(v4);
        for part in v6_parts {
            query = query.bind(part);
        }
        // The claim's parameters (`CLAIM_FUNCTION`).
        query = query
            .bind(r.name.clone())
            .bind(r.value.clone())
            .bind(r.owner.to_vec())
            .bind(i64::from(r.ip.af()))
            .bind(v4);
        for part in v6_parts {
            query = query.bind(part);
        }
        let query = query
            .bind(write.timestamp)
            .bind(write.updated)
            .bind(claim.created)
            .bind(claim.cutoff)
            .bind(claim.tombstones_since)
            .bind(claim.names)
            .bind(claim.tombstones);
        // One row: the name's, or the claim's when no row held the name.
        let row = query.fetch_one(self.c()).await?;
        Ok(lookup(&row)?)
    }

    async fn refresh_in_place(
        &mut self,
        id: i64,
        row: &NameWrite<'_>,
        cutoff: i64,
    ) -> Result<u64, TxError> {
        let query = sqlx::query(self.q.refresh_in_place.clone())
            .bind(row.value.to_vec())
            .bind(row.timestamp)
            .bind(row.updated)
            .bind(id)
            .bind(row.owner.to_vec())
            .bind(row.af)
            .bind(row.ip_id)
            .bind(row.updated)
            .bind(cutoff);
        self.changed(query).await
    }
}

/// How a statement failed: a race to decide again, or a real error.
#[derive(Debug)]
enum TxError {
    Retry(RetryReason, String),
    Db(sqlx::Error),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        let Some(reason) = retry_reason(&e) else {
            return Self::Db(e);
        };
        Self::Retry(reason, e.to_string())
    }
}

/// The errors that mean "another writer got there first".
fn retry_reason(e: &sqlx::Error) -> Option<RetryReason> {
    // Safe to decide again even if the lost connection had committed: the
    // retry then finds its own write (an idempotent success).
    if matches!(e, sqlx::Error::Io(_)) {
        return Some(RetryReason::Connection);
    }
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if db.is_unique_violation() {
        return Some(RetryReason::Duplicate);
    }
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match my.number() {
            1213 => Some(RetryReason::Deadlock),
            1205 => Some(RetryReason::LockTimeout),
            _ => None,
        };
    }
    match db.code().as_deref() {
        Some("40P01") => Some(RetryReason::Deadlock),
        Some("40001") => Some(RetryReason::Serialization),
        Some("55P03") => Some(RetryReason::LockTimeout),
        _ => None,
    }
}

/// What the fast path's read found, from a row of
/// `Queries::name_row_refreshing` (or of `name_rows_refreshing`): the
/// name's row, or NULLs and what the claim decided.
fn lookup(row: &AnyRow) -> Result<Lookup, sqlx::Error> {
    let id: Option<i64> = row.try_get(0)?;
    if id.is_none() {
        let decided: Option<i64> = row.try_get(13)?;
        return Ok(Lookup::Absent(match decided {
            Some(1) => Some(PutOutcome::Stored),
            Some(2) => Some(PutOutcome::AtQuota),
            _ => None,
        }));
    }
    let refreshed: i64 = row.try_get(12)?;
    let in_place = if refreshed > 0 {
        InPlace::Refreshed
    } else {
        InPlace::Unchanged
    };
    Ok(Lookup::Row(existing(row)?, row_address(row)?, in_place))
}

/// Forms the batches of the PostgreSQL fast path: each takes what was
/// queued while the previous ones ran (at most [`MAX_READ_BATCH`], names
/// distinct: two PUTs of one name in one statement would race each other),
/// at most [`READ_BATCHES_IN_FLIGHT`] at once.
async fn read_batches(store: SqlxStore, mut queue: mpsc::Receiver<Job>) {
    let in_flight = Arc::new(Semaphore::new(READ_BATCHES_IN_FLIGHT));
    let mut held = None;
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_READ_BATCH {
            let Ok(job) = queue.try_recv() else { break };
            if batch.iter().any(|queued| same_name(queued, &job)) {
                held = Some(job);
                break;
            }
            batch.push(job);
        }
        let store = store.clone();
        tokio::spawn(async move {
            store.read_batch(batch).await;
            drop(permit);
        });
    }
}

fn same_name(a: &Job, b: &Job) -> bool {
    matches!((a, b), (Job::Put(a, ..), Job::Put(b, ..)) if a.name == b.name)
}

impl SqlxStore {
    /// Decides a batch of PUTs with one statement where it can: each
    /// refreshed in place, claimed, or refused from its row is answered;
    /// the rest (the locking way) and every PUT of a batch whose statement
    /// failed (a lost race: a deadlock, a name claimed since the read) go
    /// the way of a single write, retries included.
    async fn read_batch(&self, batch: Vec<Job>) {
        let started = Instant::now();
        let lookups = match self.read_rows(&batch).await {
            Ok(lookups) => lookups,
            Err(e) => {
                if let TxError::Retry(reason, _) = &e {
                    self.metrics.retried(*reason);
                }
                tracing::debug!(error = ?e, puts = batch.len(), "batched read failed; one by one");
                vec![None; batch.len()]
            }
        };
        let mut claimed = false;
        let mut alone = Vec::new();
        for (job, lookup) in batch.into_iter().zip(lookups) {
            let decided = match (&job, lookup) {
                (Job::Put(r, now, _), Some(lookup)) => {
                    match rules::after_read(lookup, r, rules::cutoff(&self.limits, *now)) {
                        AfterRead::Done(FastPath::Decided(outcome)) => Some(outcome),
                        AfterRead::Done(FastPath::NoRow(Some(outcome))) => {
                            claimed = true;
                            Some(outcome)
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            match decided {
                Some(outcome) => job.finish(Ok(Applied::Put(outcome))),
                None => alone.push(job),
            }
        }
        if claimed {
            // The statement was one transaction.
            self.metrics.transaction(started.elapsed());
        }
        if !alone.is_empty() {
            self.one_by_one(alone).await;
        }
    }

    /// Decides the PUTs a batch left, one after another in a task of their
    /// own. Not side by side: most are the first claims from a new address,
    /// and the first of them to commit creates its row, which the others
    /// then find (side by side, they raced to create it and all but one
    /// retried after a pause: p99 of claims at half the maximum rate went
    /// from 5 to 12 ms).
    async fn one_by_one(&self, jobs: Vec<Job>) {
        let Ok(permit) = self.writes.clone().acquire_owned().await else {
            for job in jobs {
                job.finish(Err(StoreError::WriterGone));
            }
            return;
        };
        let store = self.clone();
        tokio::spawn(async move {
            for job in jobs {
                let result = store.run(&job).await;
                job.finish(result);
            }
            drop(permit);
        });
    }

    /// One statement for the batch: what the read found for each PUT, by
    /// its place in the batch (`None`: no row came back for it).
    async fn read_rows(&self, batch: &[Job]) -> Result<Vec<Option<Lookup>>, TxError> {
        let Some(statement) = self
            .queries
            .name_rows_refreshing
            .get(batch.len().wrapping_sub(1))
        else {
            return Ok(vec![None; batch.len()]);
        };
        let mut query = sqlx::query(statement.clone());
        for (i, job) in batch.iter().enumerate() {
            let Job::Put(r, now, _) = job else { continue };
            let claim = ClaimBounds::new(&self.limits, r, *now);
            let write = NameWrite::of(r, 0, 0);
            let (v4, v6_parts) = address_columns(&r.ip);
            query = query
                .bind(i as i64)
                .bind(r.name.clone())
                .bind(r.value.clone())
                .bind(write.timestamp)
                .bind(write.updated)
                .bind(r.owner.to_vec())
                .bind(claim.cutoff)
                .bind(v4);
            for part in v6_parts {
                query = query.bind(part);
            }
            query = query
                .bind(i64::from(r.ip.af()))
                .bind(claim.created)
                .bind(claim.tombstones_since)
                .bind(claim.names)
                .bind(claim.tombstones);
        }
        let mut lease = self.connections.lease().await?;
        self.metrics.round_trip();
        let rows = query.fetch_all(lease.conn()).await?;
        lease.keep();
        let mut lookups = vec![None; batch.len()];
        for row in rows {
            let i: i64 = row.try_get(14)?;
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| lookups.get_mut(i)) {
                *slot = Some(lookup(&row)?);
            }
        }
        Ok(lookups)
    }
}

/// The address of a live name's quota row, from columns 7 (IPv4) and 8 to
/// 11 (IPv6) of `Queries::name_row_with_address`.
fn row_address(row: &AnyRow) -> Result<Option<IpKey>, sqlx::Error> {
    let v4: Option<i64> = row.try_get(7)?;
    let v6: [Option<i64>; 4] = [
        row.try_get(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
        row.try_get(11)?,
    ];
    // Columns out of their types' range cannot be an address a
    // request comes from: no address, so the locking path decides.
    let address = match (v4, v6) {
        (Some(v4), _) => u32::try_from(v4).ok().map(IpKey::V4),
        (None, [Some(main), Some(extra), Some(lan), Some(iface)]) => {
            match (
                u32::try_from(main),
                u16::try_from(extra),
                u16::try_from(lan),
            ) {
                (Ok(glob_main), Ok(glob_extra), Ok(lan_id)) => Some(IpKey::V6(Ipv6Parts {
                    glob_main,
                    glob_extra,
                    lan_id,
                    iface_id: iface as u64,
                })),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(address)
}

/// A names row's first seven columns, in `Queries::name_row`'s order.
fn existing(row: &AnyRow) -> Result<Existing, sqlx::Error> {
    Ok(Existing {
        id: row.try_get(0)?,
        owner: owner(row, 1)?,
        value: row.try_get(2)?,
        af: row.try_get(3)?,
        ip_id: row.try_get(4)?,
        timestamp: row.try_get(5)?,
        updated: row.try_get(6)?,
    })
}

fn owner(row: &AnyRow, index: usize) -> Result<[u8; 33], sqlx::Error> {
    let bytes: Vec<u8> = row.try_get(index)?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        sqlx::Error::Decode(format!("owner_pub has {} bytes, expected 33", b.len()).into())
    })
}

type AnyQuery = Query<'static, Any, AnyArguments>;

/// An address as the statements that take either family bind it: the IPv4
/// column and the four IPv6 columns, NULL where the family is the other
/// (the interface id as its i64 bit pattern, as in [`v6`]).
fn address_columns(ip: &IpKey) -> (Option<i64>, [Option<i64>; 4]) {
    match ip {
        IpKey::V4(v4) => (Some(i64::from(*v4)), [None; 4]),
        IpKey::V6(p) => (
            None,
            [
                Some(i64::from(p.glob_main)),
                Some(i64::from(p.glob_extra)),
                Some(i64::from(p.lan_id)),
                Some(p.iface_id as i64),
            ],
        ),
    }
}

/// Binds an IPv6 address's four columns; the interface id as its i64 bit
/// pattern (see Backend::u64_param).
fn v6(query: AnyQuery, p: &Ipv6Parts) -> AnyQuery {
    query
        .bind(i64::from(p.glob_main))
        .bind(i64::from(p.glob_extra))
        .bind(i64::from(p.lan_id))
        .bind(p.iface_id as i64)
}

/// The rules' statements on an open sqlx transaction.
struct SqlxTx<'a> {
    c: &'a mut AnyConnection,
    q: &'a Queries,
    metrics: &'a DbMetrics,
}

impl SqlxTx<'_> {
    /// The connection, for one statement: each is a round trip, counted.
    fn c(&mut self) -> &mut AnyConnection {
        self.metrics.round_trip();
        &mut *self.c
    }

    async fn optional_id(&mut self, query: AnyQuery) -> Result<Option<i64>, TxError> {
        Ok(query
            .fetch_optional(self.c())
            .await?
            .map(|row| row.try_get(0))
            .transpose()?)
    }

    /// A statement that takes a row lock, timed for the lock metrics.
    async fn locking_id(&mut self, query: AnyQuery) -> Result<Option<i64>, TxError> {
        let started = Instant::now();
        let id = self.optional_id(query).await;
        self.metrics.lock(started.elapsed());
        id
    }

    async fn count(&mut self, query: AnyQuery) -> Result<i64, TxError> {
        Ok(query.fetch_one(self.c()).await?.try_get(0)?)
    }

    /// Rows a write matched. sqlx's MySQL driver connects with
    /// CLIENT_FOUND_ROWS, so MySQL and MariaDB report matched rows, as
    /// PostgreSQL and SQLite do (and every guarded write changes `updated`
    /// or `af` anyway).
    async fn changed(&mut self, query: AnyQuery) -> Result<u64, TxError> {
        Ok(query.execute(self.c()).await?.rows_affected())
    }

    /// Deletes the address rows no name or tombstone refers to any more,
    /// each under its row lock and after counting its names again (see
    /// `Queries::unused_v4`).
    async fn purge_addresses(
        &mut self,
        unused: &sqlx::SqlStr,
        lock: &sqlx::SqlStr,
        names: &sqlx::SqlStr,
        delete: &sqlx::SqlStr,
    ) -> Result<u64, TxError> {
        let candidates: Vec<i64> = sqlx::query(unused.clone())
            .fetch_all(self.c())
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for id in candidates {
            if self
                .locking_id(sqlx::query(lock.clone()).bind(id))
                .await?
                .is_none()
            {
                continue;
            }
            let count = self
                .count(sqlx::query(names.clone()).bind(id).bind(id))
                .await?;
            if count == 0 {
                deleted += self.changed(sqlx::query(delete.clone()).bind(id)).await?;
            }
        }
        Ok(deleted)
    }
}

impl WriteTx for SqlxTx<'_> {
    type Error = TxError;

    fn lost_race(rows: u64) -> TxError {
        TxError::Retry(
            RetryReason::LostRace,
            format!("a guarded write changed {rows} rows: another writer changed the row first"),
        )
    }

    async fn name_row(&mut self, name: &[u8]) -> Result<Option<Existing>, TxError> {
        let started = Instant::now();
        let row = sqlx::query(self.q.name_row.clone())
            .bind(name.to_vec())
            .fetch_optional(self.c())
            .await;
        self.metrics.lock(started.elapsed());
        let row = row?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(existing(&row)?))
    }

    async fn delete_expired(&mut self, id: i64, cutoff: i64) -> Result<u64, TxError> {
        let query = sqlx::query(self.q.delete_expired.clone())
            .bind(id)
            .bind(cutoff);
        self.changed(query).await
    }

    async fn v4_id(&mut self, v4: u32) -> Result<Option<i64>, TxError> {
        self.locking_id(sqlx::query(self.q.v4_id.clone()).bind(i64::from(v4)))
            .await
    }

    async fn v6_id(&mut self, p: &Ipv6Parts) -> Result<Option<i64>, TxError> {
        self.locking_id(v6(sqlx::query(self.q.v6_id.clone()), p))
            .await
    }

    async fn lock_v6_prefix(&mut self, p: &Ipv6Parts) -> Result<(), TxError> {
        let (main, extra) = (i64::from(p.glob_main), i64::from(p.glob_extra));
        sqlx::query(self.q.prefix_insert.clone())
            .bind(main)
            .bind(extra)
            .execute(self.c())
            .await?;
        let locked = self
            .locking_id(
                sqlx::query(self.q.prefix_lock.clone())
                    .bind(main)
                    .bind(extra),
            )
            .await?;
        // A purge deleted the row while this writer waited for it.
        match locked {
            Some(_) => Ok(()),
            None => Err(Self::lost_race(0)),
        }
    }

    async fn v6_ifaces(&mut self, p: &Ipv6Parts) -> Result<i64, TxError> {
        let query = sqlx::query(self.q.v6_ifaces.clone())
            .bind(i64::from(p.glob_main))
            .bind(i64::from(p.glob_extra))
            .bind(i64::from(p.lan_id));
        self.count(query).await
    }

    async fn v6_subnets(&mut self, p: &Ipv6Parts) -> Result<i64, TxError> {
        let query = sqlx::query(self.q.v6_subnets.clone())
            .bind(i64::from(p.glob_main))
            .bind(i64::from(p.glob_extra));
        self.count(query).await
    }

    async fn insert_ip(&mut self, ip: &IpKey, now: i64) -> Result<i64, TxError> {
        let (insert, find) = match ip {
            IpKey::V4(v4) => (
                sqlx::query(self.q.v4_insert.clone()).bind(i64::from(*v4)),
                sqlx::query(self.q.v4_id.clone()).bind(i64::from(*v4)),
            ),
            IpKey::V6(p) => (
                v6(sqlx::query(self.q.v6_insert.clone()), p),
                v6(sqlx::query(self.q.v6_id.clone()), p),
            ),
        };
        insert.bind(now).execute(self.c()).await?;
        Ok(find.fetch_one(self.c()).await?.try_get(0)?)
    }

    async fn row_counts(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        since: f64,
    ) -> Result<RowCounts, TxError> {
        let row = sqlx::query(self.q.row_counts.clone())
            .bind(af)
            .bind(cutoff)
            .bind(af)
            .bind(since)
            .bind(af)
            .bind(since)
            .bind(af)
            .bind(ip_id)
            .fetch_one(self.c())
            .await?;
        Ok(RowCounts {
            live: row.try_get(0)?,
            young_tombstones: row.try_get(1)?,
            old_tombstones: row.try_get(2)?,
        })
    }

    async fn bump_victim(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        claimed_before: i64,
    ) -> Result<Option<i64>, TxError> {
        let query = sqlx::query(self.q.bump_victim.clone())
            .bind(af)
            .bind(ip_id)
            .bind(cutoff)
            .bind(claimed_before);
        self.locking_id(query).await
    }

    async fn update_name(&mut self, id: i64, row: &NameWrite<'_>) -> Result<u64, TxError> {
        let query = sqlx::query(self.q.update_name.clone())
            .bind(row.value.to_vec())
            .bind(row.af)
            .bind(row.ip_id)
            .bind(row.timestamp)
            .bind(row.updated)
            .bind(id)
            .bind(row.owner.to_vec())
            .bind(row.updated);
        self.changed(query).await
    }

    async fn claim_tombstone(
        &mut self,
        id: i64,
        row: &NameWrite<'_>,
        created: i64,
    ) -> Result<u64, TxError> {
        let query = sqlx::query(self.q.claim_tombstone.clone())
            .bind(row.value.to_vec())
            .bind(row.owner.to_vec())
            .bind(row.af)
            .bind(row.ip_id)
            .bind(row.timestamp)
            .bind(row.updated)
            .bind(created)
            .bind(id)
            .bind(row.updated);
        self.changed(query).await
    }

    async fn tombstone(&mut self, id: i64, owner: &[u8; 33], updated: f64) -> Result<u64, TxError> {
        let query = sqlx::query(self.q.tombstone.clone())
            .bind(Vec::<u8>::new())
            .bind(updated)
            .bind(id)
            .bind(owner.to_vec())
            .bind(updated);
        self.changed(query).await
    }

    async fn bury(&mut self, id: i64, af: i64, ip_id: i64) -> Result<u64, TxError> {
        let query = sqlx::query(self.q.bury.clone())
            .bind(Vec::<u8>::new())
            .bind(id)
            .bind(af)
            .bind(ip_id);
        self.changed(query).await
    }

    async fn drop_row_tombstones(
        &mut self,
        af: i64,
        ip_id: i64,
        before: f64,
    ) -> Result<u64, TxError> {
        let query = sqlx::query(self.q.drop_row_tombstones.clone())
            .bind(ip_id)
            .bind(af)
            .bind(before);
        self.changed(query).await
    }

    async fn insert_name(&mut self, row: &NameWrite<'_>, created: i64) -> Result<(), TxError> {
        sqlx::query(self.q.insert_name.clone())
            .bind(row.name.to_vec())
            .bind(row.value.to_vec())
            .bind(row.owner.to_vec())
            .bind(row.af)
            .bind(row.ip_id)
            .bind(row.timestamp)
            .bind(row.updated)
            .bind(created)
            .execute(self.c())
            .await?;
        Ok(())
    }

    async fn purge(&mut self, cutoff: i64, tombstone_cutoff: f64) -> Result<Purged, TxError> {
        let names = self
            .changed(
                sqlx::query(self.q.purge_names.clone())
                    .bind(cutoff)
                    .bind(tombstone_cutoff),
            )
            .await?;
        let q = self.q;
        let v4 = self
            .purge_addresses(
                &q.unused_v4,
                &q.lock_v4_row,
                &q.v4_row_names,
                &q.delete_v4_row,
            )
            .await?;
        let v6 = self
            .purge_addresses(
                &q.unused_v6,
                &q.lock_v6_row,
                &q.v6_row_names,
                &q.delete_v6_row,
            )
            .await?;
        self.changed(sqlx::query(q.purge_prefixes.clone())).await?;
        Ok(Purged {
            names,
            addresses: v4 + v6,
        })
    }
}
