//! [`NameStore`] on PostgreSQL or MariaDB/MySQL through sqlx's Any driver,
//! with the statements in each backend's dialect (`dialect.rs`). Reads go
//! to the pool; writes go to one writer task (`writer.rs`) applying the
//! shared rules (`rules.rs`).

use std::sync::Arc;

use keyway_core::namebump::address::Ipv6Parts;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row};
use tokio::sync::mpsc;

use super::dialect::{Backend, Queries};
use super::rules::{self, Existing, NameWrite, WriteTx};
use super::writer::{self, Applied, Job, MAX_BATCH};
use super::{
    DelOutcome, DelRequest, IpKey, Limits, NameRecord, NameStore, Purged, PutOutcome, PutRequest,
    StoreError,
};

#[derive(Clone, Debug)]
pub(crate) struct SqlxStore {
    pool: AnyPool,
    queries: Arc<Queries>,
    limits: Limits,
    writer: mpsc::Sender<Job>,
}

impl SqlxStore {
    pub(crate) async fn open(
        url: &str,
        backend: Backend,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await?;
        migrate(&pool, backend).await?;
        let queries = Arc::new(Queries::new(backend));
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_loop(pool.clone(), queries.clone(), limits, rx));
        Ok(Self {
            pool,
            queries,
            limits,
            writer: tx,
        })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
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
        let row = sqlx::query(self.queries.get_live.clone())
            .bind(name.to_vec())
            .bind(rules::cutoff(&self.limits, now))
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
        writer::submit(&self.writer, |tx| Job::Put(request, now, tx)).await
    }

    async fn delete(&self, request: DelRequest, now: f64) -> Result<DelOutcome, StoreError> {
        writer::submit(&self.writer, |tx| Job::Del(request, now, tx)).await
    }

    async fn usage(&self, ip: IpKey, now: f64) -> Result<u32, StoreError> {
        let q = &self.queries;
        let cutoff = rules::cutoff(&self.limits, now);
        let query = match ip {
            IpKey::V4(v4) => sqlx::query(q.usage_v4.clone()).bind(i64::from(v4)),
            IpKey::V6(p) => v6(sqlx::query(q.usage_v6.clone()), &p),
        };
        let count: i64 = query.bind(cutoff).fetch_one(&self.pool).await?.try_get(0)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn purge_expired(&self, now: f64) -> Result<Purged, StoreError> {
        writer::submit(&self.writer, |tx| Job::Purge(now, tx)).await
    }
}

fn owner(row: &AnyRow, index: usize) -> Result<[u8; 33], sqlx::Error> {
    let bytes: Vec<u8> = row.try_get(index)?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        sqlx::Error::Decode(format!("owner_pub has {} bytes, expected 33", b.len()).into())
    })
}

type AnyQuery = Query<'static, Any, AnyArguments>;

/// Binds an IPv6 address's four columns; the interface id as its i64 bit
/// pattern (see Backend::u64_param).
fn v6(query: AnyQuery, p: &Ipv6Parts) -> AnyQuery {
    query
        .bind(i64::from(p.glob_main))
        .bind(i64::from(p.glob_extra))
        .bind(i64::from(p.lan_id))
        .bind(p.iface_id as i64)
}

/// The writer task: drains the queue in batches until every sender is gone.
async fn write_loop(pool: AnyPool, q: Arc<Queries>, limits: Limits, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = run_batch(&pool, &q, &limits, &batch).await;
        if writer::deliver(&mut batch, result) {
            for job in batch.drain(..) {
                let single = run_batch(&pool, &q, &limits, std::slice::from_ref(&job)).await;
                job.finish(single.map_err(StoreError::Database).and_then(writer::only));
            }
        }
    }
}

/// Applies a batch in one transaction; `Err` means nothing was committed.
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
        results.push(job.apply(&mut SqlxTx { c: &mut tx, q }, limits).await?);
    }
    tx.commit().await?;
    Ok(results)
}

/// The rules' statements on an open sqlx transaction.
struct SqlxTx<'a> {
    c: &'a mut AnyConnection,
    q: &'a Queries,
}

impl SqlxTx<'_> {
    async fn optional_id(&mut self, query: AnyQuery) -> Result<Option<i64>, sqlx::Error> {
        query
            .fetch_optional(&mut *self.c)
            .await?
            .map(|row| row.try_get(0))
            .transpose()
    }

    async fn count(&mut self, query: AnyQuery) -> Result<i64, sqlx::Error> {
        query.fetch_one(&mut *self.c).await?.try_get(0)
    }

    /// Rows a write matched. sqlx's MySQL driver connects with
    /// CLIENT_FOUND_ROWS, so MySQL and MariaDB report matched rows, as
    /// PostgreSQL and SQLite do (and every guarded write changes `updated`
    /// or `af` anyway).
    async fn changed(&mut self, query: AnyQuery) -> Result<u64, sqlx::Error> {
        Ok(query.execute(&mut *self.c).await?.rows_affected())
    }
}

