//! Where each destination was last reached: the brokers its ACKs came back
//! through (spec §6.7), tried first by the next send to it.
//!
//! The rules: at most [`PER_DEST`] brokers per destination, most recently
//! seen first; one not seen within the expiry is neither used nor kept; a
//! send may narrow the expiry (never widen it); and a change worth saving
//! (for a shell that keeps the hints in a file) is a new broker or one
//! last seen more than [`RESAVE_AFTER`] seconds ago. Times are wall-clock
//! Unix seconds, since hints outlive the process.

use crate::identity::PUBLIC_KEY_LEN;

/// Brokers remembered per destination, at most.
pub const PER_DEST: usize = 4;

/// A broker seen again within this many seconds changes nothing worth
/// saving.
pub const RESAVE_AFTER: u64 = 60;

/// A broker a destination was reached through, and when (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen<B> {
    pub broker: B,
    pub seen: u64,
}

/// One destination's hints, most recent first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestHints<B> {
    seen: [Option<Seen<B>>; PER_DEST],
}

impl<B> Default for DestHints<B> {
    fn default() -> Self {
        Self {
            seen: [None, None, None, None],
        }
    }
}

impl<B: PartialEq> DestHints<B> {
    /// Records that the destination answered through `broker` at `now`,
    /// dropping what expired. Returns whether a file should be written.
    pub fn remember(&mut self, broker: B, now: u64, expiry: u64) -> bool {
        for s in &mut self.seen {
            if s.as_ref()
                .is_some_and(|s| now.saturating_sub(s.seen) > expiry)
            {
                *s = None;
            }
        }
        let changed = match self.seen.iter_mut().flatten().find(|s| s.broker == broker) {
            Some(s) => {
                let stale = now.saturating_sub(s.seen) > RESAVE_AFTER;
                s.seen = now;
                stale
            }
            None => {
                // An empty place, else the least recently seen.
                if let Some(slot) = self
                    .seen
                    .iter_mut()
                    .min_by_key(|s| s.as_ref().map_or(0, |s| s.seen.saturating_add(1)))
                {
                    *slot = Some(Seen { broker, seen: now });
                }
                true
            }
        };
        self.seen.sort_unstable_by_key(|s| {
            core::cmp::Reverse(s.as_ref().map_or(0, |s| s.seen.saturating_add(1)))
        });
        changed
    }

    /// The brokers usable at `now`, most recent first: seen within the
    /// expiry, narrowed by `max_age` if given.
    pub fn usable(&self, now: u64, expiry: u64, max_age: Option<u64>) -> impl Iterator<Item = &B> {
        let max_age = max_age.map_or(expiry, |a| a.min(expiry));
        self.seen
            .iter()
            .flatten()
            .filter(move |s| now.saturating_sub(s.seen) <= max_age)
            .map(|s| &s.broker)
    }

    /// Every remembered broker (expired ones included), most recent first.
    pub fn all(&self) -> impl Iterator<Item = &Seen<B>> {
        self.seen.iter().flatten()
    }

    /// Restores a remembered broker (from a file); most recent first order
    /// is kept by [`Self::remember`]'s rule.
    pub fn restore(&mut self, broker: B, seen: u64) {
        if let Some(slot) = self.seen.iter_mut().find(|s| s.is_none()) {
            *slot = Some(Seen { broker, seen });
        }
        self.seen.sort_unstable_by_key(|s| {
            core::cmp::Reverse(s.as_ref().map_or(0, |s| s.seen.saturating_add(1)))
        });
    }

    /// When the destination was last reached (0 if never).
    pub fn newest(&self) -> u64 {
        self.all().map(|s| s.seen).max().unwrap_or(0)
    }
}

/// Hints for up to `N` destinations; the one reached least recently is
/// forgotten first.
#[derive(Debug)]
pub struct Hints<B, const N: usize> {
    dests: [Option<([u8; PUBLIC_KEY_LEN], DestHints<B>)>; N],
    expiry: u64,
}

impl<B: PartialEq, const N: usize> Hints<B, N> {
    /// `expiry` in seconds.
    pub fn new(expiry: u64) -> Self {
        Self {
            dests: core::array::from_fn(|_| None),
            expiry,
        }
    }

    pub fn remember(&mut self, dest: &[u8; PUBLIC_KEY_LEN], broker: B, now: u64) -> bool {
        let expiry = self.expiry;
        if let Some((_, h)) = self.dests.iter_mut().flatten().find(|(d, _)| d == dest) {
            return h.remember(broker, now, expiry);
        }
        let Some(slot) = self
            .dests
            .iter_mut()
            .min_by_key(|d| d.as_ref().map_or(0, |(_, h)| h.newest().saturating_add(1)))
        else {
            return false;
        };
        let mut hints = DestHints::default();
        let changed = hints.remember(broker, now, expiry);
        *slot = Some((*dest, hints));
        changed
    }

    pub fn usable(
        &self,
        dest: &[u8; PUBLIC_KEY_LEN],
        now: u64,
        max_age: Option<u64>,
    ) -> impl Iterator<Item = &B> {
        let expiry = self.expiry;
        self.dests
            .iter()
            .flatten()
            .find(|(d, _)| d == dest)
            .into_iter()
            .flat_map(move |(_, h)| h.usable(now, expiry, max_age))
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn hints_expire_narrow_and_say_when_to_save() {
        let mut h = DestHints::default();
        assert!(h.remember(2u8, 1000, 3600));
        assert!(!h.remember(2, 1010, 3600), "seen again soon: no write");
        assert!(h.remember(2, 1071, 3600), "a minute later: write");
        assert!(h.remember(3, 1080, 3600));
        let usable =
            |h: &DestHints<u8>, now, max| h.usable(now, 3600, max).copied().collect::<Vec<_>>();
        assert_eq!(usable(&h, 1090, None), [3, 2]);
        assert_eq!(usable(&h, 1071 + 3601, None), [3], "the older one expired");
        assert_eq!(usable(&h, 1090, Some(15)), [3], "narrowed");
        assert_eq!(
            usable(&h, 1071 + 3601, Some(u64::MAX)),
            [3],
            "never widened"
        );
        for b in 10..20 {
            h.remember(b, 2000 + u64::from(b), 3600);
        }
        assert_eq!(usable(&h, 2100, None), [19, 18, 17, 16]);
    }

    #[test]
    fn the_least_recently_reached_destination_goes_first() {
        let mut hints = Hints::<u8, 2>::new(3600);
        hints.remember(&[1; 33], 1, 100);
        hints.remember(&[2; 33], 2, 200);
        hints.remember(&[1; 33], 1, 300);
        hints.remember(&[3; 33], 3, 400);
        assert_eq!(hints.usable(&[2; 33], 400, None).count(), 0);
        assert_eq!(hints.usable(&[1; 33], 400, None).count(), 1);
        assert_eq!(hints.usable(&[3; 33], 400, None).count(), 1);
    }
}
