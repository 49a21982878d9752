//! Per-source-address rate limiting, before any cryptography.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use keyway_core::rate::{RateLimit, TokenBucket};

/// One token bucket per source address, with a bound on how many sources
/// are tracked: idle (refilled) buckets are forgotten first; if the table is
/// still full, unknown sources are refused until it drains (a spoofed
/// flood must not grow memory).
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    limit: RateLimit,
    max_sources: usize,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl SourceLimiter {
    pub(crate) fn new(limit: RateLimit, max_sources: usize) -> Self {
        Self {
            limit,
            max_sources,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a request from `ip` at `now` (monotonic seconds) may proceed.
    pub(crate) fn allow(&self, ip: IpAddr, now: f64) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&ip) {
            return bucket.try_take(&self.limit, now);
        }
        if buckets.len() >= self.max_sources {
            let limit = self.limit;
            buckets.retain(|_, b| !b.is_full(&limit, now));
            if buckets.len() >= self.max_sources {
                return false;
            }
        }
        let mut bucket = TokenBucket::new(&self.limit, now);
        let allowed = bucket.try_take(&self.limit, now);
        buckets.insert(ip, bucket);
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_has_its_own_bucket_and_the_table_is_bounded() {
        let limiter = SourceLimiter::new(
            RateLimit {
                rate: 1.0,
                burst: 2.0,
            },
            2,
        );
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let c: IpAddr = [127, 0, 0, 4].into();
        assert!(limiter.allow(a, 0.0) && limiter.allow(a, 0.0));
        assert!(!limiter.allow(a, 0.0));
        assert!(limiter.allow(b, 0.0));
        assert!(!limiter.allow(c, 0.0), "table full of busy sources");
        assert!(limiter.allow(c, 10.0), "idle buckets are forgotten");
    }
}
