//! Who holds the server's TCP connections: at most `per_source` per source
//! (IPv4 address or IPv6 /64), `4 × per_source` per IPv6 /48 (a site holds
//! 65,536 /64s), and `max` in all.
//!
//! When every slot is taken, a newcomer may evict a connection of a source
//! holding more than the newcomer's source does (so a party with few
//! addresses fills its own share but never locks out a source it does not
//! control), and among those, first one that has sent no complete request
//! within [`YOUNG`] of its accept (a trickler), then one that has been
//! answered (it had its turn; the reference client closes after one reply
//! anyway), the heaviest source's and oldest first. A connection younger
//! than [`YOUNG`] that has not been answered yet is never evicted: a
//! newcomer is refused instead. So a flood of connects from any number of
//! addresses cannot cut off a client between its connect and its reply.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::source_key::source_key;

/// How long a new connection is protected from eviction while it has not
/// been answered: ample for a reference client, which sends its request
/// at once; short enough that trickling connections soon become evictable.
pub(crate) const YOUNG: Duration = Duration::from_secs(2);

/// Connections one IPv6 /48 may hold, in per-source caps.
const PER_48_SOURCES: usize = 4;

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source already holds its share.
    SourceFull,
    /// Its IPv6 /48 already holds its share.
    SubnetFull,
    /// Every slot is taken, and none may be given to this source.
    Full,
}

impl Refused {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::SourceFull => "too_many_connections_from_source",
            Self::SubnetFull => "too_many_connections_from_subnet",
            Self::Full => "too_many_connections",
        }
    }
}

#[derive(Debug)]
struct Held {
    id: u64,
    evict: CancellationToken,
    admitted: Instant,
    served: Arc<AtomicBool>,
}

impl Held {
    /// Eviction order (lowest first), or `None` if it may not be evicted.
    fn rank(&self, now: Instant) -> Option<u8> {
        if self.served.load(Ordering::Relaxed) {
            Some(1)
        } else if now.saturating_duration_since(self.admitted) >= YOUNG {
            Some(0)
        } else {
            None
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Each source's connections, oldest first.
    sources: HashMap<IpAddr, Vec<Held>>,
    /// Connections per IPv6 /48.
    subnets: HashMap<Ipv6Addr, usize>,
    total: usize,
    next_id: u64,
}

impl Inner {
    /// Forgets one connection of `key`'s /48.
    fn leave_subnet(&mut self, key: IpAddr) {
        let Some(net) = subnet(key) else { return };
        if let Some(n) = self.subnets.get_mut(&net) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.subnets.remove(&net);
            }
        }
    }
}

/// The IPv6 /48 of a source key; IPv4 has no aggregate.
fn subnet(key: IpAddr) -> Option<Ipv6Addr> {
    match key {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => Some(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 80) - 1))),
    }
}

