//! Where the node publishes and subscribes: a destination's hints, then
//! the top of its ranking per family, skipping brokers that back off
//! (each replaced by the next of its family, not "whichever connects
//! first": spec §10 item 10), connecting what is missing.

use crate::identity::PUBLIC_KEY_LEN;
use crate::sidewire::receiver::Slot;
use crate::sidewire::rendezvous::{AF_INET, AF_INET6};
use crate::sidewire::screen::Peer;
use crate::time::Instant;

use super::ack_cache::SourceAcks;
use super::pool_view::MAX_FAMILY;
use super::widening::{self, MAX_HINTS, REFERENCE_RACE_WIDTH};
use super::{BrokerId, LinkId, Node, PoolView, SendId, Table};

/// Brokers one publish reaches, at most, by default (`Node`'s `T`):
/// every hint and the top 10 of both families.
pub const MAX_TARGETS: usize = MAX_HINTS + 2 * REFERENCE_RACE_WIDTH;

/// A list of brokers, deduplicated.
#[derive(Clone, Copy, Debug)]
pub(super) struct Targets<const T: usize> {
    ids: [BrokerId; T],
    len: usize,
}

impl<const T: usize> Targets<T> {
    pub(super) fn new_empty() -> Self {
        Self {
            ids: [BrokerId(0); T],
            len: 0,
        }
    }

    pub(super) fn push(&mut self, id: BrokerId) {
        if self.len < T && !self.contains(id) {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    pub(super) fn contains(&self, id: BrokerId) -> bool {
        self.ids[..self.len].contains(&id)
    }

    pub(super) fn as_slice(&self) -> &[BrokerId] {
        &self.ids[..self.len]
    }
}

impl<
    P,
    Sl,
    Wm,
    Pe,
    Ak,
    const L: usize,
    const S: usize,
    const Q: usize,
    const B: usize,
    const T: usize,
    const O: usize,
    const W: usize,
> Node<P, Sl, Wm, Pe, Ak, L, S, Q, B, T, O, W>
where
    P: PoolView,
    Sl: Table<Slot>,
    Wm: Table<u64>,
    Pe: Table<Peer>,
    Ak: Table<SourceAcks>,
{
    /// The first `reach(extra)` brokers of each family of `dest`'s ranking
    /// that are linked or may be dialled, added to `out`.
    pub(super) fn ranked_targets(
        &self,
        now: Instant,
        dest: &[u8; PUBLIC_KEY_LEN],
        extra: usize,
        out: &mut Targets<T>,
    ) {
        for af in [AF_INET, AF_INET6] {
            let mut ranked = [BrokerId(0); MAX_FAMILY];
            let n = self.pool.ranked(af, dest, &mut ranked);
            let wanted = widening::reach(n, extra);
            let mut taken = 0;
            for &b in &ranked[..n] {
                if taken == wanted {
                    break;
                }
                if self.links.to(b).is_some() || self.backoff.ready(&b, now) {
                    out.push(b);
                    taken += 1;
                }
            }
        }
    }

    /// Where publish number `attempt` of a send to `dest` goes.
    fn send_targets(
        &self,
        now: Instant,
        unix: u64,
        dest: &[u8; PUBLIC_KEY_LEN],
        hints: &[Option<BrokerId>],
        attempt: u32,
    ) -> Targets<T> {
        let mut out = Targets::new_empty();
        let remembered = self
            .config
            .use_hints
            .then(|| self.hints.usable(dest, unix, None))
            .into_iter()
            .flatten()
            .copied();
        for b in hints
            .iter()
            .flatten()
            .copied()
            .chain(remembered)
            .take(MAX_HINTS)
        {
            out.push(b);
        }
        self.ranked_targets(now, dest, widening::extra(attempt), &mut out);
        out
    }

    /// The up link to `broker`, connecting one if there is none and the
    /// broker is not backing off.
    pub(super) fn ensure(&mut self, now: Instant, broker: BrokerId) -> Option<LinkId> {
        if let Some(l) = self.links.to(broker) {
            return l.up.then_some(l.id);
        }
        if !self.backoff.ready(&broker, now) {
            return None;
        }
        let link = self.links.open(broker, now)?;
        self.outbox.connect(link, broker);
        None
    }

    /// Publishes a send's packet on every target it has not reached in
    /// this attempt, connecting the missing ones.
    pub(super) fn publish_send(&mut self, now: Instant, unix: u64, id: SendId) {
        let Some(route) = self.routes.iter().flatten().find(|r| r.id == id).copied() else {
            return;
        };
        if route.done.is_some() {
            return;
        }
        let targets = self.send_targets(now, unix, &route.dest, &route.hints, route.attempt);
        let mut published = route.published;
        for &b in targets.as_slice() {
            if published.contains(&Some(b)) {
                continue;
            }
            if let Some(link) = self.ensure(now, b) {
                self.links.touch(link, now);
                self.outbox.publish_send(link, route.dest, id);
                if let Some(slot) = published.iter_mut().find(|p| p.is_none()) {
                    *slot = Some(b);
                }
            }
        }
        if let Some(r) = self.route_mut(id) {
            r.published = published;
        }
    }

    /// Every live send publishes where its current attempt has not yet.
    pub(super) fn reroute(&mut self, now: Instant, unix: u64) {
        for i in 0..S {
            if let Some(id) = self.routes[i].filter(|r| r.done.is_none()).map(|r| r.id) {
                self.publish_send(now, unix, id);
            }
        }
    }

    /// Keeps the node's own subscriptions up: the set plus the spares of
    /// each family, brokers that fail replaced by the next.
    pub(super) fn maintain(&mut self, now: Instant) {
        let own_key = *self.key.public().as_bytes();
        let mut own = Targets::new_empty();
        self.ranked_targets(now, &own_key, self.config.spare_subscriptions, &mut own);
        for &b in own.as_slice() {
            self.ensure(now, b);
        }
        for l in self.links.iter_mut() {
            l.own = own.contains(l.broker);
        }
    }
}
