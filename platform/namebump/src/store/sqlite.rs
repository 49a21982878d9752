//! [`NameStore`] on an SQLite file through rusqlite: the embedded default.
//!
//! SQLite does its work in the calling thread, in microseconds, so:
//! - reads run inline on a small pool of read connections (WAL lets them
//!   run beside the writer and see the last committed state);
//! - writes go to one OS thread that owns the write connection and applies
//!   each batch (`writer.rs`) in one transaction with cached statements: one
//!   thread hand-off per batch, not per statement.
//!
//! Durability: WAL with `synchronous = FULL`, so a write is on disk before
//! it is acknowledged. WAL checkpoints (copying the log back into the
//! database, with an fsync) run on a thread of their own rather than inside
//! whichever commit crosses SQLite's threshold: that stall was the PUT
//! latency tail.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use keyway_core::namebump::address::Ipv6Parts;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::sync::mpsc::SyncSender;

use tokio::sync::mpsc;

use super::db_metrics::DbMetrics;
use super::dialect::{Backend, Queries};
use super::gather::{GATHER_WINDOW, Gather};
use super::publish;
use super::rules::{self, Existing, NameWrite, RowCounts, WriteTx};
use super::writer::{self, Applied, Job, MAX_BATCH, Reply};
use super::{
    Coming, DelOutcome, DelRequest, IpKey, Limits, NameRecord, NameStore, Purged, PutOutcome,
    PutRequest, StoreError, Then,
};

/// Read connections kept open at most.
const READERS: usize = 8;

#[derive(Clone, Debug)]
pub(crate) struct SqliteStore {
    path: Arc<PathBuf>,
    readers: Arc<Mutex<Vec<Connection>>>,
    queries: Arc<Queries>,
    limits: Limits,
    writer: mpsc::Sender<Job>,
    gather: Arc<Gather>,
    metrics: DbMetrics,
}

/// Bytes per page of a database this store creates.
const PAGE_SIZE: i64 = 2048;

pub(crate) fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // For a new database only (an existing one keeps its size): a commit
    // writes whole pages of the WAL and syncs the file's 4 KiB pages they
    // touch, and a claim changes ~1.5 pages, so smaller pages mean less to
    // copy, checksum and write back per claim (issue 12, CPU per claim:
    // ~1.3 µs less in the writer). 2 KiB still holds the largest row (a
    // 50-byte name and a 1 KiB value) without overflow pages.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Checkpoints are the `checkpointer` thread's job.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

/// WAL pages after which a checkpoint also restarts the log.
const WAL_RESTART_PAGES: i64 = 1024;

