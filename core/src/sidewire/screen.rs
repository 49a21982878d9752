//! Which inbound packets earn a signature check, before any is made.
//!
//! A packet's `src_pk` is only a claim until its signature is checked, so
//! no limit before that check may be keyed on the claim alone: junk
//! claiming to come from A would spend A's allowance and silence A, and
//! junk from fresh random keys would find a fresh allowance each time.
//! The rules:
//!
//! - A key whose signature the node verified recently (a *peer*, held in a
//!   fixed table in the caller's storage) is charged to its own bucket,
//!   and its packets are checked first ([`Class::Peer`]).
//! - Once a check fails under a peer's key, or its bucket is empty, its
//!   packets are charged to one node-wide budget for such claims
//!   ([`Class::Claimed`]): junk claiming A then costs at most that budget
//!   and never A's own bucket, and A's genuine packets are still checked
//!   within it. A later valid signature makes A a clean peer again.
//! - Every other key is charged to one node-wide budget for unverified
//!   work ([`Class::Unverified`]), checked last: floods from random keys
//!   cost at most that many checks per second, and since only a verified
//!   key becomes a peer, at most that many new peers per second.
//!
//! Sans-I/O: the caller passes the time (seconds, any monotonic origin,
//! as for [`TokenBucket`]), reports each check's outcome with
//! [`Screen::verified`] or [`Screen::failed`], and keeps the queues.

use crate::identity::PUBLIC_KEY_LEN;
use crate::rate::{RateLimit, TokenBucket};
use crate::sidewire::buckets;

/// Slots per bucket of the peer table.
pub const PEER_WAYS: usize = 4;

/// The budgets, in signature checks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScreenLimits {
    /// Each recently verified peer's own allowance.
    pub peer: RateLimit,
    /// Node-wide: packets claiming a peer that failed a check since its
    /// last valid one, or whose own bucket is empty.
    pub claimed: RateLimit,
    /// Node-wide: packets from every other key.
    pub unverified: RateLimit,
    /// Seconds a key stays a peer after its last valid signature.
    pub peer_for: f64,
}

impl Default for ScreenLimits {
    fn default() -> Self {
        Self {
            peer: RateLimit {
                rate: 200.0,
                burst: 400.0,
            },
            claimed: RateLimit {
                rate: 1000.0,
                burst: 1000.0,
            },
            unverified: RateLimit {
                rate: 100.0,
                burst: 200.0,
            },
            peer_for: 3600.0,
        }
    }
}

/// How urgent a packet's check is; checks go in this order (`Peer`
/// first), and within a class in arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Peer = 0,
    Claimed = 1,
    Unverified = 2,
}

impl Class {
    /// Every class, most urgent first.
    pub const ALL: [Self; 3] = [Self::Peer, Self::Claimed, Self::Unverified];

    /// 0 for the most urgent: an index for per-class queues.
    pub fn rank(self) -> usize {
        self as usize
    }
}

/// A recently verified key, in the caller's table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peer {
    key: [u8; PUBLIC_KEY_LEN],
    bucket: TokenBucket,
    /// When its signature last verified; negative: empty slot.
    verified_at: f64,
    /// A check failed under this key since its last valid signature.
    suspect: bool,
}

impl Peer {
    pub const EMPTY: Self = Self {
        key: [0; PUBLIC_KEY_LEN],
        bucket: TokenBucket::EMPTY,
        verified_at: -1.0,
        suspect: false,
    };
}

impl Default for Peer {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// The screening state: the peer table (caller's storage, `[Peer; N]` or
/// a boxed slice) and the node-wide budgets.
#[derive(Debug)]
pub struct Screen<P> {
    peers: P,
    seed: [u8; 16],
    limits: ScreenLimits,
    claimed: TokenBucket,
    unverified: TokenBucket,
}

impl<P: AsRef<[Peer]> + AsMut<[Peer]>> Screen<P> {
    /// `peers` bounds how many keys count as recently verified (a
    /// multiple of [`PEER_WAYS`] uses every slot); `seed` must be random
    /// and secret, so senders cannot aim at one bucket of the table.
    pub fn new(mut peers: P, seed: [u8; 16], limits: ScreenLimits, now: f64) -> Self {
        peers.as_mut().fill(Peer::EMPTY);
        Self {
            peers,
            seed,
            claimed: TokenBucket::new(&limits.claimed, now),
            unverified: TokenBucket::new(&limits.unverified, now),
            limits,
        }
    }