#[derive(Debug)]
pub(crate) struct ConnectionTable {
    max: usize,
    per_source: usize,
    per_48: usize,
    inner: Mutex<Inner>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    key: IpAddr,
    id: u64,
    served: Arc<AtomicBool>,
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
            per_48: per_source.saturating_mul(PER_48_SOURCES),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Admits a connection from `ip`; its [`Slot::stop`] is a child of `shutdown`.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        shutdown: &CancellationToken,
    ) -> Result<Slot, Refused> {
        self.admit_at(ip, shutdown, Instant::now())
    }

    pub(crate) fn admit_at(
        self: &Arc<Self>,
        ip: IpAddr,
        shutdown: &CancellationToken,
        now: Instant,
    ) -> Result<Slot, Refused> {
        let key = source_key(ip);
        let net = subnet(key);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mine = inner.sources.get(&key).map_or(0, Vec::len);
        if mine >= self.per_source {
            return Err(Refused::SourceFull);
        }
        if net.is_some_and(|net| inner.subnets.get(&net).copied().unwrap_or(0) >= self.per_48) {
            return Err(Refused::SubnetFull);
        }
        let mut evicted_another = false;
        if inner.total >= self.max {
            let victim = inner
                .sources
                .iter()
                .filter(|(_, held)| held.len() > mine)
                .flat_map(|(k, held)| {
                    held.iter().enumerate().filter_map(move |(at, h)| {
                        let rank = h.rank(now)?;
                        Some(((rank, std::cmp::Reverse(held.len()), h.id), *k, at))
                    })
                })
                .min_by_key(|(order, _, _)| *order)
                .map(|(_, k, at)| (k, at));
            let Some((victim, at)) = victim else {
                return Err(Refused::Full);
            };
            if let Some(held) = inner.sources.get_mut(&victim) {
                held.remove(at).evict.cancel();
                if held.is_empty() {
                    inner.sources.remove(&victim);
                }
                inner.total -= 1;
                inner.leave_subnet(victim);
                evicted_another = true;
            }
            if inner.total >= self.max {
                return Err(Refused::Full);
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let stop = shutdown.child_token();
        let served = Arc::new(AtomicBool::new(false));
        inner.sources.entry(key).or_default().push(Held {
            id,
            evict: stop.clone(),
            admitted: now,
            served: served.clone(),
        });
        if let Some(net) = net {
            *inner.subnets.entry(net).or_default() += 1;
        }
        inner.total += 1;
        Ok(Slot {
            table: self.clone(),
            key,
            id,
            served,
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

impl Slot {
    /// The connection has been answered: it may now be evicted before
    /// connections that have not completed a request.
    pub(crate) fn mark_served(&self) {
        self.served.store(true, Ordering::Relaxed);
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
        inner.leave_subnet(self.key);
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
        // Connections past their protected youth, none answered yet.
        let later = Instant::now() + 2 * YOUNG;
        let heavy: Vec<Slot> = (0..3)
            .map(|_| table.admit_at(ip(2), &shutdown, later - 2 * YOUNG).unwrap())
            .collect();
        let light = table.admit_at(ip(3), &shutdown, later - 2 * YOUNG).unwrap();
        let newcomer = table.admit_at(ip(4), &shutdown, later - YOUNG).unwrap();
        assert!(newcomer.evicted_another);
        assert!(heavy[0].stop.is_cancelled(), "the oldest of the heaviest");
        assert!(!heavy[1].stop.is_cancelled() && !light.stop.is_cancelled());
        assert_eq!(table.len(), 4);
        // The evicted slot's drop does not free a second slot.
        let mut heavy = heavy.into_iter();
        drop(heavy.next());
        assert_eq!(table.len(), 4);
        // Now .2 holds 2 and .3, .4 hold 1 each: .3 may still take from .2 …
        let second = table.admit_at(ip(3), &shutdown, later).unwrap();
        assert!(second.evicted_another);
        assert!(heavy.next().is_some_and(|s| s.stop.is_cancelled()));
        // … but not beyond: no source holds more than the 2 it holds now.
        assert_eq!(
            table.admit_at(ip(3), &shutdown, later).err(),
            Some(Refused::Full)
        );
        // A source holding fewer takes from it, oldest first.
        let third = table.admit_at(ip(2), &shutdown, later).unwrap();
        assert!(light.stop.is_cancelled() && !second.stop.is_cancelled());
        assert_eq!(table.len(), 4);
        drop(third);
        assert_eq!(table.len(), 3);
        // Shutdown reaches every slot.
        shutdown.cancel();
        assert!(second.stop.is_cancelled() && newcomer.stop.is_cancelled());
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_slash_48_holds_at_most_four_sources_worth() {
        let table = Arc::new(ConnectionTable::new(1024, 2));
        let shutdown = CancellationToken::new();
        let now = Instant::now();
        // One connection from each of many /64s of one /48.
        let held: Vec<Slot> = (0..8u16)
            .map(|n| {
                let ip = v6(&format!("2001:db8:7:{n:x}::1"));
                table.admit_at(ip, &shutdown, now).unwrap()
            })
            .collect();
        assert_eq!(held.len(), 8);
        for n in 8..100u16 {
            let ip = v6(&format!("2001:db8:7:{n:x}::1"));
            assert_eq!(
                table.admit_at(ip, &shutdown, now).err(),
                Some(Refused::SubnetFull),
                "/64 number {n}"
            );
        }
        assert_eq!(table.len(), 8);
        // Another /48 is not affected, and a freed slot comes back.
        assert!(table.admit_at(v6("2001:db8:8::1"), &shutdown, now).is_ok());
        drop(held);
        assert!(
            table
                .admit_at(v6("2001:db8:7:ff::1"), &shutdown, now)
                .is_ok()
        );
    }

    #[test]
    fn a_flood_of_connects_evicts_idle_newcomers_before_a_served_connection() {
        let table = Arc::new(ConnectionTable::new(64, 16));
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        // A client whose connection has completed a request.
        let client = table.admit_at(ip(250), &shutdown, start).unwrap();
        client.mark_served();
        // Many addresses connect and send nothing (or trickle), 100 ms apart:
        // far more than the table holds.
        let mut flood = Vec::new();
        for n in 0..2_000u32 {
            let at = start + Duration::from_millis(100 * u64::from(n + 1));
            let ip = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            if let Ok(slot) = table.admit_at(ip, &shutdown, at) {
                flood.push(slot);
            }
            flood.retain(|s: &Slot| !s.stop.is_cancelled());
        }
        assert!(
            !client.stop.is_cancelled(),
            "the served connection was evicted"
        );
        // A new client connecting now keeps its slot through its request,
        // even when the flood's connections have all completed one.
        for slot in &flood {
            slot.mark_served();
        }
        let at = start + Duration::from_secs(300);
        let newcomer = table.admit_at(ip(251), &shutdown, at).unwrap();
        for n in 0..200u32 {
            let ip = IpAddr::from((0x0b00_0000 + n).to_be_bytes());
            let _ = table.admit_at(ip, &shutdown, at + Duration::from_millis(u64::from(n)));
        }
        assert!(
            !newcomer.stop.is_cancelled(),
            "a young connection was evicted"
        );
    }
}
