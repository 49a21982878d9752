//! Database connections kept between requests, outside sqlx's pool.
//!
//! sqlx's pool tests every connection given back to it with a ping (on
//! PostgreSQL a Sync and its ReadyForQuery): a round trip per request that
//! our round-trip metrics never saw, which made a refresh two round trips
//! on the wire and cost the server a task, four system calls and a
//! wake-up (issue 12, CPU per PUT). A connection whose use ended normally
//! is stashed here instead and the next request takes it as it is. One
//! whose use did not end normally (a statement failed, or the request was
//! cancelled half way) is dropped into the pool, whose ping then finds out
//! whether it can be used again: that is what the ping is for.
//!
//! A connection goes back to the pool after [`STASH_LIFETIME`] in the
//! stash, so the pool's own lifetime and idle rules still retire it.
//!
//! A semaphore with one permit per pool connection is taken before a
//! connection: stashed and leased connections together never exceed the
//! pool's size, so a request that finds the stash empty always finds the
//! pool with a connection free (or one being given back), never waiting
//! for a release that the stash would swallow.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest a request waits for a connection (the clients' own
/// attempts time out in 2 s).
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection taken from the pool is kept in the stash.
const STASH_LIFETIME: Duration = Duration::from_secs(600);

/// A connection and when it was taken from the pool.
type Stashed = (PoolConnection<Any>, Instant);

/// Idle connections; `None` once the stash is closed.
type Idle = Arc<Mutex<Option<Vec<Stashed>>>>;

#[derive(Clone, Debug)]
pub(crate) struct Stash {
    pool: AnyPool,
    idle: Idle,
    permits: Arc<Semaphore>,
}

/// A connection in use; given back to the stash only by [`Lease::keep`].
pub(crate) struct Lease {
    conn: PoolConnection<Any>,
    since: Instant,
    idle: Idle,
    _permit: OwnedSemaphorePermit,
}

impl Stash {
    /// `connections`: the pool's maximum size.
    pub(crate) fn new(pool: AnyPool, connections: u32) -> Self {
        Self {
            pool,
            idle: Arc::new(Mutex::new(Some(Vec::new()))),
            permits: Arc::new(Semaphore::new(connections as usize)),
        }
    }

    /// A stashed connection, or one from the pool.
    pub(crate) async fn lease(&self) -> Result<Lease, sqlx::Error> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let stashed = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(Vec::pop);
        let (conn, since) = match stashed {
            Some(stashed) => stashed,
            None => (self.pool.acquire().await?, Instant::now()),
        };
        Ok(Lease {
            conn,
            since,
            idle: self.idle.clone(),
            _permit: permit,
        })
    }

    /// Gives every stashed connection back to the pool (and those leased
    /// when their use ends), then closes the pool.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let stashed = self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(stashed);
        self.pool.close().await;
    }
}

impl Lease {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// The connection's last statement ran to its end and no transaction
    /// is open: the next request may use it as it is.
    pub(crate) fn keep(self) {
        let Self {
            conn,
            since,
            idle,
            _permit: permit,
        } = self;
        match idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(stashed) if since.elapsed() < STASH_LIFETIME => stashed.push((conn, since)),
            // Closed (the pool waits for this one), or due back.
            _ => drop(conn),
        }
        // The permit goes only now, with the connection back in the stash.
        drop(permit);
    }
}
