//! Per-source rate limiting, before any cryptography. A source is an IPv4
//! address or an IPv6 /64 (`source_key.rs`); IPv6 /48s also share an
//! aggregate budget, so one site (an ISP typically delegates a /48 to one
//! customer) cannot multiply its budget by its 65,536 /64s.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use keyway_core::rate::{RateLimit, TokenBucket};

use super::source_key::source_key;

/// The /48 (top 48 bits) of an IPv6 source key; IPv4 has none.
fn net48(key: IpAddr) -> Option<u64> {
    match key {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => Some((v6.to_bits() >> 80) as u64),
    }
}

/// One token bucket per source, and one per IPv6 /48 if an aggregate limit
/// is set, with a bound on how many of each are tracked: idle (refilled)
/// buckets are forgotten first; if a table is still full, unknown sources
/// are refused until it drains (a spoofed flood must not grow memory).
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    limit: RateLimit,
    subnet_limit: Option<RateLimit>,
    max_sources: usize,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    sources: HashMap<IpAddr, TokenBucket>,
    subnets: HashMap<u64, TokenBucket>,
}

/// The bucket of `key` as it stands (a new, full one if unknown), or
/// `None` if it is unknown and the table is full of busy buckets.
fn bucket<K: Hash + Eq>(
    table: &mut HashMap<K, TokenBucket>,
    key: &K,
    limit: &RateLimit,
    max: usize,
    now: f64,
) -> Option<TokenBucket> {
    if let Some(bucket) = table.get(key) {
        return Some(*bucket);
    }
    if table.len() >= max {
        table.retain(|_, b| !b.is_full(limit, now));
        if table.len() >= max {
            return None;
        }
    }
    Some(TokenBucket::new(limit, now))
}

impl SourceLimiter {
    pub(crate) fn new(limit: RateLimit, max_sources: usize) -> Self {
        Self {
            limit,
            subnet_limit: None,
            max_sources,
            buckets: Mutex::new(Buckets::default()),
        }
    }

    /// Adds the aggregate limit of every IPv6 /48.
    pub(crate) fn with_subnet_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.subnet_limit = limit;
        self
    }

    /// Whether a request from `ip` at `now` (monotonic seconds) may proceed.
    /// A request takes a token from its source's bucket and its /48's, or
    /// from neither.
    pub(crate) fn allow(&self, ip: IpAddr, now: f64) -> bool {
        let key = source_key(ip);
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        let Some(mut source) = bucket(
            &mut buckets.sources,
            &key,
            &self.limit,
            self.max_sources,
            now,
        ) else {
            return false;
        };
        if !source.try_take(&self.limit, now) {
            return false;
        }
        if let (Some(net48), Some(limit)) = (net48(key), &self.subnet_limit) {
            let Some(mut subnet) =
                bucket(&mut buckets.subnets, &net48, limit, self.max_sources, now)
            else {
                return false;
            };
            if !subnet.try_take(limit, now) {
                return false;
            }
            buckets.subnets.insert(net48, subnet);
        }
        buckets.sources.insert(key, source);
        true
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

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0u8; 4]))
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_one_bucket() {
        let limiter = SourceLimiter::new(
            RateLimit {
                rate: 1.0,
                burst: 2.0,
            },
            1000,
        );
        assert!(limiter.allow(v6("2001:db8:1:2::1"), 0.0));
        assert!(limiter.allow(v6("2001:db8:1:2::2"), 0.0));
        // A fresh address of the same /64 is the same source.
        assert!(!limiter.allow(v6("2001:db8:1:2:ffff::3"), 0.0));
        assert!(limiter.allow(v6("2001:db8:1:3::1"), 0.0), "another /64");
    }

    #[test]
    fn the_64s_of_one_ipv6_48_share_an_aggregate() {
        let limiter = SourceLimiter::new(
            RateLimit {
                rate: 1.0,
                burst: 2.0,
            },
            1000,
        )
        .with_subnet_limit(Some(RateLimit {
            rate: 1.0,
            burst: 5.0,
        }));
        for net in 1..=5 {
            assert!(limiter.allow(v6(&format!("2001:db8:1:{net}::1")), 0.0));
        }
        assert!(
            !limiter.allow(v6("2001:db8:1:6::1"), 0.0),
            "the /48 spent its 5"
        );
        assert!(limiter.allow(v6("2001:db8:2:1::1"), 0.0), "another /48");
        assert!(limiter.allow(IpAddr::from([192, 0, 2, 1]), 0.0), "IPv4");
        // The aggregate refills like any bucket.
        assert!(limiter.allow(v6("2001:db8:1:6::1"), 1.0));
    }

    #[test]
    fn net48_is_the_top_48_bits() {
        assert_eq!(
            net48(source_key(v6("2001:db8:1:ffff::1"))),
            Some(0x2001_0db8_0001)
        );
        assert_eq!(
            net48(source_key(v6("::ffff:192.0.2.7"))),
            None,
            "IPv4-mapped is IPv4"
        );
    }
}
