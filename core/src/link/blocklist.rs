//! The exponential blocklist: peers that fail handshakes or break limits
//! are refused for a while, twice as long for each repeat offence (the
//! seed's "temporarily blocklisted (exponentially)"), within a bound.
//!
//! Keyed by the source address before the identity proof and by the
//! identity after it ([`BlockKey`]), so a peer cannot clear its record by
//! changing address once it is known, and an address is not punished for
//! what a proven identity did. The table is bounded: when it is full, the
//! entry that would be released soonest makes room.

use alloc::collections::BTreeMap;
use core::net::IpAddr;
use core::time::Duration;

use crate::identity::{PUBLIC_KEY_LEN, PublicKey};
use crate::time::Instant;

/// Whom a penalty is recorded against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlockKey {
    /// A source address (before the identity proof).
    Address(IpAddr),
    /// A proven identity.
    Identity([u8; PUBLIC_KEY_LEN]),
}

impl BlockKey {
    /// The key of a proven identity.
    pub fn identity(key: &PublicKey) -> Self {
        Self::Identity(*key.as_bytes())
    }
}

/// How long penalties last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlocklistPolicy {
    /// The first offence's block.
    pub base: Duration,
    /// No block lasts longer.
    pub max: Duration,
    /// An offender with no new offence for this long (after its block
    /// ended) starts again from `base`.
    pub forget_after: Duration,
    /// Most keys remembered.
    pub capacity: usize,
}

impl BlocklistPolicy {
    /// 1 s, doubling up to 1 h; forgotten after 1 h of good behaviour.
    pub const DEFAULT: Self = Self {
        base: Duration::from_secs(1),
        max: Duration::from_secs(3600),
        forget_after: Duration::from_secs(3600),
        capacity: 16_384,
    };
}

impl Default for BlocklistPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    strikes: u32,
    until: Instant,
}

/// Blocked peers, in the caller's monotonic time.
#[derive(Clone, Debug)]
pub struct Blocklist<K: Ord + Clone = BlockKey> {
    policy: BlocklistPolicy,
    entries: BTreeMap<K, Entry>,
}

impl<K: Ord + Clone> Blocklist<K> {
    pub fn new(policy: BlocklistPolicy) -> Self {
        Self {
            policy,
            entries: BTreeMap::new(),
        }
    }

    /// When `key`'s block ends, if it is blocked at `now`.
    pub fn blocked_until(&self, key: &K, now: Instant) -> Option<Instant> {
        self.entries
            .get(key)
            .map(|e| e.until)
            .filter(|&until| now < until)
    }

    /// Whether `key` is blocked at `now`.
    pub fn is_blocked(&self, key: &K, now: Instant) -> bool {
        self.blocked_until(key, now).is_some()
    }

    /// How many offences `key` has on record (0 once forgotten).
    pub fn strikes(&self, key: &K, now: Instant) -> u32 {
        self.entries
            .get(key)
            .filter(|e| !self.forgotten(e, now))
            .map_or(0, |e| e.strikes)
    }

    fn forgotten(&self, entry: &Entry, now: Instant) -> bool {
        now >= entry.until.saturating_add(self.policy.forget_after)
    }

    /// Records an offence; returns when the block ends.
    pub fn penalise(&mut self, key: K, now: Instant) -> Instant {
        let strikes = self.strikes(&key, now).saturating_add(1);
        // base · 2^(strikes−1), saturating well before the shift overflows.
        let factor = 1u32 << strikes.saturating_sub(1).min(30);
        let block = self
            .policy
            .base
            .checked_mul(factor)
            .map_or(self.policy.max, |d| d.min(self.policy.max));
        let until = now.saturating_add(block);
        if !self.entries.contains_key(&key) {
            self.make_room(now);
        }
        if self.policy.capacity > 0 {
            self.entries.insert(key, Entry { strikes, until });
        }
        until
    }

    /// Forgets `key` (an operator's pardon).
    pub fn pardon(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Drops every entry that no longer matters at `now`.
    pub fn expire(&mut self, now: Instant) {
        let forget_after = self.policy.forget_after;
        self.entries
            .retain(|_, e| now < e.until.saturating_add(forget_after));
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.policy.capacity {
            return;
        }
        self.expire(now);
        while self.entries.len() >= self.policy.capacity {
            let Some(soonest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.until)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.entries.remove(&soonest);
        }
    }
}

impl<K: Ord + Clone> Default for Blocklist<K> {
    fn default() -> Self {
        Self::new(BlocklistPolicy::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    const POLICY: BlocklistPolicy = BlocklistPolicy {
        base: Duration::from_secs(2),
        max: Duration::from_secs(60),
        forget_after: Duration::from_secs(100),
        capacity: 3,
    };

    fn addr(n: u8) -> BlockKey {
        BlockKey::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    #[test]
    fn blocks_grow_exponentially_up_to_the_cap() {
        let mut list = Blocklist::new(POLICY);
        let mut now = Instant::from_secs(1000);
        let mut blocks = alloc::vec::Vec::new();
        for _ in 0..7 {
            let until = list.penalise(addr(1), now);
            blocks.push(until.saturating_duration_since(now).as_secs());
            assert!(list.is_blocked(&addr(1), now));
            assert!(!list.is_blocked(&addr(2), now));
            // Re-offend right after the block ends.
            now = until;
            assert!(!list.is_blocked(&addr(1), now));
        }
        assert_eq!(blocks, [2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn records_expire_after_good_behaviour() {
        let mut list = Blocklist::new(POLICY);
        let t0 = Instant::from_secs(1000);
        let until = list.penalise(addr(1), t0);
        list.penalise(addr(1), until);
        assert_eq!(list.strikes(&addr(1), until), 2);
        let released = Instant::from_secs(1000 + 2 + 4);
        assert!(!list.is_blocked(&addr(1), released));
        // Just before forget_after, a new offence still doubles.
        let almost = released + Duration::from_secs(99);
        assert_eq!(list.strikes(&addr(1), almost), 2);
        // After it, the record is gone and the next block starts at base.
        let later = released + Duration::from_secs(100);
        assert_eq!(list.strikes(&addr(1), later), 0);
        list.expire(later);
        assert!(list.is_empty());
        let until = list.penalise(addr(1), later);
        assert_eq!(until.saturating_duration_since(later).as_secs(), 2);
    }

    #[test]
    fn a_full_table_evicts_the_soonest_released() {
        let mut list = Blocklist::new(POLICY);
        let now = Instant::from_secs(10);
        list.penalise(addr(1), now);
        list.penalise(addr(2), now);
        list.penalise(addr(2), now);
        list.penalise(addr(3), now);
        list.penalise(addr(3), now);
        list.penalise(addr(4), now);
        assert_eq!(list.len(), 3);
        assert!(!list.is_blocked(&addr(1), now), "shortest block evicted");
        assert!(list.is_blocked(&addr(2), now));
        assert!(list.is_blocked(&addr(4), now));
        let id = Keypair::from_secret_bytes(&[1; 32]).unwrap();
        let mut by_id = Blocklist::new(POLICY);
        by_id.penalise(BlockKey::identity(id.public()), now);
        assert!(by_id.is_blocked(&BlockKey::identity(id.public()), now));
    }

    use crate::Keypair;
}
