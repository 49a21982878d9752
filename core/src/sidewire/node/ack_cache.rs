//! The signed ACKs a node sent, kept so that a copy of a delivered MSG
//! can be acknowledged again without a signature, and without the replay
//! table: a flood evicts a peer's replay entry first (it expires before
//! the flood's future-stamped ones), after which a resend of the same
//! signed bytes is `TooOld`; if the first ACK was lost, this is the only
//! way the sender learns of the delivery.
//!
//! Bounded, and fair per source: each source keeps its newest
//! [`PER_SOURCE`] ACKs (a flooding key evicts only its own). Sources live
//! in a set-associative table in the caller's storage, found by a keyed
//! hash (the caller's random seed, so keys cannot be aimed at one
//! bucket); in a full bucket the least recently acknowledged source goes.
//! Re-sending is limited per ACK and link (once per interval), so
//! replaying one captured MSG at line rate costs a few publishes per
//! interval.

use core::time::Duration;

use crate::identity::PUBLIC_KEY_LEN;
use crate::sidewire::app_packet::{ACK_PAYLOAD, HEADER_LEN};
use crate::sidewire::buckets;
use crate::signature::DIGEST_LEN;
use crate::time::Instant;

use super::LinkId;

/// ACKs kept per source: its most recent messages.
pub const PER_SOURCE: usize = 4;

/// Sources per bucket of the table: enough that evicting one source
/// takes about as many keys as the whole table holds (see the sidewire
/// DESIGN.md), few enough to search on every inbound MSG.
pub const WAYS: usize = 16;

/// Links an ACK's re-sends are tracked on; a copy arriving on yet another
/// link takes the oldest record's place.
const LINKS_TRACKED: usize = 4;

/// Bytes of a signed ACK.
pub const ACK_LEN: usize = HEADER_LEN + ACK_PAYLOAD.len();

/// One kept ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kept {
    queue: [u8; 32],
    seq: u32,
    digest: [u8; DIGEST_LEN],
    bytes: [u8; ACK_LEN],
    /// When the ACK last went out on each link.
    sent: [Option<(LinkId, Instant)>; LINKS_TRACKED],
    /// Order of insertion within the source, for eviction.
    stamp: u64,
}

/// One source's ACKs: a slot of the caller's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceAcks {
    src: [u8; PUBLIC_KEY_LEN],
    /// When the source was last acknowledged (a counter); 0: empty slot.
    used: u64,
    acks: [Option<Kept>; PER_SOURCE],
}

impl SourceAcks {
    pub const EMPTY: Self = Self {
        src: [0; PUBLIC_KEY_LEN],
        used: 0,
        acks: [None; PER_SOURCE],
    };
}

impl Default for SourceAcks {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// What to do with a copy of a MSG.
#[derive(Debug, PartialEq, Eq)]
pub enum Reack<'a> {
    /// An exact copy of an acknowledged MSG: send these bytes back.
    Send(&'a [u8; ACK_LEN]),
    /// An exact copy, acknowledged on this link within the interval.
    Suppressed,
    /// No ACK kept for it (or other content under its id).
    Unknown,
}

/// The kept ACKs, in the caller's table of [`SourceAcks`].
#[derive(Debug)]
pub struct AckCache<S> {
    sources: S,
    seed: [u8; 16],
    next: u64,
}

impl<S: AsRef<[SourceAcks]> + AsMut<[SourceAcks]>> AckCache<S> {
    /// `seed` must be random and secret.
    pub fn new(mut sources: S, seed: [u8; 16]) -> Self {
        sources.as_mut().fill(SourceAcks::EMPTY);
        Self {
            sources,
            seed,
            next: 1,
        }
    }

    /// Remembers the signed ACK for (src, queue, seq, digest), sent just
    /// now on `sent_on` if given.
    pub fn insert(
        &mut self,
        src: [u8; PUBLIC_KEY_LEN],
        (queue, seq): ([u8; 32], u32),
        digest: [u8; DIGEST_LEN],
        bytes: [u8; ACK_LEN],
        sent_on: Option<(LinkId, Instant)>,
    ) {
        let stamp = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        let bucket = self.bucket(&src);
        let table = &mut self.sources.as_mut()[bucket];
        let Some(slot) = table.iter_mut().find(|s| s.used != 0 && s.src == src) else {
            // An empty slot, else the least recently acknowledged source.
            let Some(slot) = table.iter_mut().min_by_key(|s| s.used) else {
                return;
            };
            *slot = SourceAcks {
                src,
                used: stamp,
                acks: [None; PER_SOURCE],
            };
            put(slot, queue, seq, digest, bytes, sent_on, stamp);
            return;
        };
        slot.used = stamp;
        put(slot, queue, seq, digest, bytes, sent_on, stamp);
    }