impl WriteTx for SqlxTx<'_> {
    type Error = sqlx::Error;

    fn lost_race(rows: u64) -> sqlx::Error {
        sqlx::Error::Protocol(format!(
            "a guarded write changed {rows} rows: another writer changed the name first"
        ))
    }

    async fn name_row(&mut self, name: &[u8]) -> Result<Option<Existing>, sqlx::Error> {
        let row = sqlx::query(self.q.name_row.clone())
            .bind(name.to_vec())
            .fetch_optional(&mut *self.c)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Existing {
            id: row.try_get(0)?,
            owner: owner(&row, 1)?,
            value: row.try_get(2)?,
            af: row.try_get(3)?,
            ip_id: row.try_get(4)?,
            timestamp: row.try_get(5)?,
            updated: row.try_get(6)?,
        }))
    }

    async fn delete_expired(&mut self, id: i64, cutoff: i64) -> Result<u64, sqlx::Error> {
        let query = sqlx::query(self.q.delete_expired.clone())
            .bind(id)
            .bind(cutoff);
        self.changed(query).await
    }

    async fn v4_id(&mut self, v4: u32) -> Result<Option<i64>, sqlx::Error> {
        self.optional_id(sqlx::query(self.q.v4_id.clone()).bind(i64::from(v4)))
            .await
    }

    async fn v6_id(&mut self, p: &Ipv6Parts) -> Result<Option<i64>, sqlx::Error> {
        self.optional_id(v6(sqlx::query(self.q.v6_id.clone()), p))
            .await
    }

    async fn v6_ifaces(&mut self, p: &Ipv6Parts) -> Result<i64, sqlx::Error> {
        let query = sqlx::query(self.q.v6_ifaces.clone())
            .bind(i64::from(p.glob_main))
            .bind(i64::from(p.glob_extra))
            .bind(i64::from(p.lan_id));
        self.count(query).await
    }

    async fn v6_subnets(&mut self, p: &Ipv6Parts) -> Result<i64, sqlx::Error> {
        let query = sqlx::query(self.q.v6_subnets.clone())
            .bind(i64::from(p.glob_main))
            .bind(i64::from(p.glob_extra));
        self.count(query).await
    }

    async fn insert_ip(&mut self, ip: &IpKey, now: i64) -> Result<i64, sqlx::Error> {
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
        insert.bind(now).execute(&mut *self.c).await?;
        find.fetch_one(&mut *self.c).await?.try_get(0)
    }

    async fn row_used(&mut self, af: i64, ip_id: i64, cutoff: i64) -> Result<i64, sqlx::Error> {
        self.count(
            sqlx::query(self.q.row_used.clone())
                .bind(af)
                .bind(ip_id)
                .bind(cutoff),
        )
        .await
    }

    async fn bump_victim(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        claimed_before: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let query = sqlx::query(self.q.bump_victim.clone())
            .bind(af)
            .bind(ip_id)
            .bind(cutoff)
            .bind(claimed_before);
        self.optional_id(query).await
    }

    async fn update_name(&mut self, id: i64, row: &NameWrite<'_>) -> Result<u64, sqlx::Error> {
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
    ) -> Result<u64, sqlx::Error> {
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

    async fn tombstone(
        &mut self,
        id: i64,
        owner: &[u8; 33],
        updated: f64,
    ) -> Result<u64, sqlx::Error> {
        let query = sqlx::query(self.q.tombstone.clone())
            .bind(Vec::<u8>::new())
            .bind(updated)
            .bind(id)
            .bind(owner.to_vec())
            .bind(updated);
        self.changed(query).await
    }

    async fn bury(&mut self, id: i64) -> Result<u64, sqlx::Error> {
        let query = sqlx::query(self.q.bury.clone())
            .bind(Vec::<u8>::new())
            .bind(id);
        self.changed(query).await
    }

    async fn row_tombstones(
        &mut self,
        af: i64,
        ip_id: i64,
        since: f64,
    ) -> Result<i64, sqlx::Error> {
        let query = sqlx::query(self.q.row_tombstones.clone())
            .bind(ip_id)
            .bind(af)
            .bind(since);
        self.count(query).await
    }

    async fn drop_row_tombstones(
        &mut self,
        af: i64,
        ip_id: i64,
        before: f64,
    ) -> Result<u64, sqlx::Error> {
        let query = sqlx::query(self.q.drop_row_tombstones.clone())
            .bind(ip_id)
            .bind(af)
            .bind(before);
        self.changed(query).await
    }

    async fn insert_name(&mut self, row: &NameWrite<'_>, created: i64) -> Result<(), sqlx::Error> {
        sqlx::query(self.q.insert_name.clone())
            .bind(row.name.to_vec())
            .bind(row.value.to_vec())
            .bind(row.owner.to_vec())
            .bind(row.af)
            .bind(row.ip_id)
            .bind(row.timestamp)
            .bind(row.updated)
            .bind(created)
            .execute(&mut *self.c)
            .await?;
        Ok(())
    }

    async fn purge(&mut self, cutoff: i64, tombstone_cutoff: f64) -> Result<Purged, sqlx::Error> {
        let names = sqlx::query(self.q.purge_names.clone())
            .bind(cutoff)
            .bind(tombstone_cutoff)
            .execute(&mut *self.c)
            .await?
            .rows_affected();
        let v4 = sqlx::query(self.q.purge_v4.clone())
            .execute(&mut *self.c)
            .await?
            .rows_affected();
        let v6 = sqlx::query(self.q.purge_v6.clone())
            .execute(&mut *self.c)
            .await?
            .rows_affected();
        Ok(Purged {
            names,
            addresses: v4 + v6,
        })
    }
}
