//! PostgreSQL's planner statistics kept current while the names table grows
//! faster than autovacuum looks at it (issue 12).
//!
//! A prepared statement is planned for its parameters five times, then a
//! generic plan, made once, is reused until the table's statistics change.
//! On a new database the names table is empty when the server's statements
//! are first planned; autovacuum analyzes it at most once a minute, so for
//! that long the batched fast path ran on plans made for an empty table
//! (refreshes after 20 s of claims: 3,650/s, against 5,303/s with the
//! statistics analyzed every 2 s; BENCHMARKS fifth run). The store itself
//! analyzes after as many PUTs as the table held at its last analysis
//! (at least [`FIRST_ANALYZE`]): at most a few times while a table doubles
//! from nothing, rarely once it is large.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// PUTs before the first analysis, and the fewest between two.
pub(crate) const FIRST_ANALYZE: u64 = 1_000;

/// When the store next analyzes its tables.
#[derive(Debug)]
pub(crate) struct Growth {
    puts: AtomicU64,
    next: AtomicU64,
    /// Gap to the next analysis after one that failed: doubled each time.
    after_failure: AtomicU64,
    running: AtomicBool,
}

impl Default for Growth {
    fn default() -> Self {
        Self {
            puts: AtomicU64::new(0),
            next: AtomicU64::new(FIRST_ANALYZE),
            after_failure: AtomicU64::new(FIRST_ANALYZE),
            running: AtomicBool::new(false),
        }
    }
}

impl Growth {
    /// Counts a PUT. `true`: analyze now, then call [`Self::analyzed`];
    /// one analysis at a time.
    pub(crate) fn put(&self) -> bool {
        let puts = self.puts.fetch_add(1, Ordering::Relaxed) + 1;
        puts >= self.next.load(Ordering::Relaxed) && !self.running.swap(true, Ordering::AcqRel)
    }

    /// The analysis ended: `rows`, the names table's rows it found, or
    /// `None` if it failed (tried again later, less often each time).
    pub(crate) fn analyzed(&self, rows: Option<u64>) {
        let gap = match rows {
            Some(rows) => {
                self.after_failure.store(FIRST_ANALYZE, Ordering::Relaxed);
                rows.max(FIRST_ANALYZE)
            }
            None => {
                let gap = self.after_failure.load(Ordering::Relaxed);
                self.after_failure
                    .store(gap.saturating_mul(2), Ordering::Relaxed);
                gap
            }
        };
        let puts = self.puts.load(Ordering::Relaxed);
        self.next.store(puts.saturating_add(gap), Ordering::Relaxed);
        self.running.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn puts_until_due(growth: &Growth, limit: u64) -> Option<u64> {
        (1..=limit).find(|_| growth.put())
    }

    #[test]
    fn the_first_analysis_comes_after_the_first_thousand_puts() {
        let growth = Growth::default();
        assert_eq!(puts_until_due(&growth, 10_000), Some(FIRST_ANALYZE));
    }

    #[test]
    fn one_analysis_at_a_time() {
        let growth = Growth::default();
        assert_eq!(puts_until_due(&growth, 10_000), Some(FIRST_ANALYZE));
        assert_eq!(puts_until_due(&growth, 10_000), None);
        growth.analyzed(Some(10));
        assert_eq!(puts_until_due(&growth, 10_000), Some(FIRST_ANALYZE));
    }

    #[test]
    fn the_next_analysis_waits_for_as_many_puts_as_the_table_held() {
        let growth = Growth::default();
        puts_until_due(&growth, 10_000);
        growth.analyzed(Some(50_000));
        assert_eq!(puts_until_due(&growth, 100_000), Some(50_000));
    }

    #[test]
    fn failed_analyses_are_retried_less_often_each_time() {
        let growth = Growth::default();
        puts_until_due(&growth, 10_000);
        growth.analyzed(None);
        assert_eq!(puts_until_due(&growth, 100_000), Some(1_000));
        growth.analyzed(None);
        assert_eq!(puts_until_due(&growth, 100_000), Some(2_000));
        growth.analyzed(Some(10));
        assert_eq!(puts_until_due(&growth, 100_000), Some(1_000));
        growth.analyzed(None);
        assert_eq!(puts_until_due(&growth, 100_000), Some(1_000));
    }
}
