//! What the database work costs (issue 12): transactions retried and why,
//! lock waits, transaction latency. The store records them; the server
//! registers them beside its request metrics.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a write transaction was rolled back and decided again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// The database broke a lock cycle (PostgreSQL 40P01, MariaDB 1213).
    Deadlock,
    /// A serialization failure (SQLSTATE 40001).
    Serialization,
    /// A lock was not granted within the session's lock timeout.
    LockTimeout,
    /// Two writers inserted the same name or address row; the loser sees
    /// the winner's row when it decides again.
    Duplicate,
    /// A guarded write found its row changed since it was read.
    LostRace,
    /// The connection failed (the database restarted, a network blip);
    /// the write is decided again on another.
    Connection,
}

impl RetryReason {
    fn label(self) -> &'static str {
        match self {
            Self::Deadlock => "deadlock",
            Self::Serialization => "serialization",
            Self::LockTimeout => "lock_timeout",
            Self::Duplicate => "duplicate",
            Self::LostRace => "lost_race",
            Self::Connection => "connection",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// A lock statement slower than this is counted as having waited: on an
/// idle database one takes a fraction of it.
pub const LOCK_WAIT_THRESHOLD: Duration = Duration::from_millis(1);

/// The store's metrics; cheap to clone (the counters are shared).
#[derive(Clone, Debug)]
pub struct DbMetrics {
    retries: Family<ReasonLabel, Counter>,
    gave_up: Counter,
    lock_waits: Counter,
    lock_seconds: Histogram,
    transactions: Counter,
    transaction_seconds: Histogram,
    round_trips: Counter,
}

impl Default for DbMetrics {
    fn default() -> Self {
        // Every reason is listed from the start, at 0, so a dashboard sees
        // the series before the first retry.
        let retries = Family::<ReasonLabel, Counter>::default();
        for reason in [
            RetryReason::Deadlock,
            RetryReason::Serialization,
            RetryReason::LockTimeout,
            RetryReason::Duplicate,
            RetryReason::LostRace,
            RetryReason::Connection,
        ] {
            drop(retries.get_or_create(&ReasonLabel {
                reason: reason.label(),
            }));
        }
        Self {
            retries,
            gave_up: Counter::default(),
            lock_waits: Counter::default(),
            // 20 µs to ~5 s.
            lock_seconds: Histogram::new(exponential_buckets(0.000_02, 2.0, 18)),
            transactions: Counter::default(),
            round_trips: Counter::default(),
            transaction_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
        }
    }
}

impl DbMetrics {
    pub(crate) fn retried(&self, reason: RetryReason) {
        self.retries
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    pub(crate) fn gave_up(&self) {
        self.gave_up.inc();
    }

    /// A statement that takes a row lock took `took`.
    pub(crate) fn lock(&self, took: Duration) {
        self.lock_seconds.observe(took.as_secs_f64());
        if took >= LOCK_WAIT_THRESHOLD {
            self.lock_waits.inc();
        }
    }

    /// One transaction attempt, from BEGIN to its COMMIT or ROLLBACK.
    pub(crate) fn transaction(&self, took: Duration) {
        self.transactions.inc();
        self.transaction_seconds.observe(took.as_secs_f64());
    }

    /// A statement (BEGIN and COMMIT included) sent to the database.
    pub(crate) fn round_trip(&self) {
        self.round_trips.inc();
    }

    /// Statements of write transactions sent so far, BEGIN, COMMIT and
    /// ROLLBACK included: each is one round trip.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.get()
    }

    /// Transaction attempts so far, committed, rolled back or failed.
    pub fn transactions(&self) -> u64 {
        self.transactions.get()
    }

    /// Transactions retried for `reason` so far.
    pub fn retries(&self, reason: RetryReason) -> u64 {
        self.retries
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .get()
    }

    /// Writes answered with a server error after every retry failed.
    pub fn gave_up_count(&self) -> u64 {
        self.gave_up.get()
    }

    /// Lock statements that took at least [`LOCK_WAIT_THRESHOLD`].
    pub fn lock_waits(&self) -> u64 {
        self.lock_waits.get()
    }

    /// Adds these metrics to a registry (prefixed by the registry's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "db_retries",
            "Write transactions rolled back and decided again, by reason",
            self.retries.clone(),
        );
        registry.register(
            "db_gave_up",
            "Writes answered with a server error after their last retry failed",
            self.gave_up.clone(),
        );
        registry.register(
            "db_lock_waits",
            "Row-lock statements that took 1 ms or more (waited for another writer)",
            self.lock_waits.clone(),
        );
        registry.register(
            "db_lock_statement_seconds",
            "Time of the statements that take row locks",
            self.lock_seconds.clone(),
        );
        registry.register(
            "db_transactions",
            "Write transaction attempts (or SQLite batches), whatever their end",
            self.transactions.clone(),
        );
        registry.register(
            "db_write_statements",
            "Statements of write transactions (BEGIN and COMMIT included), each a round trip",
            self.round_trips.clone(),
        );
        registry.register(
            "db_transaction_seconds",
            "Write transactions (or SQLite batches), BEGIN to COMMIT or ROLLBACK",
            self.transaction_seconds.clone(),
        );
    }
}