/// Copies the WAL into the database ten times a second without blocking
/// the writer (PASSIVE). A PASSIVE checkpoint cannot make the log start over
/// while writes keep coming, so past [`WAL_RESTART_PAGES`] a RESTART
/// checkpoint briefly holds writers back, copies what is left and lets the
/// next write begin the log anew: the WAL stays bounded. Stops when the
/// store's writer is gone.
fn checkpointer(conn: Connection, alive: mpsc::WeakSender<Job>) {
    while alive.upgrade().is_some() {
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Columns: busy, pages in the WAL, pages checkpointed.
        let pages = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
        let result = match pages {
            Ok(pages) if pages > WAL_RESTART_PAGES => {
                conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
            }
            other => other.map(drop),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

impl SqliteStore {
    /// Batches committed by the writer and their latency.
    pub(crate) fn metrics(&self) -> &DbMetrics {
        &self.metrics
    }

    /// Opens (creating if needed) the database file at `path`, migrates it
    /// and starts the writer thread.
    pub(crate) fn open(path: &Path, limits: Limits) -> Result<Self, StoreError> {
        Self::start(path, limits, None, GATHER_WINDOW)
    }

    /// [`Self::open`], publishing the names as the stream at `stream`
    /// (`publish.rs`); also returns the stream's public key.
    pub(crate) fn open_publishing(
        path: &Path,
        limits: Limits,
        stream: &Path,
    ) -> Result<(Self, String), StoreError> {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        let store = Self::start(path, limits, Some(wake), GATHER_WINDOW)?;
        let public = publish::start(path, stream, woken)?;
        Ok((store, public))
    }

    /// `wake`: publishing is on, and the publisher is told of each commit.
    /// `window`: how long a batch may stay open (`gather.rs`).
    fn start(
        path: &Path,
        limits: Limits,
        wake: Option<SyncSender<()>>,
        window: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let mut conn = connect(path)?;
        for step in Backend::Sqlite.schema() {
            conn.execute_batch(step.statement)?;
        }
        conn.execute_batch(if wake.is_some() {
            publish::ENABLE
        } else {
            publish::DISABLE
        })?;
        let queries = Arc::new(Queries::new(Backend::Sqlite));
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let metrics = DbMetrics::default();
        let gather = Arc::new(Gather::default());
        let q = queries.clone();
        std::thread::Builder::new()
            .name("keyway-sqlite-writer".into())
            .spawn({
                let (metrics, gather) = (metrics.clone(), gather.clone());
                move || {
                    let batches = Batches {
                        rx,
                        gather,
                        window,
                        last: 0,
                    };
                    write_loop(&mut conn, &q, &limits, &metrics, batches, wake.as_ref());
                }
            })
            .map_err(|e| StoreError::BatchFailed(format!("cannot start the writer: {e}")))?;
        let (checkpoints, alive) = (connect(path)?, tx.downgrade());
        std::thread::Builder::new()
            .name("keyway-sqlite-checkpoint".into())
            .spawn(move || checkpointer(checkpoints, alive))
            .map_err(|e| StoreError::BatchFailed(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self {
            path: Arc::new(path.to_owned()),
            readers: Arc::new(Mutex::new(Vec::new())),
            queries,
            limits,
            writer: tx,
            gather,
            metrics,
        })
    }

    pub(crate) fn publish_backlog(&self) -> Result<u64, StoreError> {
        let count: Option<i64> = self.read(|c| {
            let exists: i64 = c.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'publish_dirty'",
                [],
                |r| r.get(0),
            )?;
            if exists == 0 {
                return Ok(None);
            }
            c.query_row("SELECT COUNT(*) FROM publish_dirty", [], |r| r.get(0))
                .map(Some)
        })?;
        Ok(count.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    /// Runs `f` on a pooled read connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = f(&conn);
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if readers.len() < READERS {
            readers.push(conn);
        }
        Ok(result?)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e.to_string())
    }
}

impl NameStore for SqliteStore {
    async fn get(&self, name: &[u8], now: f64) -> Result<Option<NameRecord>, StoreError> {
        let cutoff = rules::cutoff(&self.limits, now);
        self.read(|c| {
            c.prepare_cached(self.queries.get_live.as_str())?
                .query_row(params![name, cutoff], |row| {
                    Ok(NameRecord {
                        value: row.get(0)?,
                        owner: row.get(1)?,
                        timestamp: row.get(2)?,
                        updated: row.get(3)?,
                    })
                })
                .optional()
        })
    }

    async fn put(&self, request: PutRequest, now: f64) -> Result<PutOutcome, StoreError> {
        writer::submit(&self.writer, |tx| Job::Put(request, now, tx)).await
    }

    async fn put_then(&self, request: PutRequest, now: f64, then: Then<PutOutcome>) {
        writer::submit_then(&self.writer, Job::Put(request, now, Reply::Then(then))).await;
    }

    fn coming_write(&self) -> Coming {
        self.gather.announce()
    }

    async fn delete(&self, request: DelRequest, now: f64) -> Result<DelOutcome, StoreError> {
        writer::submit(&self.writer, |tx| Job::Del(request, now, tx)).await
    }

    async fn usage(&self, ip: IpKey, now: f64) -> Result<u32, StoreError> {
        let cutoff = rules::cutoff(&self.limits, now);
        let count: i64 = self.read(|c| match ip {
            IpKey::V4(v4) => c
                .prepare_cached(self.queries.usage_v4.as_str())?
                .query_row(params![v4, cutoff], |r| r.get(0)),
            IpKey::V6(p) => {
                let [main, extra, lan, iface] = v6(&p);
                c.prepare_cached(self.queries.usage_v6.as_str())?
                    .query_row(params![main, extra, lan, iface, cutoff], |r| r.get(0))
            }
        })?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn purge_expired(&self, now: f64) -> Result<Purged, StoreError> {
        writer::submit(&self.writer, |tx| Job::Purge(now, tx)).await
    }
}

/// An IPv6 address's four columns, the interface id as its i64 bit pattern.
fn v6(p: &Ipv6Parts) -> [i64; 4] {
    [
        i64::from(p.glob_main),
        i64::from(p.glob_extra),
        i64::from(p.lan_id),
        p.iface_id as i64,
    ]
}

/// Drives a future whose every await is already complete: the rules'
/// statements run synchronously on SQLite, so polling never parks.
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// The writer's queue, read a batch at a time.
struct Batches {
    rx: mpsc::Receiver<Job>,
    gather: Arc<Gather>,
    window: std::time::Duration,
    /// Writes in the previous batch.
    last: usize,
}

impl Batches {
    /// The next batch: the first write to come, everything queued behind
    /// it, and the writes on their way within the window
    /// (`gather.rs`). `false` once every sender is gone.
    fn next(&mut self, batch: &mut Vec<Job>) -> bool {
        let Some(first) = self.rx.blocking_recv() else {
            return false;
        };
        batch.push(first);
        let until = std::time::Instant::now() + self.window;
        let busy = self.last > 1;
        loop {
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.len() >= MAX_BATCH || !self.gather.wait(until, busy) {
                self.last = batch.len();
                return true;
            }
        }
    }
}

/// The writer thread: drains the queue in batches until every sender is gone.
fn write_loop(
    conn: &mut Connection,
    q: &Queries,
    limits: &Limits,
    metrics: &DbMetrics,
    mut batches: Batches,
    wake: Option<&SyncSender<()>>,
) {
    let publishing = wake.is_some();
    batches.gather.set_writer();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while batches.next(&mut batch) {
        let started = std::time::Instant::now();
        let result = run_batch(conn, q, limits, &batch, publishing);
        metrics.transaction(started.elapsed());
        if writer::deliver(&mut batch, result) {
            for job in batch.drain(..) {
                let started = std::time::Instant::now();
                let single = run_batch(conn, q, limits, std::slice::from_ref(&job), publishing);
                metrics.transaction(started.elapsed());
                job.finish(single.map_err(StoreError::from).and_then(writer::only));
            }
        }
        if let Some(wake) = wake {
            // Full: the publisher has a wake-up pending already.
            let _ = wake.try_send(());
        }
    }
}

/// Applies a batch in one transaction; `Err` means nothing was committed.
fn run_batch(
    conn: &mut Connection,
    q: &Queries,
    limits: &Limits,
    batch: &[Job],
    publishing: bool,
) -> Result<Vec<Applied>, rusqlite::Error> {
    // IMMEDIATE: take the write lock up front. A deferred transaction starts
    // as a reader and cannot wait its way through a checkpoint that restarted
    // the WAL in between (SQLITE_BUSY without calling the busy handler).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let applied = run_now(job.apply(&mut SqliteTx { tx: &tx, q }, limits))?;
        if let (true, Job::Put(put, ..), true) = (publishing, job, applied.changed()) {
            // The row now holds this PUT's value, owner and time: its
            // packet is the proof a replica checks (`publish.rs`).
            if let Some(packet) = &put.signed {
                publish::record_signed(&tx, &put.name, packet)?;
            }
        }
        results.push(applied);
    }
    tx.commit()?;
    Ok(results)
}

/// The rules' statements on an open SQLite transaction.
struct SqliteTx<'a> {
    tx: &'a Transaction<'a>,
    q: &'a Queries,
}

impl WriteTx for SqliteTx<'_> {
    type Error = rusqlite::Error;

    fn lost_race(rows: u64) -> rusqlite::Error {
        rusqlite::Error::StatementChangedRows(usize::try_from(rows).unwrap_or(usize::MAX))
    }

    async fn name_row(&mut self, name: &[u8]) -> Result<Option<Existing>, rusqlite::Error> {
        self.tx
            .prepare_cached(self.q.name_row.as_str())?
            .query_row(params![name], |row| {
                Ok(Existing {
                    id: row.get(0)?,
                    owner: row.get(1)?,
                    value: row.get(2)?,
                    af: row.get(3)?,
                    ip_id: row.get(4)?,
                    timestamp: row.get(5)?,
                    updated: row.get(6)?,
                })
            })
            .optional()
    }

    async fn delete_expired(&mut self, id: i64, cutoff: i64) -> Result<u64, rusqlite::Error> {
        let rows = self
            .tx
            .prepare_cached(self.q.delete_expired.as_str())?
            .execute(params![id, cutoff])?;
        Ok(rows as u64)
    }

    async fn v4_id(&mut self, v4: u32) -> Result<Option<i64>, rusqlite::Error> {
        self.tx
            .prepare_cached(self.q.v4_id.as_str())?
            .query_row(params![v4], |r| r.get(0))
            .optional()
    }

    async fn v6_id(&mut self, p: &Ipv6Parts) -> Result<Option<i64>, rusqlite::Error> {
        let [main, extra, lan, iface] = v6(p);
        self.tx
            .prepare_cached(self.q.v6_id.as_str())?
            .query_row(params![main, extra, lan, iface], |r| r.get(0))
            .optional()
    }

    async fn v6_ifaces(&mut self, p: &Ipv6Parts) -> Result<i64, rusqlite::Error> {
        let [main, extra, lan, _] = v6(p);
        self.tx
            .prepare_cached(self.q.v6_ifaces.as_str())?
            .query_row(params![main, extra, lan], |r| r.get(0))
    }

    async fn v6_subnets(&mut self, p: &Ipv6Parts) -> Result<i64, rusqlite::Error> {
        let [main, extra, _, _] = v6(p);
        self.tx
            .prepare_cached(self.q.v6_subnets.as_str())?
            .query_row(params![main, extra], |r| r.get(0))
    }

    async fn insert_ip(&mut self, ip: &IpKey, now: i64) -> Result<i64, rusqlite::Error> {
        match ip {
            IpKey::V4(v4) => {
                self.tx
                    .prepare_cached(self.q.v4_insert.as_str())?
                    .execute(params![v4, now])?;
            }
            IpKey::V6(p) => {
                let [main, extra, lan, iface] = v6(p);
                self.tx
                    .prepare_cached(self.q.v6_insert.as_str())?
                    .execute(params![main, extra, lan, iface, now])?;
            }
        }
        Ok(self.tx.last_insert_rowid())
    }

    async fn row_counts(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        since: f64,
    ) -> Result<RowCounts, rusqlite::Error> {
        self.tx
            .prepare_cached(self.q.row_counts.as_str())?
            .query_row(params![af, ip_id, cutoff, since], |r| {
                Ok(RowCounts {
                    live: r.get(0)?,
                    young_tombstones: r.get(1)?,
                    old_tombstones: r.get(2)?,
                })
            })
    }

    async fn bump_victim(
        &mut self,
        af: i64,
        ip_id: i64,
        cutoff: i64,
        claimed_before: i64,
    ) -> Result<Option<i64>, rusqlite::Error> {
        self.tx
            .prepare_cached(self.q.bump_victim.as_str())?
            .query_row(params![af, ip_id, cutoff, claimed_before], |r| r.get(0))
            .optional()
    }

    async fn update_name(&mut self, id: i64, row: &NameWrite<'_>) -> Result<u64, rusqlite::Error> {
        let rows = self
            .tx
            .prepare_cached(self.q.update_name.as_str())?
            .execute(params![
                row.value,
                row.af,
                row.ip_id,
                row.timestamp,
                row.updated,
                id,
                &row.owner[..],
                row.updated
            ])?;
        Ok(rows as u64)
    }

    async fn claim_tombstone(
        &mut self,
        id: i64,
        row: &NameWrite<'_>,
        created: i64,
    ) -> Result<u64, rusqlite::Error> {
        let rows = self
            .tx
            .prepare_cached(self.q.claim_tombstone.as_str())?
            .execute(params![
                row.value,
                &row.owner[..],
                row.af,
                row.ip_id,
                row.timestamp,
                row.updated,
                created,
                id,
                row.updated
            ])?;
        Ok(rows as u64)
    }

    async fn tombstone(
        &mut self,
        id: i64,
        owner: &[u8; 33],
        updated: f64,
    ) -> Result<u64, rusqlite::Error> {
        let rows = self
            .tx
            .prepare_cached(self.q.tombstone.as_str())?
            .execute(params![&b""[..], updated, id, &owner[..], updated])?;
        Ok(rows as u64)
    }

    async fn bury(&mut self, id: i64, af: i64, ip_id: i64) -> Result<u64, rusqlite::Error> {
        let rows = self
            .tx
            .prepare_cached(self.q.bury.as_str())?
            .execute(params![&b""[..], id, af, ip_id])?;
        Ok(rows as u64)
    }

    async fn drop_row_tombstones(
        &mut self,
        af: i64,
        ip_id: i64,
        before: f64,
    ) -> Result<u64, rusqlite::Error> {
        let rows = self
            .tx
            .prepare_cached(self.q.drop_row_tombstones.as_str())?
            .execute(params![ip_id, af, before])?;
        Ok(rows as u64)
    }

    async fn insert_name(
        &mut self,
        row: &NameWrite<'_>,
        created: i64,
    ) -> Result<(), rusqlite::Error> {
        self.tx
            .prepare_cached(self.q.insert_name.as_str())?
            .execute(params![
                row.name,
                row.value,
                &row.owner[..],
                row.af,
                row.ip_id,
                row.timestamp,
                row.updated,
                created
            ])?;
        Ok(())
    }

    async fn purge(
        &mut self,
        cutoff: i64,
        tombstone_cutoff: f64,
    ) -> Result<Purged, rusqlite::Error> {
        let names = self
            .tx
            .prepare_cached(self.q.purge_names.as_str())?
            .execute(params![cutoff, tombstone_cutoff])?;
        let v4 = self
            .tx
            .prepare_cached(self.q.purge_v4.as_str())?
            .execute([])?;
        let v6 = self
            .tx
            .prepare_cached(self.q.purge_v6.as_str())?
            .execute([])?;
        Ok(Purged {
            names: names as u64,
            addresses: (v4 + v6) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, channel};
    use std::time::Duration;

    use super::*;

    fn put(name: &str) -> PutRequest {
        PutRequest {
            name: name.as_bytes().to_vec(),
            value: b"v".to_vec(),
            owner: [2; 33],
            ip: IpKey::V4(0x7f00_0001),
            updated: 1_000.0,
            bump: false,
            signed: None,
        }
    }

    /// A store whose batches may stay open a minute: long enough that
    /// whether the writer waited cannot be mistaken for a slow machine.
    fn store(dir: &tempfile::TempDir) -> SqliteStore {
        let path = dir.path().join("nb.db");
        SqliteStore::start(&path, Limits::default(), None, Duration::from_secs(60)).expect("open")
    }

    async fn put_then(store: &SqliteStore, name: &str) -> Receiver<Result<PutOutcome, StoreError>> {
        let (tx, rx) = channel();
        let then = move |result| drop(tx.send(result));
        store.put_then(put(name), 1_000.0, Box::new(then)).await;
        rx
    }

    /// What the writer answered, waiting at most 20 s for its commit.
    fn committed(outcome: Receiver<Result<PutOutcome, StoreError>>) -> PutOutcome {
        outcome
            .recv_timeout(Duration::from_secs(20))
            .expect("committed")
            .expect("stored")
    }

    #[tokio::test]
    async fn a_lone_write_is_committed_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(&dir);
        let outcome = put_then(&store, "alone").await;
        // Not the minute of the window: nothing else was on its way.
        assert_eq!(committed(outcome), PutOutcome::Stored);
    }

    #[tokio::test]
    async fn a_batch_waits_for_an_announced_write_and_commits_with_it() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(&dir);
        let coming = store.coming_write();
        let first = put_then(&store, "first").await;
        // The writer holds the first write while the second is announced.
        assert!(first.recv_timeout(Duration::from_millis(300)).is_err());
        let second = put_then(&store, "second").await;
        drop(coming);
        for outcome in [first, second] {
            assert_eq!(committed(outcome), PutOutcome::Stored);
        }
        // Both in one transaction.
        assert_eq!(store.metrics.transactions(), 1);
    }

    #[tokio::test]
    async fn a_new_database_has_small_pages_and_an_old_one_keeps_its_own() {
        let page_size = |path: &Path| -> i64 {
            let conn = connect(path).expect("connect");
            conn.query_row("PRAGMA page_size", [], |r| r.get(0))
                .expect("page size")
        };
        let dir = tempfile::tempdir().expect("dir");
        drop(store(&dir));
        assert_eq!(page_size(&dir.path().join("nb.db")), PAGE_SIZE);

        let old_dir = tempfile::tempdir().expect("dir");
        let old_path = old_dir.path().join("nb.db");
        let old = Connection::open(&old_path).expect("open");
        old.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE t (x)")
            .expect("a database of the version before");
        drop(old);
        let store = store(&old_dir);
        let stored = put_then(&store, "old-pages").await;
        assert_eq!(committed(stored), PutOutcome::Stored);
        assert_eq!(page_size(&old_path), 4096);
    }

    /// A claim counts every name of its address (`row_counts`): from the
    /// index alone, on a database made by the version before too (issue
    /// 12, CPU per claim: a table row read per name of the address).
    #[tokio::test]
    async fn quota_counts_read_only_the_address_index() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("nb.db");
        drop(store(&dir));
        let old = connect(&path).expect("connect");
        old.execute_batch(
            "DROP INDEX names_by_address; CREATE INDEX names_by_row ON names (af, ip_id)",
        )
        .expect("the index of the version before");
        drop(old);

        let store = store(&dir);
        let conn = connect(&path).expect("connect");
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'names' AND sql IS NOT NULL ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("indexes");
        assert_eq!(indexes, ["names_by_address", "names_by_timestamp"]);
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                store.queries.row_counts.as_str()
            ))
            .and_then(|mut s| {
                // af, ip_id, cutoff, since
                let args = params![2, 1, 0, 0.0];
                s.query_map(args, |r| r.get(3))?.collect()
            })
            .expect("plan");
        // One search per count (the scalar subqueries), each in the index.
        let reads: Vec<&String> = plan
            .iter()
            .filter(|step| step.starts_with("SEARCH names") || step.starts_with("SCAN names"))
            .collect();
        assert_eq!(reads.len(), 3, "{plan:?}");
        assert!(
            reads
                .iter()
                .all(|step| step.contains("COVERING INDEX names_by_address")),
            "{plan:?}"
        );
    }
}
