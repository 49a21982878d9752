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
//! A semaphore with one permit per pool connection is taken before a
//! connection: stashed and leased connections together never exceed the
//! pool's size, so a request that finds the stash empty always finds the
//! pool with a connection free (or one being given back), never waiting
//! for a release that the stash would swallow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest a request waits for a connection (the clients' own
/// attempts time out in 2 s).
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections; `None` once the stash is closed.
type Idle = Arc<Mutex<Option<Vec<PoolConnection<Any>>>>>;

#[derive(Clone, Debug)]
pub(crate) struct Stash {
    pool: AnyPool,
    idle: Idle,
    permits: Arc<Semaphore>,
}

/// A connection in use; given back to the stash only by [`Lease::keep`].
pub(crate) struct Lease {
    conn: PoolConnection<Any>,
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
        let conn = match stashed {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(Lease {
            conn,
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
            idle,
            _permit: permit,
        } = self;
        match idle.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(stashed) => stashed.push(conn),
            // Closed: the pool waits for this one.
            None => drop(conn),
        }
        // The permit goes only now, with the connection back in the stash.
        drop(permit);
    }
}
