//! Broker names for the core node: the pool's brokers are [`BrokerId`]s
//! by their index in the pool; brokers outside it (a pipe's hints, the
//! hint cache's) get ids after the pool's from a bounded table, the least
//! recently named one given up first once the node agrees
//! ([`Node::forget_broker`](keyway_core::sidewire::node::Node::forget_broker)).

use std::collections::HashMap;

use keyway_core::sidewire::node::{BrokerId, PoolView};
use keyway_core::sidewire::rendezvous::{self, Broker, Ranked};

use crate::pool::{BrokerEntry, Pool};

/// Brokers outside the pool named at once, at most: a caller handing a
/// new hint on every send must not grow the table without bound.
pub(super) const HINT_BROKERS: usize = 1024;

/// A broker outside the pool and when (a counter) it was last named.
#[derive(Debug)]
struct Hinted {
    entry: BrokerEntry,
    named: u64,
}

/// The pool, ranked for the node, and the table of other brokers.
#[derive(Debug)]
pub(super) struct Brokers {
    pool: Pool,
    hinted: Vec<Option<Hinted>>,
    by_address: HashMap<String, BrokerId>,
    clock: u64,
}

impl Brokers {
    pub(super) fn new(pool: Pool) -> Self {
        let mut by_address = HashMap::new();
        for (i, b) in pool.brokers.iter().enumerate() {
            by_address
                .entry(b.address())
                .or_insert(BrokerId(u32::try_from(i).unwrap_or(u32::MAX)));
        }
        Self {
            pool,
            hinted: Vec::new(),
            by_address,
            clock: 0,
        }
    }

    /// The broker an id names.
    pub(super) fn get(&self, id: BrokerId) -> Option<&BrokerEntry> {
        let i = id.0 as usize;
        match i.checked_sub(self.pool.brokers.len()) {
            None => self.pool.brokers.get(i),
            Some(h) => self.hinted.get(h)?.as_ref().map(|h| &h.entry),
        }
    }

    /// An id for `entry`: its pool index, or a place in the hint table.
    /// When the table is full the least recently named broker that
    /// `release` lets go (the node forgets it) gives up its place;
    /// `None` if none can.
    pub(super) fn id(
        &mut self,
        entry: &BrokerEntry,
        mut release: impl FnMut(BrokerId) -> bool,
    ) -> Option<BrokerId> {
        self.clock += 1;
        let address = entry.address();
        if let Some(&id) = self.by_address.get(&address) {
            if let Some(Some(h)) = (id.0 as usize)
                .checked_sub(self.pool.brokers.len())
                .and_then(|h| self.hinted.get_mut(h))
            {
                h.named = self.clock;
            }
            return Some(id);
        }
        let place = match self.hinted.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.hinted.len() < HINT_BROKERS => {
                self.hinted.push(None);
                self.hinted.len() - 1
            }
            None => {
                let mut order: Vec<(u64, usize)> = self
                    .hinted
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| h.as_ref().map(|h| (h.named, i)))
                    .collect();
                order.sort_unstable();
                let base = self.pool.brokers.len();
                let freed = order
                    .into_iter()
                    .map(|(_, i)| i)
                    .find(|&i| release(self.hint_id(base, i)))?;
                if let Some(old) = self.hinted[freed].take() {
                    self.by_address.remove(&old.entry.address());
                }
                freed
            }
        };
        let id = self.hint_id(self.pool.brokers.len(), place);
        self.hinted[place] = Some(Hinted {
            entry: entry.clone(),
            named: self.clock,
        });
        self.by_address.insert(address, id);
        Some(id)
    }

    fn hint_id(&self, base: usize, place: usize) -> BrokerId {
        BrokerId(u32::try_from(base + place).unwrap_or(u32::MAX))
    }
}

/// The pool as the node sees it: rankings of pool indices.
#[derive(Debug)]
pub(super) struct PoolIds(pub(super) Pool);

impl PoolView for PoolIds {
    fn ranked(&self, af: u8, dest: &[u8; 33], out: &mut [BrokerId]) -> usize {
        let family: Vec<(usize, &BrokerEntry)> = self
            .0
            .brokers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.af() == af)
            .collect();
        let input: Vec<Broker<'_>> = family
            .iter()
            .map(|(_, b)| Broker {
                host: &b.host,
                weight: b.weight,
            })
            .collect();
        let mut scratch = vec![Ranked::default(); family.len()];
        let ranked = rendezvous::rank(af, dest, &input, self.0.ranking, &mut scratch);
        let mut written = 0;
        for (r, slot) in ranked.iter().zip(out.iter_mut()) {
            *slot = BrokerId(u32::try_from(family[r.index].0).unwrap_or(u32::MAX));
            written += 1;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        Pool {
            brokers: (0..n)
                .map(|i| BrokerEntry::new(&format!("10.0.0.{i}"), 1883))
                .collect(),
            ..Pool::default()
        }
    }

    #[test]
    fn pool_brokers_keep_their_index_and_hints_follow() {
        let mut b = Brokers::new(pool(3));
        let pooled = BrokerEntry::new("10.0.0.1", 1883);
        assert_eq!(b.id(&pooled, |_| true), Some(BrokerId(1)));
        let hint = BrokerEntry::new("192.0.2.1", 1883);
        assert_eq!(b.id(&hint, |_| true), Some(BrokerId(3)));
        assert_eq!(b.id(&hint, |_| true), Some(BrokerId(3)), "named once");
        assert_eq!(b.get(BrokerId(3)), Some(&hint));
        assert_eq!(b.get(BrokerId(1)), Some(&pooled));
    }

    #[test]
    fn a_full_table_gives_up_the_least_recently_named_the_node_lets_go() {
        let mut b = Brokers::new(pool(1));
        let entry = |i: usize| BrokerEntry::new(&format!("192.0.2.{}", i % 250), 1000 + i as u16);
        for i in 0..HINT_BROKERS {
            assert!(b.id(&entry(i), |_| true).is_some());
        }
        // Named again: the oldest and the second oldest are the newest
        // now; the third oldest is the node's still.
        let oldest = b.id(&entry(0), |_| true).unwrap();
        let _ = b.id(&entry(1), |_| true);
        let busy = b.by_address[&entry(2).address()];
        let new = b.id(&entry(HINT_BROKERS), |id| id != busy).unwrap();
        assert_eq!(b.get(new), Some(&entry(HINT_BROKERS)));
        assert_eq!(b.get(oldest), Some(&entry(0)), "named recently: kept");
        assert_eq!(b.get(busy), Some(&entry(2)), "still in use: kept");
        assert_eq!(b.hinted.len(), HINT_BROKERS, "bounded");
        // Nothing to give up: no id.
        assert_eq!(b.id(&entry(HINT_BROKERS + 1), |_| false), None);
    }
}