    /// Whether to acknowledge a copy of (src, queue, seq, digest) that
    /// arrived on `link` at `now`: at most once per `interval` per link.
    pub fn reack(
        &mut self,
        src: &[u8; PUBLIC_KEY_LEN],
        (queue, seq): ([u8; 32], u32),
        digest: &[u8; DIGEST_LEN],
        link: LinkId,
        now: Instant,
        interval: Duration,
    ) -> Reack<'_> {
        let bucket = self.bucket(src);
        let Some(kept) = self.sources.as_mut()[bucket]
            .iter_mut()
            .find(|s| s.used != 0 && s.src == *src)
            .and_then(|s| {
                s.acks
                    .iter_mut()
                    .flatten()
                    .find(|k| (k.queue, k.seq) == (queue, seq) && k.digest == *digest)
            })
        else {
            return Reack::Unknown;
        };
        if let Some((_, at)) = kept.sent.iter_mut().flatten().find(|(l, _)| *l == link) {
            if now.saturating_duration_since(*at) < interval {
                return Reack::Suppressed;
            }
            *at = now;
        } else {
            let slot = kept
                .sent
                .iter_mut()
                .min_by_key(|s| s.map_or(Instant::ZERO, |(_, at)| at));
            if let Some(slot) = slot {
                *slot = Some((link, now));
            }
        }
        Reack::Send(&kept.bytes)
    }

    /// ACKs kept.
    pub fn len(&self) -> usize {
        self.sources
            .as_ref()
            .iter()
            .filter(|s| s.used != 0)
            .map(|s| s.acks.iter().flatten().count())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket(&self, src: &[u8; PUBLIC_KEY_LEN]) -> core::ops::Range<usize> {
        buckets::bucket(
            &self.seed,
            &[b"ack", src],
            self.sources.as_ref().len(),
            WAYS,
        )
    }
}

/// Keeps one ACK in a source's slot: replacing one for the same (queue,
/// seq), else an empty place, else the source's oldest.
fn put(
    slot: &mut SourceAcks,
    queue: [u8; 32],
    seq: u32,
    digest: [u8; DIGEST_LEN],
    bytes: [u8; ACK_LEN],
    sent_on: Option<(LinkId, Instant)>,
    stamp: u64,
) {
    let at = slot
        .acks
        .iter()
        .position(|k| k.is_some_and(|k| (k.queue, k.seq) == (queue, seq)))
        .or_else(|| {
            slot.acks
                .iter()
                .enumerate()
                .min_by_key(|(_, k)| k.map_or(0, |k| k.stamp))
                .map(|(i, _)| i)
        });
    let Some(at) = at else { return };
    let mut sent = [None; LINKS_TRACKED];
    sent[0] = sent_on;
    slot.acks[at] = Some(Kept {
        queue,
        seq,
        digest,
        bytes,
        sent,
        stamp,
    });
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::vec;

    use super::*;

    fn bytes(n: u8) -> [u8; ACK_LEN] {
        [n; ACK_LEN]
    }

    const T: Instant = Instant::from_secs(10);

    #[test]
    fn a_flooding_source_evicts_only_its_own_acks() {
        let mut cache = AckCache::new(vec![SourceAcks::EMPTY; 8], [3; 16]);
        cache.insert([1; 33], ([1; 32], 0), [1; 20], bytes(1), None);
        for i in 0..10_000u32 {
            cache.insert([2; 33], ([2; 32], i), [2; 20], bytes(2), None);
        }
        assert_eq!(
            cache.reack(
                &[1; 33],
                ([1; 32], 0),
                &[1; 20],
                LinkId(0),
                T,
                Duration::ZERO
            ),
            Reack::Send(&bytes(1))
        );
        assert_eq!(cache.len(), 1 + PER_SOURCE);
    }

    #[test]
    fn sources_beyond_the_bound_evict_the_least_recent() {
        let mut cache = AckCache::new([SourceAcks::EMPTY; 4], [3; 16]);
        for s in 0..6u8 {
            cache.insert([s; 33], ([s; 32], 0), [s; 20], bytes(s), None);
        }
        let mut lookup = |s: u8| {
            cache.reack(
                &[s; 33],
                ([s; 32], 0),
                &[s; 20],
                LinkId(0),
                T,
                Duration::ZERO,
            ) == Reack::Unknown
        };
        assert!(lookup(1));
        assert!(!lookup(2));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn copies_are_reacked_once_per_interval_per_link_and_only_exact_ones() {
        let mut cache = AckCache::new([SourceAcks::EMPTY; 4], [3; 16]);
        let second = Duration::from_secs(1);
        let (l7, l8) = (LinkId(7), LinkId(8));
        cache.insert([1; 33], ([1; 32], 0), [1; 20], bytes(1), Some((l7, T)));
        let id = ([1; 32], 0);
        assert_eq!(
            cache.reack(&[1; 33], id, &[9; 20], l7, T, second),
            Reack::Unknown
        );
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], l7, T, second),
            Reack::Suppressed
        );
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], l8, T, second),
            Reack::Send(&bytes(1))
        );
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], l8, T, second),
            Reack::Suppressed
        );
        let later = T + second;
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], l7, later, second),
            Reack::Send(&bytes(1))
        );
    }
}
