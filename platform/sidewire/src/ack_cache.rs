//! The signed ACKs a node sent, kept so that a copy of a delivered MSG
//! can be acknowledged again without a signature, and without the replay
//! table: a flood evicts a peer's replay entry first (it expires before
//! the flood's future-stamped ones), after which a resend of the same
//! signed bytes is `TooOld`; if the first ACK was lost, this is the only
//! way the sender learns of the delivery.
//!
//! Bounded, and fair per source: each source keeps its newest
//! [`PER_SOURCE`] ACKs (a flooding key evicts only its own), and the
//! least recently acknowledged source goes when `max_sources` is reached
//! (so evicting a peer's ACK takes that many distinct verified keys
//! acknowledged after it). Re-sending is rate-limited per ACK and link,
//! so replaying one captured MSG at line rate costs a few publishes per
//! interval.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyway_core::signature::DIGEST_LEN;

/// ACKs kept per source: its most recent messages.
pub(crate) const PER_SOURCE: usize = 4;

/// Links an ACK's re-sends are tracked on; a copy arriving on yet another
/// link takes the oldest record's place.
const LINKS_TRACKED: usize = 4;

struct Entry {
    queue: [u8; 32],
    seq: u32,
    digest: [u8; DIGEST_LEN],
    bytes: Arc<[u8]>,
    /// When the ACK last went out on each link.
    sent: VecDeque<(usize, Instant)>,
}

/// What to do with a copy of a MSG.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reack {
    /// An exact copy of an acknowledged MSG: send these bytes back.
    Send(Arc<[u8]>),
    /// An exact copy, acknowledged on this link within the interval.
    Suppressed,
    /// No ACK kept for it (or other content under its id).
    Unknown,
}

pub(crate) struct AckCache {
    max_sources: usize,
    sources: HashMap<[u8; 33], (u64, VecDeque<Entry>)>,
    /// Sources by when they were last acknowledged (a counter).
    order: BTreeMap<u64, [u8; 33]>,
    next: u64,
}

impl AckCache {
    pub(crate) fn new(max_sources: usize) -> Self {
        Self {
            max_sources,
            sources: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// Remembers the signed ACK for (src, queue, seq, digest), sent just
    /// now on `link`.
    pub(crate) fn insert(
        &mut self,
        src: [u8; 33],
        (queue, seq): ([u8; 32], u32),
        digest: [u8; DIGEST_LEN],
        bytes: Arc<[u8]>,
        sent_on: Option<(usize, Instant)>,
    ) {
        if self.max_sources == 0 {
            return;
        }
        let stamp = self.next;
        self.next += 1;
        let entries = match self.sources.get_mut(&src) {
            Some((at, entries)) => {
                self.order.remove(at);
                *at = stamp;
                entries
            }
            None => {
                while self.sources.len() >= self.max_sources {
                    let Some((_, oldest)) = self.order.pop_first() else {
                        break;
                    };
                    self.sources.remove(&oldest);
                }
                &mut self
                    .sources
                    .entry(src)
                    .or_insert((stamp, VecDeque::new()))
                    .1
            }
        };
        self.order.insert(stamp, src);
        entries.retain(|e| (e.queue, e.seq) != (queue, seq));
        if entries.len() >= PER_SOURCE {
            entries.pop_front();
        }
        entries.push_back(Entry {
            queue,
            seq,
            digest,
            bytes,
            sent: sent_on.into_iter().collect(),
        });
    }

    /// Whether to acknowledge a copy of (src, queue, seq, digest) that
    /// arrived on `link` at `now`: at most once per `interval` per link.
    pub(crate) fn reack(
        &mut self,
        src: &[u8; 33],
        (queue, seq): ([u8; 32], u32),
        digest: &[u8; DIGEST_LEN],
        link: usize,
        now: Instant,
        interval: Duration,
    ) -> Reack {
        let Some(entry) = self.sources.get_mut(src).and_then(|(_, entries)| {
            entries
                .iter_mut()
                .find(|e| (e.queue, e.seq) == (queue, seq) && e.digest == *digest)
        }) else {
            return Reack::Unknown;
        };
        if let Some((_, at)) = entry.sent.iter_mut().find(|(l, _)| *l == link) {
            if now.saturating_duration_since(*at) < interval {
                return Reack::Suppressed;
            }
            *at = now;
        } else {
            if entry.sent.len() >= LINKS_TRACKED {
                entry.sent.pop_front();
            }
            entry.sent.push_back((link, now));
        }
        Reack::Send(entry.bytes.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sources.values().map(|(_, e)| e.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: u8) -> Arc<[u8]> {
        vec![n; 4].into()
    }

    #[test]
    fn a_flooding_source_evicts_only_its_own_acks() {
        let mut cache = AckCache::new(8);
        let t = Instant::now();
        cache.insert([1; 33], ([1; 32], 0), [1; 20], bytes(1), None);
        for i in 0..10_000u32 {
            cache.insert([2; 33], ([2; 32], i), [2; 20], bytes(2), None);
        }
        assert_eq!(
            cache.reack(&[1; 33], ([1; 32], 0), &[1; 20], 0, t, Duration::ZERO),
            Reack::Send(bytes(1))
        );
        assert_eq!(cache.len(), 1 + PER_SOURCE);
    }

    #[test]
    fn sources_beyond_the_bound_evict_the_least_recent() {
        let mut cache = AckCache::new(4);
        let t = Instant::now();
        for s in 0..6u8 {
            cache.insert([s; 33], ([s; 32], 0), [s; 20], bytes(s), None);
        }
        let lookup = |cache: &mut AckCache, s: u8| {
            cache.reack(&[s; 33], ([s; 32], 0), &[s; 20], 0, t, Duration::ZERO)
        };
        assert_eq!(lookup(&mut cache, 1), Reack::Unknown);
        assert_eq!(lookup(&mut cache, 2), Reack::Send(bytes(2)));
        assert_eq!(cache.sources.len(), 4);
        assert_eq!(cache.order.len(), 4);
    }

    #[test]
    fn copies_are_reacked_once_per_interval_per_link_and_only_exact_ones() {
        let mut cache = AckCache::new(4);
        let t = Instant::now();
        let second = Duration::from_secs(1);
        cache.insert([1; 33], ([1; 32], 0), [1; 20], bytes(1), Some((7, t)));
        let id = ([1; 32], 0);
        assert_eq!(
            cache.reack(&[1; 33], id, &[9; 20], 7, t, second),
            Reack::Unknown
        );
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], 7, t, second),
            Reack::Suppressed
        );
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], 8, t, second),
            Reack::Send(bytes(1))
        );
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], 8, t, second),
            Reack::Suppressed
        );
        let later = t + second;
        assert_eq!(
            cache.reack(&[1; 33], id, &[1; 20], 7, later, second),
            Reack::Send(bytes(1))
        );
    }
}
