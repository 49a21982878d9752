//! When a broker that failed is dialled again (spec §10 item 15).
//!
//! After a failed connect a broker is not tried for `base` (1 s), doubling
//! with each further consecutive failure up to `max` (5 min); the
//! reference locked a broker out for 20 minutes after one failure. A
//! connect that succeeds makes the broker eligible at once but keeps its
//! count: a broker that accepts and then stops reading keeps backing off
//! further. Only a link that worked (heard its broker, never stalled)
//! clears the count.
//!
//! The table lives in the caller's storage (`[Option<Entry<K>>; N]`, a
//! boxed slice); when it is full, entries whose wait is over are dropped
//! first, then the one due soonest (hints name brokers outside the pool,
//! so it must not grow without bound).

use core::time::Duration;

use crate::time::Instant;

/// The schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffLimits {
    pub base: Duration,
    pub max: Duration,
}

impl Default for BackoffLimits {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl BackoffLimits {
    /// The wait after `failures` consecutive failures (1 for the first).
    pub fn wait(&self, failures: u32) -> Duration {
        self.base
            .saturating_mul(1 << failures.saturating_sub(1).min(20))
            .min(self.max)
    }
}

/// One broker that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<K> {
    key: K,
    failures: u32,
    retry_at: Instant,
}

/// Brokers that failed, keyed by whatever names a broker to the caller.
#[derive(Debug)]
pub struct Backoff<K, S> {
    entries: S,
    limits: BackoffLimits,
    _key: core::marker::PhantomData<K>,
}

impl<K: PartialEq, S: AsRef<[Option<Entry<K>>]> + AsMut<[Option<Entry<K>>]>> Backoff<K, S> {
    pub fn new(mut entries: S, limits: BackoffLimits) -> Self {
        entries.as_mut().iter_mut().for_each(|e| *e = None);
        Self {
            entries,
            limits,
            _key: core::marker::PhantomData,
        }
    }

    /// Whether `key` may be dialled at `now`.
    pub fn ready(&self, key: &K, now: Instant) -> bool {
        self.find(key).is_none_or(|e| now >= e.retry_at)
    }

    /// When `key` may be dialled again, if it is backing off.
    pub fn retry_at(&self, key: &K) -> Option<Instant> {
        self.find(key).map(|e| e.retry_at)
    }

    /// Records one more failure of `key`; returns the count and the wait.
    pub fn failed(&mut self, key: K, now: Instant) -> (u32, Duration) {
        let limits = self.limits;
        if let Some(e) = self.find_mut(&key) {
            e.failures = e.failures.saturating_add(1);
            let wait = limits.wait(e.failures);
            e.retry_at = now + wait;
            return (e.failures, wait);
        }
        let wait = limits.wait(1);
        let entries = self.entries.as_mut();
        // An empty slot, else one whose wait is over, else the one due soonest.
        let slot = entries
            .iter_mut()
            .min_by_key(|e| e.as_ref().map_or(Instant::ZERO, |e| e.retry_at));
        if let Some(slot) = slot {
            *slot = Some(Entry {
                key,
                failures: 1,
                retry_at: now + wait,
            });
        }
        (1, wait)
    }

    /// A connect to `key` succeeded: eligible at once, count kept.
    pub fn connected(&mut self, key: &K, now: Instant) {
        if let Some(e) = self.find_mut(key) {
            e.retry_at = now;
        }
    }

    /// A link to `key` worked and closed cleanly: forget its failures.
    pub fn worked(&mut self, key: &K) {
        if let Some(slot) = self
            .entries
            .as_mut()
            .iter_mut()
            .find(|e| e.as_ref().is_some_and(|e| e.key == *key))
        {
            *slot = None;
        }
    }

    /// Consecutive failures of `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.find(key).map_or(0, |e| e.failures)
    }

    fn find(&self, key: &K) -> Option<&Entry<K>> {
        self.entries
            .as_ref()
            .iter()
            .flatten()
            .find(|e| e.key == *key)
    }

    fn find_mut(&mut self, key: &K) -> Option<&mut Entry<K>> {
        self.entries
            .as_mut()
            .iter_mut()
            .flatten()
            .find(|e| e.key == *key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_one_second_to_five_minutes() {
        let limits = BackoffLimits::default();
        let waits: [u64; 12] = core::array::from_fn(|i| limits.wait(i as u32 + 1).as_secs());
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(limits.wait(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn a_full_table_replaces_the_entry_due_soonest() {
        let mut b = Backoff::new([None, None], BackoffLimits::default());
        let t = Instant::from_secs(100);
        b.failed(1u32, t);
        b.failed(1, t);
        b.failed(2, t);
        b.failed(3, t);
        assert!(b.ready(&2, t), "2 was due soonest: replaced");
        assert!(!b.ready(&1, t) && !b.ready(&3, t));
    }
}