    /// Whether a packet claiming `src` gets a signature check, and how
    /// urgent it is; `None`: drop it. Charges the budget it names.
    pub fn admit(&mut self, src: &[u8; PUBLIC_KEY_LEN], now: f64) -> Option<Class> {
        let limits = self.limits;
        if let Some(at) = self.find(src, now) {
            let peer = &mut self.peers.as_mut()[at];
            if !peer.suspect && peer.bucket.try_take(&limits.peer, now) {
                return Some(Class::Peer);
            }
            return self
                .claimed
                .try_take(&limits.claimed, now)
                .then_some(Class::Claimed);
        }
        self.unverified
            .try_take(&limits.unverified, now)
            .then_some(Class::Unverified)
    }

    /// [`Self::admit`] for a packet this node is waiting for (an ACK that
    /// names a pending send's destination, queue and sequence, which only
    /// those watching the destination's topic have seen): from a key that
    /// is no peer it is
    /// charged to the `claimed` budget, not the `unverified` one, so a
    /// flood from fresh keys cannot hold up the first answer of a peer
    /// this node has just written to.
    pub fn admit_expected(&mut self, src: &[u8; PUBLIC_KEY_LEN], now: f64) -> Option<Class> {
        if self.find(src, now).is_some() {
            return self.admit(src, now);
        }
        let limits = self.limits;
        self.claimed
            .try_take(&limits.claimed, now)
            .then_some(Class::Claimed)
    }

    /// A signature by `src` verified: it is a (clean) peer from now on,
    /// displacing the least recently verified key of its bucket if need be.
    pub fn verified(&mut self, src: &[u8; PUBLIC_KEY_LEN], now: f64) {
        let limits = self.limits;
        if let Some(at) = self.find(src, now) {
            let peer = &mut self.peers.as_mut()[at];
            peer.verified_at = now;
            peer.suspect = false;
            return;
        }
        let bucket = self.bucket(src);
        let Some(slot) = self.peers.as_mut()[bucket]
            .iter_mut()
            .min_by(|a, b| a.verified_at.total_cmp(&b.verified_at))
        else {
            return;
        };
        *slot = Peer {
            key: *src,
            bucket: TokenBucket::new(&limits.peer, now),
            verified_at: now,
            suspect: false,
        };
    }

    /// A packet claiming `src` failed its signature check: further claims
    /// of `src` are charged to the node-wide `claimed` budget until one
    /// verifies.
    pub fn failed(&mut self, src: &[u8; PUBLIC_KEY_LEN], now: f64) {
        if let Some(at) = self.find(src, now) {
            self.peers.as_mut()[at].suspect = true;
        }
    }

    /// Whether `src` is a recently verified peer (suspect or not).
    pub fn is_peer(&self, src: &[u8; PUBLIC_KEY_LEN], now: f64) -> bool {
        self.find(src, now).is_some()
    }

    fn find(&self, src: &[u8; PUBLIC_KEY_LEN], now: f64) -> Option<usize> {
        let bucket = self.bucket(src);
        let start = bucket.start;
        let peer_for = self.limits.peer_for;
        self.peers.as_ref()[bucket]
            .iter()
            .position(|p| p.verified_at >= 0.0 && p.key == *src && now - p.verified_at <= peer_for)
            .map(|i| start + i)
    }

