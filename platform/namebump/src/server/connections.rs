//! Who holds the server's TCP connections: at most `per_source` per source
//! (IPv4 address or IPv6 /64) and `max` in all. When every slot is taken, a
//! newcomer takes one from the source holding the most, if that source
//! holds more than the newcomer does: so a party with few addresses can
//! fill its own share but never lock out a source it does not control.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::source_key::source_key;

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source already holds its share.
    SourceFull,
    /// Every slot is taken, and no source holds more than this one.
    Full,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::SourceFull => "too_many_connections_from_source",
            Self::Full => "too_many_connections",
        }
    }
}

#[derive(Debug)]
struct Held {
    id: u64,
    evict: CancellationToken,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each source's connections, oldest first.
    sources: HashMap<IpAddr, Vec<Held>>,
    total: usize,
    next_id: u64,
}

#[derive(Debug)]
pub(crate) struct ConnectionTable {
    max: usize,
    per_source: usize,
    inner: Mutex<Inner>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    key: IpAddr,
    id: u64,
    /// Cancelled when the server shuts down or the slot is given to another source.
    pub(crate) stop: CancellationToken,
    /// Whether admitting this connection evicted another.
    pub(crate) evicted_another: bool,
}

impl ConnectionTable {
    pub(crate) fn new(max: usize, per_source: usize) -> Self {
        Self {
            max,
            per_source,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Admits a connection from `ip`; its [`Slot::stop`] is a child of `shutdown`.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        shutdown: &CancellationToken,
    ) -> Result<Slot, Refused> {
        let key = source_key(ip);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mine = inner.sources.get(&key).map_or(0, Vec::len);
        if mine >= self.per_source {
            return Err(Refused::SourceFull);
        }
        let mut evicted_another = false;
        if inner.total >= self.max {
            // The heaviest source; among equals, the one with the oldest connection.
            let victim = inner
                .sources
                .iter()
                .filter(|(_, held)| held.len() > mine)
                .max_by_key(|(_, held)| {
                    (
                        held.len(),
                        std::cmp::Reverse(held.first().map_or(u64::MAX, |h| h.id)),
                    )
                })
                .map(|(k, _)| *k);
            let Some(victim) = victim else {
                return Err(Refused::Full);
            };
            if let Some(held) = inner.sources.get_mut(&victim) {
                if !held.is_empty() {
                    held.remove(0).evict.cancel();
                    inner.total -= 1;
                    evicted_another = true;
                }
                if inner.sources.get(&victim).is_some_and(Vec::is_empty) {
                    inner.sources.remove(&victim);
                }
            }
            if inner.total >= self.max {
                return Err(Refused::Full);
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let stop = shutdown.child_token();
        inner.sources.entry(key).or_default().push(Held {
            id,
            evict: stop.clone(),
        });
        inner.total += 1;
        Ok(Slot {
            table: self.clone(),
            key,
            id,
            stop,
            evicted_another,
        })
    }

    /// Connections held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.table.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(held) = inner.sources.get_mut(&self.key) else {
            return;
        };
        // Absent if it was evicted (and so already uncounted).
        let Some(at) = held.iter().position(|h| h.id == self.id) else {
            return;
        };
        held.remove(at);
        if held.is_empty() {
            inner.sources.remove(&self.key);
        }
        inner.total -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        [127, 0, 0, last].into()
    }

    #[test]
    fn each_source_is_capped_and_slots_come_back_on_drop() {
        let table = Arc::new(ConnectionTable::new(10, 2));
        let shutdown = CancellationToken::new();
        let a = table.admit(ip(2), &shutdown).unwrap();
        let _b = table.admit(ip(2), &shutdown).unwrap();
        assert_eq!(
            table.admit(ip(2), &shutdown).err(),
            Some(Refused::SourceFull)
        );
        drop(a);
        let _a = table.admit(ip(2), &shutdown).unwrap();
        assert_eq!(table.len(), 2);
        // IPv6 sources are /64s.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _c = table.admit(v6("2001:db8::1"), &shutdown).unwrap();
        let _d = table.admit(v6("2001:db8::2:0:0:1"), &shutdown).unwrap();
        assert_eq!(
            table.admit(v6("2001:db8::ffff:0:0:1"), &shutdown).err(),
            Some(Refused::SourceFull)
        );
        assert!(table.admit(v6("2001:db8:0:1::1"), &shutdown).is_ok());
    }

    #[test]
    fn when_full_a_newcomer_takes_the_oldest_slot_of_the_heaviest_source() {
        let table = Arc::new(ConnectionTable::new(4, 3));
        let shutdown = CancellationToken::new();
        let heavy: Vec<Slot> = (0..3)
            .map(|_| table.admit(ip(2), &shutdown).unwrap())
            .collect();
        let light = table.admit(ip(3), &shutdown).unwrap();
        let newcomer = table.admit(ip(4), &shutdown).unwrap();
        assert!(newcomer.evicted_another);
        assert!(heavy[0].stop.is_cancelled(), "the oldest of the heaviest");
        assert!(!heavy[1].stop.is_cancelled() && !light.stop.is_cancelled());
        assert_eq!(table.len(), 4);
        // The evicted slot's drop does not free a second slot.
        let mut heavy = heavy.into_iter();
        drop(heavy.next());
        assert_eq!(table.len(), 4);
        // Now .2 holds 2 and .3, .4 hold 1 each: .3 may still take from .2 …
        let second = table.admit(ip(3), &shutdown).unwrap();
        assert!(second.evicted_another);
        assert!(heavy.next().is_some_and(|s| s.stop.is_cancelled()));
        // … but not beyond: no source holds more than the 2 it holds now.
        assert_eq!(table.admit(ip(3), &shutdown).err(), Some(Refused::Full));
        // A source holding fewer takes from it, oldest first.
        let third = table.admit(ip(2), &shutdown).unwrap();
        assert!(light.stop.is_cancelled() && !second.stop.is_cancelled());
        assert_eq!(table.len(), 4);
        drop(third);
        assert_eq!(table.len(), 3);
        // Shutdown reaches every slot.
        shutdown.cancel();
        assert!(second.stop.is_cancelled() && newcomer.stop.is_cancelled());
    }
}