    fn bucket(&self, src: &[u8; PUBLIC_KEY_LEN]) -> core::ops::Range<usize> {
        buckets::bucket(&self.seed, &[src], self.peers.as_ref().len(), PEER_WAYS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; PUBLIC_KEY_LEN] = [0xaa; PUBLIC_KEY_LEN];

    fn key(i: u32) -> [u8; PUBLIC_KEY_LEN] {
        let mut k = [3u8; PUBLIC_KEY_LEN];
        k[1..5].copy_from_slice(&i.to_be_bytes());
        k
    }

    fn screen() -> Screen<[Peer; 64]> {
        Screen::new([Peer::EMPTY; 64], [9; 16], ScreenLimits::default(), 0.0)
    }

    #[test]
    fn junk_claiming_a_peer_cannot_starve_it() {
        let mut s = screen();
        s.verified(&A, 0.0);
        // Each second: 900 junk packets claiming A (each fails its
        // check), then one genuine packet from A.
        for second in 1..=30u32 {
            let now = f64::from(second);
            for _ in 0..900 {
                if s.admit(&A, now).is_some() {
                    s.failed(&A, now);
                }
            }
            let class = s.admit(&A, now);
            assert!(class.is_some(), "A's packet dropped in second {second}");
            s.verified(&A, now);
        }
    }

    #[test]
    fn junk_from_random_keys_gets_a_bounded_number_of_checks() {
        let mut s = screen();
        let limits = ScreenLimits::default();
        let mut checks = 0u32;
        // 100,000 packets, each from a fresh key, over 10 s.
        for i in 0..100_000u32 {
            let now = f64::from(i) / 10_000.0;
            if s.admit(&key(i), now).is_some() {
                checks += 1;
                s.failed(&key(i), now);
            }
        }
        let bound = limits.unverified.burst + limits.unverified.rate * 10.0;
        assert!(f64::from(checks) <= bound, "{checks} checks");
        assert!(f64::from(checks) >= bound - 2.0, "{checks} checks");
    }

    #[test]
    fn peers_are_checked_first_and_unknown_keys_last() {
        let mut s = screen();
        s.verified(&A, 0.0);
        assert_eq!(s.admit(&A, 1.0), Some(Class::Peer));
        assert_eq!(s.admit(&key(1), 1.0), Some(Class::Unverified));
        assert!(Class::Peer < Class::Claimed && Class::Claimed < Class::Unverified);
        s.failed(&A, 1.0);
        assert_eq!(s.admit(&A, 1.0), Some(Class::Claimed));
        // A valid signature clears the suspicion.
        s.verified(&A, 1.0);
        assert_eq!(s.admit(&A, 1.0), Some(Class::Peer));
        // A failure under a key that is no peer changes nothing.
        s.failed(&key(1), 1.0);
        assert!(!s.is_peer(&key(1), 1.0));
    }

    #[test]
    fn a_peer_over_its_rate_falls_back_to_the_claimed_budget() {
        let mut s = screen();
        s.verified(&A, 0.0);
        let limits = ScreenLimits::default();
        let own = (0..1000)
            .filter(|_| s.admit(&A, 0.0) == Some(Class::Peer))
            .count();
        assert_eq!(own as f64, limits.peer.burst);
        // The other 600 went to the shared budget (1,000 at once).
        assert_eq!(s.admit(&A, 0.0), Some(Class::Claimed));
    }

    #[test]
    fn peers_expire_and_the_table_is_bounded() {
        let mut s = screen();
        s.verified(&A, 0.0);
        assert!(s.is_peer(&A, 3600.0));
        assert!(!s.is_peer(&A, 3601.0));
        // A table of 64 holds at most 64 peers, whatever is verified.
        for i in 0..1000 {
            s.verified(&key(i), 4000.0 + f64::from(i));
        }
        let held = (0..1000).filter(|&i| s.is_peer(&key(i), 5000.0)).count();
        assert!(held <= 64, "{held}");
        // The most recent key of each bucket survives.
        assert!(s.is_peer(&key(999), 5000.0));
    }

    #[test]
    fn an_expected_answer_does_not_wait_behind_a_flood_of_fresh_keys() {
        let mut s = screen();
        for i in 0..10_000 {
            let _ = s.admit(&key(i), 1.0);
        }
        assert_eq!(s.admit(&key(20_000), 1.0), None);
        assert_eq!(s.admit_expected(&A, 1.0), Some(Class::Claimed));
        // A peer's expected answer is simply a peer's packet.
        s.verified(&A, 1.0);
        assert_eq!(s.admit_expected(&A, 1.0), Some(Class::Peer));
    }

    #[test]
    fn an_empty_table_treats_every_key_as_unverified() {
        let mut s = Screen::new([Peer::EMPTY; 0], [0; 16], ScreenLimits::default(), 0.0);
        s.verified(&A, 0.0);
        assert_eq!(s.admit(&A, 0.0), Some(Class::Unverified));
    }
}
